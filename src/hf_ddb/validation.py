"""The one validation pass a run makes before any stage: every user error found here, not hours later.

`validate_run` checks what parsing a config cannot: that the output folder can be written, that the data
loads and is sound (`load_run_dataset`: columns, labels, classes, image decoding, sizes), and that the
classifier and the amplifier can be built for the data's image size (on the meta device: no memory, no
download). `hf-ddb validate CONFIG` runs it alone; `hf-ddb run` and every stage command run it first.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from datasets import DatasetDict

from .config import ConfigError, RunConfig
from .selection import selection_rule

if TYPE_CHECKING:
    from .inputs import StreamedSplit

__all__ = ["load_run_dataset", "validate_run"]

logger = logging.getLogger(__name__)


def load_run_dataset(config: RunConfig, image_check: str | None = None) -> DatasetDict | dict[str, StreamedSplit]:
    """The config's dataset with ``train``/``valid``/``test``; a missing column fails naming the config key.
    ``image_check`` (``all`` or ``sample``) says how many images of a ``hub`` dataset are fully decoded now:
    by default all of a downloaded dataset and the first 256 per split of a streamed one (``benchmark.streaming``:
    the splits are `StreamedSplit`s, labels read now, images as they are needed and checked as they are read;
    ``all`` reads every stream once more, up front)."""
    from .data import (
        SAMPLE_DECODES,
        DatasetValidationError,
        load_benchmark,
        load_image_dataset,
        load_streamed_image_dataset,
    )

    if config.benchmark_name != "hub":
        return load_benchmark(config.benchmark_name, **config.benchmark_options)
    b = config.benchmark
    columns = {"image_column": "image", "label_column": "label", "bias_column": None}
    kwargs = {key: b.get(key, default) for key, default in columns.items()}
    if b.get("revision"):
        kwargs["revision"] = b["revision"]
    if b.get("config_name"):
        kwargs["name"] = b["config_name"]
    try:
        if b.get("streaming"):
            check = image_check or "sample"
            dataset = load_streamed_image_dataset(
                b["path"], image_size=b.get("image_size"), image_check=check, **kwargs
            )
            if check == "sample":
                logger.info(
                    f"streaming: images checked on the first {SAMPLE_DECODES} rows of each split; later rows are "
                    "checked when read (--image-check all reads every image now)"
                )
        else:
            dataset = load_image_dataset(
                b["path"], uniform_size=not b.get("image_size"), image_check=image_check or "all", **kwargs
            )
    except DatasetValidationError as err:
        message = str(err)
        for key in columns:
            if kwargs.get(key) and message.startswith(f"column {kwargs[key]!r}"):
                raise ConfigError(f"'benchmark.{key}': {message}") from err
        raise ConfigError(f"'benchmark.path' {b['path']!r}: {message}") from err
    except (OSError, ValueError) as err:  # not found, no network, not a dataset (raised by `datasets`)
        raise ConfigError(f"'benchmark.path' {b['path']!r} cannot be loaded: {str(err).strip()}") from err
    missing = [split for split in ("train", "valid", "test") if split not in dataset]
    if missing:
        raise ConfigError(f"'benchmark.path' {b['path']!r} has no split(s) {missing}; found {sorted(dataset)}")
    if b.get("image_size") and not b.get("streaming"):  # a streamed split resizes its images as it reads them
        dataset = _resized(dataset, b["image_size"])
    aligned = b.get("aligned_bias")
    if aligned is not None and "bias_label" in dataset["train"].column_names:
        num_classes = dataset["train"].features["label"].num_classes
        num_bias = dataset["train"].features["bias_label"].num_classes
        if len(aligned) != num_classes or not all(isinstance(v, int) and 0 <= v < num_bias for v in aligned):
            raise ConfigError(
                f"'benchmark.aligned_bias' must give one bias class id (0..{num_bias - 1}) per class, "
                f"{num_classes} in all; got {aligned}"
            )
    return dataset


def _resized(dataset: DatasetDict, size: int) -> DatasetDict:
    """Every image as a ``size`` x ``size`` square (bicubic; grayscale stays grayscale, else RGB), cached by
    `datasets` between runs."""
    from PIL import Image as PILImage

    def square(image: PILImage.Image) -> PILImage.Image:
        image = image.convert("L" if image.mode in ("L", "1") else "RGB")
        return image.resize((size, size), PILImage.Resampling.BICUBIC)

    def resize(batch: dict[str, list]) -> dict[str, list]:
        return {"image": [square(im) for im in batch["image"]]}

    return dataset.map(resize, batched=True, batch_size=256, desc=f"resizing to {size} px")


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
            model.eval()(pixel_values=torch.zeros(2, 3, image_size, image_size))  # eval: batch-norm statistics
    except Exception as err:  # any failure to build or run it is a config error, named by its key
        raise ConfigError(f"'{key}' {architecture!r} cannot classify {image_size} px images: {err}") from err


def validate_run(config: RunConfig, *, data: DatasetDict | None = None, image_check: str | None = None) -> DatasetDict:
    """Every check a run needs before its first stage; returns the loaded (and checked) dataset.

    Raises `ConfigError` naming the config key (or the data's split and row) of the first problem.
    """
    from .inputs import first_image

    _check_output_dir(config.output_dir)
    data = data if data is not None else load_run_dataset(config, image_check)
    shown = config.benchmark.get("path", config.benchmark_name)
    for split in ("train", "valid", "test"):
        if len(data[split]) == 0:
            raise ConfigError(f"'benchmark': the {split!r} split of {shown!r} is empty; every run needs rows in it")
    train = data["train"]
    if "bias_label" not in train.column_names:  # a run without bias labels: what needs them cannot run
        for method in config.methods:
            if config.recipe(method).uses_bias_labels:
                raise ConfigError(
                    f"'methods': {method} trains with bias labels, and {shown!r} has none (no "
                    "'benchmark.bias_column'); remove it, or name the dataset's bias column"
                )
        if selection_rule(config.selection).uses_bias_labels:
            raise ConfigError(f"'selection' {config.selection!r} reads bias labels, and {shown!r} has none")
    num_classes = train.features["label"].num_classes
    classifier = config.classifier
    if classifier.pretrained is None:
        image = first_image(train)
        if classifier.image_size is not None and classifier.image_size != image.width:
            raise ConfigError(
                f"'classifier.image_size' is {classifier.image_size} but the images of {shown!r} are "
                f"{image.width}x{image.height} px; leave it out, or resize the data ('benchmark.image_size')"
            )
        size = image.width
        model_args = classifier.model_args
        _check_model("classifier.architecture", classifier.architecture, num_classes, size, model_args=model_args)
    if config.needs_amplifier:
        from .diffusion import check_unet

        try:
            check_unet(config.diffusion)
        except ValueError as err:
            raise ConfigError(f"'diffusion': {err}") from err
        resolution = config.diffusion.resolution
        _check_model("amplifier.architecture", config.amplifier.architecture, num_classes, resolution)
    return data
