"""A starting run config from a dataset (`hf-ddb init PATH_OR_ID`): its columns, classes and image size read
from the data, presets chosen for its size and the machine, written as commented YAML."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DatasetSketch", "sketch_dataset", "starting_config", "write_starting_config"]

logger = logging.getLogger(__name__)

LABEL_NAMES = ("label", "labels", "class", "target", "y", "category")
BIAS_HINTS = ("bias", "spurious", "attribute", "attr", "place", "background", "color", "colour", "group", "domain")
IMAGE_NAMES = ("image", "img", "images", "picture", "photo")
MAX_CLASSES = 100_000  # integer labels above this are ids, not classes (a list of names would exhaust memory)
MLP_MAX_SIZE = 32  # LfF's MLP up to this width; a ResNet above it
CPU_MAX_SIZE = 64  # larger images are resized to this on a machine without a GPU
STARTING_KEYS = frozenset(  # the top-level keys of the config `starting_config` writes
    [
        "benchmark",
        "classifier",
        "training",
        "methods",
        "selection",
        "diffusion",
        "generation",
        "amplifier",
        "output_dir",
    ]
)


@dataclass
class DatasetSketch:
    """What `sketch_dataset` read off a dataset: its splits, columns, classes and image size."""

    path: str
    splits: dict[str, int]
    image_column: str
    label_column: str
    class_names: list[str]
    image_size: tuple[int, int]
    bias_column: str | None = None
    other_columns: list[str] = field(default_factory=list)
    sizes_seen: list[tuple[int, int]] = field(default_factory=list)  # the sizes among sampled images

    @property
    def mixed_sizes(self) -> bool:
        return len(set(self.sizes_seen)) > 1


def _open(path_or_id: str) -> Any:
    from .data import DatasetValidationError, _open_any

    try:
        return _open_any(path_or_id)
    except (OSError, ValueError) as err:
        raise DatasetValidationError(f"{path_or_id!r} cannot be loaded: {str(err).strip()}") from err


def sketch_dataset(path_or_id: str) -> DatasetSketch:
    """Reads a dataset's splits and features and its first training image; raises `DatasetValidationError`
    when it has no train split, no image column or no label column."""
    from datasets import ClassLabel, Image, Value

    from .data import _SPLIT_ALIASES, DatasetValidationError

    dataset = _open(path_or_id)
    splits = {_SPLIT_ALIASES.get(name, name): len(split) for name, split in dataset.items()}
    train_name = next((name for name in dataset if _SPLIT_ALIASES.get(name, name) == "train"), None)
    if train_name is None:
        raise DatasetValidationError(f"{path_or_id!r} has no train split; found {sorted(dataset)}")
    train = dataset[train_name]
    features = train.features
    images = [name for name, feature in features.items() if isinstance(feature, Image)]
    if not images:
        named = next((name for name in features if name.lower() in IMAGE_NAMES), None)
        if named is not None:  # the API's words (`hf_ddb.data`): what the column is, and what it must be
            raise DatasetValidationError(
                f"column {named!r} in split {train_name!r} is {features[named]}, not a datasets.Image feature"
            )
        raise DatasetValidationError(f"{path_or_id!r} has no image column; columns: {list(features)}")
    categorical = [
        name
        for name, feature in features.items()
        if isinstance(feature, ClassLabel)
        or (isinstance(feature, Value) and (feature.dtype == "bool" or feature.dtype.startswith(("int", "uint"))))
    ]
    labels = sorted(categorical, key=lambda name: (name.lower() not in LABEL_NAMES, categorical.index(name)))
    if not labels:
        raise DatasetValidationError(f"{path_or_id!r} has no label column (class ids); columns: {list(features)}")
    label = labels[0]
    bias = next((name for name in labels[1:] if any(hint in name.lower() for hint in BIAS_HINTS)), None)
    feature = features[label]
    if isinstance(feature, ClassLabel):
        names = list(feature.names)
    elif feature.dtype == "bool":
        names = ["False", "True"]
    else:
        ids = train[label]
        low, high = (min(ids), max(ids)) if len(train) else (0, -1)
        if low < 0 or high >= MAX_CLASSES:
            raise DatasetValidationError(
                f"label column {label!r} holds class id {low if low < 0 else high:,}; class ids must run from 0 "
                f"to the number of classes - 1 (at most {MAX_CLASSES:,}): map them first"
            )
        names = [str(i) for i in range(high + 1)]
    if len(names) < 2:
        raise DatasetValidationError(
            f"label column {label!r} of {path_or_id!r} has {len(names)} class; a classifier needs two or more"
        )
    sizes = _image_sizes(train, images[0])
    others = [name for name in features if name not in (images[0], label, bias)]
    return DatasetSketch(str(path_or_id), splits, images[0], label, names, sizes[0], bias, others, sizes)


def _image_sizes(train: Any, column: str, sample: int = 64) -> list[tuple[int, int]]:
    """The image sizes among ``sample`` evenly spaced training images, the first image's first ((0, 0) when
    the split is empty)."""
    if not len(train):
        return [(0, 0)]
    count = min(sample, len(train))
    rows = sorted({round(i * (len(train) - 1) / max(count - 1, 1)) for i in range(count)})
    sizes = [train[row][column].size for row in rows]
    return [sizes[0], *sorted(set(sizes) - {sizes[0]})]


def _machine_has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def starting_config(
    path_or_id: str, output_dir: str | None = None, gpu: bool | None = None
) -> tuple[str, DatasetSketch]:
    """The commented YAML of a first run on ``path_or_id`` and what was read off the data. Presets: the 8 px
    ``demo`` generator on a CPU-only machine (the whole run in minutes), the 64 px ``paper`` one with a GPU;
    LfF's MLP for images up to 32 px, a ResNet-18 above."""
    sketch = sketch_dataset(path_or_id)
    gpu = _machine_has_gpu() if gpu is None else gpu
    width, height = sketch.image_size
    side = max(max(size) for size in sketch.sizes_seen or [sketch.image_size])
    resize = None
    if width != height or sketch.mixed_sizes or (not gpu and side > CPU_MAX_SIZE):
        resize = min(side, CPU_MAX_SIZE) if not gpu else side
    size = resize or side
    name = Path(str(path_or_id).rstrip("/")).name or "dataset"
    missing = [split for split in ("train", "valid", "test") if split not in sketch.splits]
    methods = ["erm", "jtt", "lff", "ddb_i", "ddb_ii"] + (["groupdro_oracle"] if sketch.bias_column else [])
    train_rows = sketch.splits.get("train", 0)
    sizes = ", ".join(f"{w}x{h}" for w, h in sketch.sizes_seen[:4]) if sketch.mixed_sizes else f"{width}x{height}"
    lines = [  # every value read off the data is written quoted (JSON strings, valid YAML): none can end a line
        f"# A first DDB run on {_quoted(sketch.path)}, written by `hf-ddb init` from the data itself:",
        f"# splits {', '.join(f'{_quoted(k)} {v:,}' for k, v in sketch.splits.items())}; "
        f"{len(sketch.class_names)} classes; images {sizes} px{' (mixed sizes)' if sketch.mixed_sizes else ''}.",
        "# Check every line, then: hf-ddb validate THIS_FILE && hf-ddb run THIS_FILE",
    ]
    if missing:
        lines.append(f"# The run needs train, valid and test splits; this dataset lacks {missing}: add them first.")
    lines += [
        "benchmark:",
        "  name: hub",
        f"  path: {_quoted(sketch.path)}",
        f"  image_column: {_quoted(sketch.image_column)}",
        f"  label_column: {_quoted(sketch.label_column)}      # classes: "
        + ", ".join(_quoted(name) for name in sketch.class_names[:10])
        + (" ..." if len(sketch.class_names) > 10 else ""),
    ]
    if sketch.bias_column:
        lines.append(
            f"  bias_column: {_quoted(sketch.bias_column)}      # evaluation and the oracle only; remove if unsure"
        )
    else:
        lines.append("  # bias_column: NAME    # none found: the run reports the groups the amplifier finds instead")
    if resize:
        why = " (the images differ in size)" if sketch.mixed_sizes else ""
        lines.append(f"  image_size: {resize}       # every image resized to {resize}x{resize} px (square){why}")
    architecture = "mlp" if size <= MLP_MAX_SIZE else "resnet18"
    lines += [
        "classifier:",
        f"  architecture: {architecture}"
        + ("       # LfF's MLP (small images)" if architecture == "mlp" else "  # timm ResNet-18, random init"),
        "training:",
        "  epochs: 10",
        f"  batch_size: {256 if train_rows >= 2_000 else 64}",
        "  learning_rate: 0.001",
        "  seed: 0",
        f"methods: [{', '.join(methods)}]",
        "selection: auto           # the amplifier's pseudo groups on valid; never the test split",
        "diffusion:",
        "  preset: paper           # 64 px, 100,000 steps: a GPU run"
        if gpu
        else "  preset: demo            # 8 px, 2,000 steps: minutes on a CPU (`cpu`: 16 px, 5,000 steps)",
        "generation:",
        "  num_images_per_class: 300",
        "  guidance_scale: 0.0     # the paper's w (0: plain conditional sampling)",
        "amplifier:",
        "  architecture: mlp       # `local_cnn` when the bias is a texture",
        f"output_dir: {_quoted(output_dir or f'runs/{name}')}",
        "",
    ]
    text = "\n".join(lines)
    _check_reads_back(text, sketch)
    return text, sketch


