"""The one validation pass a run makes before any stage: every user error found here, not hours later.

`validate_run` checks what parsing a config cannot: that the output folder can be written, that the data
loads and is sound (`load_run_dataset`: columns, labels, classes, image decoding, sizes), and that the
classifier and the amplifier can be built for the data's image size (on the meta device: no memory, no
download). `hf-ddb validate CONFIG` runs it alone; `hf-ddb run` and every stage command run it first.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from datasets import DatasetDict

from .config import ConfigError, RunConfig, load_run_dataset

__all__ = ["validate_run"]


def _check_output_dir(output_dir: str) -> None:
    """The folder, or its nearest existing ancestor, must be a writable folder."""
    path = Path(output_dir)
    for existing in (path, *path.parents):
        if existing.exists():
            break
    if not existing.is_dir():
        raise ConfigError(f"'output_dir' {output_dir!r}: {str(existing)!r} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"'output_dir' {output_dir!r}: {str(existing)!r} is not writable")


def _check_model(key: str, architecture: str, num_classes: int, image_size: int, **options: Any) -> None:
    """Builds the classifier on the meta device and runs one image through it: an unknown architecture,
    ``model_args`` it does not take, or an image size too small for it fail here, naming ``key``."""
    from .models import build_classifier

    try:
        with torch.random.fork_rng(), torch.device("meta"):
            names = {i: str(i) for i in range(num_classes)}
            model, _ = build_classifier(architecture, names, image_size=image_size, **options)
            model(pixel_values=torch.zeros(1, 3, image_size, image_size))
    except Exception as err:  # any failure to build or run it is a config error, named by its key
        raise ConfigError(f"'{key}' {architecture!r} cannot classify {image_size} px images: {err}") from err


def validate_run(config: RunConfig, *, data: DatasetDict | None = None) -> DatasetDict:
    """Every check a run needs before its first stage; returns the loaded (and checked) dataset.

    Raises `ConfigError` naming the config key (or the data's split and row) of the first problem.
    """
    from .recipes import PSEUDO_GROUP_SELECTIONS, RECIPES

    _check_output_dir(config.output_dir)
    data = data if data is not None else load_run_dataset(config)
    train = data["train"]
    num_classes = train.features["label"].num_classes
    classifier = config.classifier
    if classifier.pretrained is None:
        size = classifier.image_size or train[0]["image"].width
        model_args = classifier.model_args
        _check_model("classifier.architecture", classifier.architecture, num_classes, size, model_args=model_args)
    if any(RECIPES[m].needs_amplifier for m in config.methods) or config.selection in PSEUDO_GROUP_SELECTIONS:
        resolution = config.diffusion.resolution
        _check_model("amplifier.architecture", config.amplifier.architecture, num_classes, resolution)
    return data
