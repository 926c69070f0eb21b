import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import torch
from datasets import ClassLabel
from diffusers import DDIMScheduler, DDPMScheduler, DiffusionPipeline, DPMSolverMultistepScheduler

from hf_ddb import diffusion
from hf_ddb.diffusion import DiffusionConfig, build_unet, train_diffusion
from hf_ddb.generation import GenerationConfig, generate_synthetic_dataset, set_scheduler
from hf_ddb.pipeline_generation import BiasAlignedGenerationPipeline


@pytest.fixture(scope="module")
def tiny_train(small_cmnist):
    return small_cmnist["train"].select(range(256))


def _tiny_pipeline(num_classes=3, seed=0):
    torch.manual_seed(seed)
    unet = build_unet(DiffusionConfig.from_preset("tiny"), num_classes=num_classes)
    names = {i: f"class{i}" for i in range(num_classes)}
    pipe = BiasAlignedGenerationPipeline(unet=unet, scheduler=DDPMScheduler(), id2label=names)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_training_loss_decreases(tiny_train, tmp_path):
    config = DiffusionConfig.from_preset("tiny", max_train_steps=30, checkpointing_steps=30)
    out = train_diffusion(tiny_train, config, tmp_path)
    assert out.global_step == 30 and len(out.losses) == 30
    assert np.mean(out.losses[-5:]) < 0.8 * np.mean(out.losses[:5])
    assert (tmp_path / "pipeline" / "model_index.json").is_file()
    assert (tmp_path / "pipeline" / "pipeline.py").is_file()


def test_interrupted_training_resumes_with_identical_state(tiny_train, tmp_path, monkeypatch):
    config = DiffusionConfig.from_preset("tiny", max_train_steps=6, checkpointing_steps=3, checkpoints_total_limit=1)
    straight = train_diffusion(tiny_train, config, tmp_path / "straight")

    original = diffusion._save_checkpoint

    def save_then_die(accelerator, folder, step, limit, ema=None):
        original(accelerator, folder, step, limit, ema)
        if step == 3:
            raise KeyboardInterrupt("simulated kill after checkpoint 3")

    monkeypatch.setattr(diffusion, "_save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_diffusion(tiny_train, config, tmp_path / "resumed")
    monkeypatch.setattr(diffusion, "_save_checkpoint", original)
    checkpoint = tmp_path / "resumed" / "checkpoints" / "checkpoint-3"
    assert [p.name for p in checkpoint.parent.iterdir()] == ["checkpoint-3"]
    assert not (tmp_path / "resumed" / "pipeline").exists()
    assert not list(checkpoint.glob("custom_checkpoint_*")) and (checkpoint / "ema.safetensors").is_file()
    saved = (checkpoint / "ema.json").read_text()
    (checkpoint / "ema.json").write_text(saved.replace('"decay": ', '"decay": "0.9", "x": ', 1))
    with pytest.raises(ValueError, match="EMA state .* does not fit"):  # a tampered state is refused
        train_diffusion(tiny_train, config, tmp_path / "resumed")
    (checkpoint / "ema.json").write_text(saved)

    resumed = train_diffusion(tiny_train, config, tmp_path / "resumed")
    assert resumed.resumed_from == 3 and resumed.global_step == 6 and len(resumed.losses) == 3
    np.testing.assert_allclose(resumed.losses, straight.losses[3:], rtol=1e-5)
    for a, b in zip(resumed.pipeline.unet.parameters(), straight.pipeline.unet.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    # checkpoints_total_limit=1 keeps only the newest
    assert [p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()] == ["checkpoint-6"]


def test_pipeline_round_trip_and_community_loading(tmp_path):
    pipe = _tiny_pipeline()
    pipe.save_pretrained(tmp_path)
    again = BiasAlignedGenerationPipeline.from_pretrained(tmp_path)
    again.set_progress_bar_config(disable=True)
    kwargs = dict(class_labels=["class2", 0], num_inference_steps=3, output_type="np")
    one = pipe(**kwargs, generator=torch.Generator().manual_seed(1))
    two = again(**kwargs, generator=torch.Generator().manual_seed(1))
    assert one.class_labels == two.class_labels == [2, 0]
    np.testing.assert_allclose(one.images, two.images, atol=1e-6)
    assert again.labels == {"class0": 0, "class1": 1, "class2": 2}

    assert json.loads((tmp_path / "model_index.json").read_text())["_class_name"] == [
        "pipeline",
        "BiasAlignedGenerationPipeline",
    ]  # diffusers' custom-pipeline convention: the folder names its own code
    remote = DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True)
    assert type(remote).__name__ == "BiasAlignedGenerationPipeline"
    assert type(remote).__module__ != BiasAlignedGenerationPipeline.__module__  # loaded from the folder's file
    remote.set_progress_bar_config(disable=True)
    three = remote(**kwargs, generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(three.images, one.images, atol=1e-6)


@pytest.mark.parametrize(
    "name, cls", [("ddpm", DDPMScheduler), ("ddim", DDIMScheduler), ("dpm++", DPMSolverMultistepScheduler)]
)
def test_scheduler_swap(name, cls):
    pipe = set_scheduler(_tiny_pipeline(), name)
    assert isinstance(pipe.scheduler, cls)
    assert pipe.scheduler.config.num_train_timesteps == 1000
    out = pipe(class_labels=[0, 1], num_inference_steps=4, output_type="pt", generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (2, 3, 8, 8) and torch.isfinite(out.images).all()


def _spy(pipe):
    calls, steps = [], []
    unet_forward, step = pipe.unet.forward, pipe.scheduler.step

    def forward(sample, timestep, class_labels=None, **kw):
        result = unet_forward(sample, timestep, class_labels=class_labels, **kw)
        calls.append((class_labels.clone(), result.sample.clone()))
        return result

    def scheduler_step(model_output, *args, **kwargs):
        steps.append(model_output.clone())
        return step(model_output, *args, **kwargs)

    pipe.unet.forward = forward
    pipe.scheduler.step = scheduler_step
    return calls, steps


@pytest.mark.parametrize("w", [0.0, 1.0, 3.0])
def test_cfg_arithmetic_and_null_id_from_config(w):
    pipe = _tiny_pipeline(num_classes=3)  # null id must be 3, not a constant
    calls, steps = _spy(pipe)
    pipe(class_labels=[0, 2], guidance_scale=w, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    for (labels, eps), used in zip(calls, steps, strict=True):
        if w == 0:
            assert labels.tolist() == [0, 2]
            torch.testing.assert_close(used, eps)  # plain conditional prediction
        else:
            assert labels.tolist() == [0, 2, 3, 3]
            cond, uncond = eps.chunk(2)
            torch.testing.assert_close(used, (1 + w) * cond - w * uncond)
    assert pipe.null_class_id == 3 and _tiny_pipeline(num_classes=5).null_class_id == 5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"guidance_scale": -0.5}, "guidance_scale is the paper's w and must be a finite number >= 0"),
        ({"class_labels": [3]}, r"unknown class id\(s\) \[3\]"),
        ({"class_labels": ["zebra"]}, "unknown class name"),
        ({"num_images_per_class": 0}, "num_images_per_class must be >= 1"),
        ({"num_inference_steps": 0}, "num_inference_steps must be >= 1"),
        ({"class_labels": []}, "nothing to generate"),
    ],
)
def test_pipeline_bad_inputs(kwargs, message):
    pipe = _tiny_pipeline()
    pipe.unet.forward = None  # any work would crash with a different error
    with pytest.raises(ValueError, match=message):
        pipe(**kwargs)