def _quoted(value: Any) -> str:
    """``value`` as a JSON string: a valid YAML scalar whose line breaks (``\\n``, U+2028, ...) and quotes
    are escaped, so a name read off the data can never end a comment or start a key."""
    return json.dumps(str(value), ensure_ascii=True)


def _check_reads_back(text: str, sketch: DatasetSketch) -> None:
    """The written YAML must hold what was read off the data, and nothing more (a guard on the escaping)."""
    import yaml

    from .config import _BoundedLoader

    raw = yaml.load(text, Loader=_BoundedLoader)  # noqa: S506  (a SafeLoader subclass)
    benchmark = raw.get("benchmark", {})
    expected = {"path": sketch.path, "image_column": sketch.image_column, "label_column": sketch.label_column}
    if any(benchmark.get(key) != value for key, value in expected.items()) or set(raw) != STARTING_KEYS:
        raise RuntimeError("hf-ddb init composed a config that does not read back as written; please report it")


def write_starting_config(path_or_id: str, destination: str | os.PathLike, *, force: bool = False) -> DatasetSketch:
    """Writes `starting_config` to ``destination`` (refusing to overwrite unless ``force``)."""
    from .utils import atomic_write_text

    destination = Path(destination)
    if destination.exists() and not force:
        raise FileExistsError(f"{destination} exists; give another --output or --force")
    text, sketch = starting_config(path_or_id)
    atomic_write_text(destination, text)
    return sketch
