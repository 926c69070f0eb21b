import numpy as np
import pytest
from transformers import AutoModelForImageClassification, pipeline

from hf_ddb import (
    TrainingConfig,
    build_classifier,
    evaluate_groups,
    predict_logits,
    save_classifier,
    train_erm,
)
from hf_ddb.inputs import ImageTensorDataset


def _names(ds):
    return dict(enumerate(ds["train"].features["label"].names))


def test_erm_mlp_learns_and_round_trips_through_pipeline(small_cmnist, tmp_path):
    model, processor = build_classifier("mlp", _names(small_cmnist), image_size=16, seed=0)
    args = TrainingConfig(epochs=3, batch_size=64, learning_rate=1e-3).to_training_arguments(
        tmp_path / "trainer", disable_tqdm=True, logging_strategy="no"
    )
    trainer = train_erm(model, small_cmnist["train"], args)
    assert trainer.state.global_step == 3 * int(np.ceil(3000 / 64))
    metrics = evaluate_groups(model, small_cmnist["test"])
    # a biased model: near-perfect on aligned test samples, far worse on conflicting ones
    assert metrics["aligned_accuracy"] > 0.8
    assert metrics["conflicting_accuracy"] < metrics["aligned_accuracy"] - 0.2

    save_classifier(model, processor, tmp_path / "model")
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "model")
    test = small_cmnist["test"].select(range(32))
    np.testing.assert_allclose(predict_logits(reloaded, test), predict_logits(model, test), atol=1e-5)

    classify = pipeline("image-classification", model=str(tmp_path / "model"))
    outputs = classify(list(test["image"]), top_k=1)
    expected = predict_logits(model, test).argmax(1)
    assert [int(o[0]["label"]) for o in outputs] == expected.tolist()


def test_timm_backbone_round_trip(small_cmnist, tmp_path):
    model, processor = build_classifier("test_resnet", _names(small_cmnist), image_size=16, seed=0)
    train = small_cmnist["train"].select(range(128))
    args = TrainingConfig(epochs=1, batch_size=64).to_training_arguments(
        tmp_path / "trainer", disable_tqdm=True, logging_strategy="no"
    )
    train_erm(model, train, args)
    save_classifier(model, processor, tmp_path / "model")
    classify = pipeline("image-classification", model=str(tmp_path / "model"))
    test = small_cmnist["test"].select(range(8))
    expected = predict_logits(model, test).argmax(1)
    assert [int(o[0]["label"]) for o in classify(list(test["image"]), top_k=1)] == expected.tolist()


def test_same_seed_same_weights(small_cmnist):
    one, _ = build_classifier("mlp", _names(small_cmnist), image_size=16, seed=3)
    two, _ = build_classifier("mlp", _names(small_cmnist), image_size=16, seed=3)
    for a, b in zip(one.parameters(), two.parameters(), strict=True):
        assert a.equal(b)


def test_wrong_image_size_is_a_clear_error(small_cmnist):
    with pytest.raises(ValueError, match="images are 16x16 px but the model expects 28x28"):
        ImageTensorDataset(small_cmnist["test"], image_size=28)


def test_unknown_architecture_and_single_class():
    with pytest.raises(ValueError, match="unknown architecture 'not_a_net'"):
        build_classifier("not_a_net", {0: "a", 1: "b"})
    with pytest.raises(ValueError, match="at least 2 classes"):
        build_classifier("mlp", {0: "a"})


def test_precision_compile_and_tracking_reach_the_trainer(tmp_path):
    settings = TrainingConfig(mixed_precision="bf16", torch_compile=True, report_to="tensorboard")
    args = settings.to_training_arguments(tmp_path, use_cpu=True)  # bf16 on CPU needs use_cpu
    assert args.bf16 and not args.fp16 and args.torch_compile and args.report_to == ["tensorboard"]
    plain = TrainingConfig().to_training_arguments(tmp_path)
    assert not plain.bf16 and not plain.torch_compile and plain.report_to == []
    for bad in ({"mixed_precision": "fp8"}, {"report_to": "slack"}, {"torch_compile": "yes"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TrainingConfig(**bad)


def test_saved_mlp_loads_where_hf_ddb_is_not_installed(tmp_path):
    """The folder carries the model code and ``auto_map``: a Python in which ``import hf_ddb`` fails loads it
    with ``trust_remote_code=True`` and predicts the same logits."""
    import json
    import os
    import subprocess
    import sys

    import torch

    model, processor = build_classifier("mlp", {0: "a", 1: "b"}, image_size=8, seed=0)
    save_classifier(model, processor, tmp_path / "mlp")
    assert json.loads((tmp_path / "mlp" / "config.json").read_text())["auto_map"]["AutoModelForImageClassification"]
    pixels = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.save(pixels, tmp_path / "pixels.pt")
    script = (
        "import sys; sys.modules['hf_ddb'] = None\n"  # importing hf_ddb fails in this process
        "import torch\n"
        "from transformers import AutoModelForImageClassification\n"
        f"model = AutoModelForImageClassification.from_pretrained({str(tmp_path / 'mlp')!r}, trust_remote_code=True)\n"
        f"logits = model(pixel_values=torch.load({str(tmp_path / 'pixels.pt')!r})).logits\n"
        "print(type(model).__module__.startswith('transformers_modules'), logits.tolist())\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True).stdout
    remote, logits = out.strip().splitlines()[-1].split(" ", 1)
    assert remote == "True"
    torch.testing.assert_close(torch.tensor(json.loads(logits)), model(pixel_values=pixels).logits)