def test_training_rejects_other_classes_on_resume_and_bad_settings(tiny_train, tmp_path):
    config = DiffusionConfig.from_preset("tiny", max_train_steps=2, checkpointing_steps=1)
    train_diffusion(tiny_train, config, tmp_path)
    fewer = tiny_train.filter(lambda row: row["label"] < 3).cast_column("label", ClassLabel(names=["0", "1", "2"]))
    with pytest.raises(ValueError, match="trained on 10 classes .* but this dataset has 3 classes"):
        train_diffusion(fewer, config, tmp_path)
    train_diffusion(fewer, config, tmp_path / "three")  # labels beyond a 3-class model's classes:
    with pytest.raises(ValueError, match="trained on 3 classes .* but this dataset has 10 classes"):
        train_diffusion(tiny_train, config, tmp_path / "three")
    with pytest.raises(ValueError, match="block_out_channels was \\[16, 32\\], now \\[32, 64\\]"):
        train_diffusion(tiny_train, DiffusionConfig.from_preset("tiny", block_out_channels=[32, 64]), tmp_path)
    with pytest.raises(ValueError, match="norm_num_groups=5 must divide"):
        train_diffusion(tiny_train, DiffusionConfig.from_preset("tiny", norm_num_groups=5), tmp_path / "x")
    with pytest.raises(ValueError, match="unknown preset"):
        DiffusionConfig.from_preset("huge")
    with pytest.raises(ValueError, match="unknown diffusion setting"):
        DiffusionConfig.from_preset("tiny", learnig_rate=1.0)


def test_generation_resumes_without_duplicates(tmp_path):
    pipe = _tiny_pipeline()
    config = GenerationConfig(num_images_per_class=5, batch_size=2, num_inference_steps=2, seed=3)
    first = generate_synthetic_dataset(pipe, tmp_path / "a", config)
    assert len(first) == 15 and sorted(set(first["label"])) == [0, 1, 2]
    assert first.features["label"].names == ["class0", "class1", "class2"]
    # interrupt: lose two shards and the assembled dataset, keep the others
    shards = sorted((tmp_path / "a" / "shards").iterdir())
    kept = {p.name: p.stat().st_mtime_ns for p in shards[2:]}
    for path in shards[:2]:
        path.unlink()
    shutil.rmtree(tmp_path / "a" / "dataset")
    again = generate_synthetic_dataset(pipe, tmp_path / "a", config)
    assert {p.name: p.stat().st_mtime_ns for p in sorted((tmp_path / "a" / "shards").iterdir())[2:]} == kept
    assert [np.asarray(x).tobytes() for x in again["image"]] == [np.asarray(x).tobytes() for x in first["image"]]
    assert not [p for p in (tmp_path / "a").rglob(".*")]  # no temp files left
    with pytest.raises(ValueError, match=r"num_images_per_class must be an integer in \[1, 1000000\], got 0"):
        generate_synthetic_dataset(pipe, tmp_path / "b", GenerationConfig(num_images_per_class=0))
    with pytest.raises(ValueError, match=r"unknown class id\(s\) \[7\]"):
        generate_synthetic_dataset(pipe, tmp_path / "b", config, class_labels=[7])


@pytest.mark.slow  # several processes; CI runs it (no -m filter)
def test_sharded_generation_over_two_processes(tmp_path):
    from test_cli import _torchrun

    _torchrun(
        os.path.join(os.path.dirname(__file__), "scripts", "generate_two_processes.py"), str(tmp_path), timeout=300
    )
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in reports] == [2, 2]
    from datasets import load_dataset

    dataset = load_dataset(str(tmp_path / "dataset"), split="train")
    assert len(dataset) == 21 and all(r["rows"] == 21 for r in reports)
    assert sorted(dataset["label"]) == [0] * 7 + [1] * 7 + [2] * 7
    digests = {hashlib.sha256(np.asarray(img).tobytes()).hexdigest() for img in dataset["image"]}
    assert len(digests) == 21  # no duplicate image
    # the same seed on one process gives the same images: the result does not depend on the process count
    single = generate_synthetic_dataset(
        _tiny_pipeline_like_script(),
        tmp_path / "single",
        GenerationConfig(num_images_per_class=7, batch_size=3, num_inference_steps=2, seed=5),
    )
    assert [np.asarray(x).tobytes() for x in single["image"]] == [np.asarray(x).tobytes() for x in dataset["image"]]


def _tiny_pipeline_like_script():
    torch.manual_seed(0)
    unet = build_unet(DiffusionConfig.from_preset("tiny"), num_classes=3)
    pipe = BiasAlignedGenerationPipeline(unet=unet, scheduler=DDPMScheduler(), id2label={0: "a", 1: "b", 2: "c"})
    return pipe


def test_launcher_precision_is_honoured_unless_the_config_sets_one(tiny_train, tmp_path, monkeypatch):
    from accelerate import Accelerator

    seen = []

    class Stop(Exception):
        pass

    from accelerate.state import AcceleratorState

    def record(**kwargs):
        AcceleratorState._reset_state(reset_partial_state=True)  # a fresh process, as under a launcher
        seen.append(Accelerator(**kwargs).mixed_precision)
        raise Stop

    monkeypatch.setattr(diffusion, "Accelerator", record)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # what `accelerate launch --mixed_precision bf16` sets
    try:
        for setting in (None, "no"):
            with pytest.raises(Stop):
                train_diffusion(tiny_train, DiffusionConfig.from_preset("tiny", mixed_precision=setting), tmp_path)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)  # later tests start from a clean state
    assert seen == ["bf16", "no"]


def test_push_to_hub_uploads_the_pipeline_code_too(tmp_path, monkeypatch):
    from pathlib import Path
    from types import SimpleNamespace

    import huggingface_hub

    pipe = BiasAlignedGenerationPipeline(
        unet=build_unet(DiffusionConfig.from_preset("tiny"), 2), scheduler=DDPMScheduler()
    )
    uploads = []
    monkeypatch.setattr(huggingface_hub, "create_repo", lambda repo_id, **kw: SimpleNamespace(repo_id=repo_id))
    monkeypatch.setattr(
        BiasAlignedGenerationPipeline,
        "_upload_folder",
        lambda self, folder, repo_id, **kw: uploads.append((repo_id, sorted(p.name for p in Path(folder).iterdir()))),
    )
    pipe.save_pretrained(tmp_path / "pipe", push_to_hub=True, repo_id="me/pipe", token="hf_fake")
    assert uploads == [("me/pipe", sorted(p.name for p in (tmp_path / "pipe").iterdir()))]
    assert "pipeline.py" in uploads[0][1]  # the code is in the folder when it is uploaded


def test_callback_on_step_end_sees_and_replaces_latents():
    pipe = _tiny_pipeline()
    seen = []

    def callback(pipeline, step, timestep, tensors):
        seen.append((step, int(timestep), tuple(tensors["latents"].shape)))
        return {"latents": torch.zeros_like(tensors["latents"])} if step == 2 else tensors

    out = pipe(class_labels=[0, 1], num_inference_steps=3, output_type="np", callback_on_step_end=callback)
    assert [s[0] for s in seen] == [0, 1, 2] and seen[0][2][0] == 2
    np.testing.assert_allclose(out.images, 0.5)  # the last step's latents were replaced by zeros: grey images
    with pytest.raises(ValueError, match="unknown"):
        pipe(class_labels=[0], num_inference_steps=1, callback_on_step_end_tensor_inputs=["noise"])
