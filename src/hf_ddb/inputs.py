"""How a split's images reach a model: the one owner of it.

A split is one of two things: a `datasets.Dataset` (random access) or a `StreamedSplit` (a stream read in
order, for datasets too large to download; a raw `datasets.IterableDataset` is wrapped into one at the API
boundary, `as_split`). Everything that feeds images to a model goes through here: `model_inputs` (training
items and their collator: decoded once into RAM when the pixels fit under a memory budget, else batch by
batch on the fly, or streamed), `predict_logits` (scoring, shared across processes), `at_model_size`,
`first_image`, `images` and `images_at`. No other module asks which kind a split is.

A split decoded into RAM is kept (read-only) for the split object's lifetime, so the stages of a run that
read the same splits decode them once. The collator rescales and normalises exactly as the model's saved
image processor does, so a model trained here behaves the same inside ``pipeline("image-classification")``.
"""

from __future__ import annotations

import copy
import logging
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from datasets import Dataset, Features, Image, IterableDataset
from PIL import Image as PILImage
from transformers import PreTrainedModel

from .checks import DatasetValidationError
from .models import image_normalization
from .settings import AUGMENTATIONS, ImageLoading
from .utils import gather_rows, process_rank_and_count, rows_of_this_process

logger = logging.getLogger(__name__)

__all__ = [
    "AUGMENTATIONS",
    "ImageBatchCollator",
    "ImageLoading",
    "ImageTensorDataset",
    "OnTheFlyImageDataset",
    "StreamedBatchCollator",
    "StreamedSplit",
    "StreamedTrainingItems",
    "as_split",
    "at_model_size",
    "first_image",
    "images",
    "images_at",
    "is_streamed",
    "model_inputs",
    "predict_logits",
    "prepared",
]


def as_split(dataset: Any) -> Any:
    """``dataset`` as one of the two split kinds: a `datasets.IterableDataset` becomes a `StreamedSplit`."""
    return StreamedSplit.from_stream(dataset) if isinstance(dataset, IterableDataset) else dataset


def is_streamed(split: Any) -> bool:
    """Whether ``split`` is read in order (no random access: no row sampler, no decoding once)."""
    return isinstance(split, StreamedSplit | IterableDataset)


def first_image(split: Dataset | StreamedSplit) -> PILImage.Image:
    """The split's first image (a streamed split reads one row of its stream)."""
    return split.first_image() if isinstance(split, StreamedSplit) else split[0]["image"]


def images(split: Dataset | StreamedSplit) -> Iterator[PILImage.Image]:
    """Every image of the split, in row order (a streamed split in one pass)."""
    if isinstance(split, StreamedSplit):
        return (image for _, image in split.images())
    return iter(split["image"])


def images_at(dataset: Dataset | StreamedSplit, rows: list[int]) -> dict[int, PILImage.Image]:
    """The images of ``rows`` (one pass over a streamed split)."""
    if isinstance(dataset, StreamedSplit):
        return dataset.images_at(rows)
    return dict(zip(rows, dataset.select(rows)["image"], strict=True))


class StreamedSplit:
    """A split read as a stream (``load_dataset(..., streaming=True)``), for datasets too large to download.

    Row ``i`` is the ``i``-th row of the stream: a stream of data files is read in a fixed order, so every
    pass (the label pass, scoring, each training epoch) agrees on it. The image-free columns (``label``,
    ``bias_label``) are read once and held in RAM as a `Dataset` (``columns``): metrics, objectives, selection
    and reports index them by row, so ``split["label"]``, ``len(split)`` and ``split.features`` behave as for
    a downloaded split. Images come only from passes over the stream, each converted to ``mode`` and, with
    ``image_size``, resized as `load_run_dataset` resizes a downloaded split; one that cannot be decoded fails
    naming the split and row. There is no random access (``split[3]`` raises).
    """

    @classmethod
    def from_stream(cls, stream: IterableDataset, name: str = "stream") -> StreamedSplit:
        """A `datasets.IterableDataset` with ``image`` and ``label`` columns (``load_dataset(..., streaming=True)``)
        as a split: its label columns read now, in one image-free pass; its images as they are needed, in the mode
        of the first one (grayscale stays grayscale)."""
        names = stream.column_names or ["image", "label"]
        missing = [column for column in ("image", "label") if column not in names]
        if missing:
            raise ValueError(f"the streamed dataset has no column {missing[0]!r}; available: {names}")
        kept = [column for column in ("label", "bias_label") if column in names]
        features = stream.features
        rows = list(stream.select_columns(kept))
        columns = Dataset.from_list(rows, features=Features({c: features[c] for c in kept}) if features else None)
        split = cls(name, stream, columns)
        for _, encoded in split.encoded_rows():  # the mode of the first image, as it is stored
            split.mode = "L" if Image().decode_example(encoded).mode in ("L", "1") else "RGB"
            split._first_encoded = encoded  # kept for `first_image`: the stream is not read again for it
            break
        return split

    def __init__(
        self,
        name: str,
        stream: Any,
        columns: Dataset,
        *,
        image_column: str = "image",
        mode: str = "RGB",
        image_size: int | None = None,
    ) -> None:
        self.name, self.stream, self.columns = name, stream, columns
        self.image_column, self.mode = image_column, mode
        self._first_encoded: Any = None  # `first_image`'s bytes, read once
        # square resizes applied in order as images are decoded: the benchmark's image_size (bicubic, as
        # `load_run_dataset` resizes), then any `resized` (bilinear, as a model's inputs are resized)
        self.resizes: tuple[tuple[int, PILImage.Resampling], ...] = (
            ((image_size, PILImage.Resampling.BICUBIC),) if image_size else ()
        )

    def resized(self, size: int) -> StreamedSplit:
        """The same split with every image also resized (bilinear) to ``size`` x ``size``."""
        other = copy.copy(self)
        other.resizes = (*self.resizes, (size, PILImage.Resampling.BILINEAR))
        return other

    def __len__(self) -> int:
        return len(self.columns)

    @property
    def num_rows(self) -> int:
        return len(self.columns)

    @property
    def features(self) -> Features:
        return Features({"image": Image(), **self.columns.features})

    @property
    def column_names(self) -> list[str]:
        return ["image", *self.columns.column_names]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str) and key in self.columns.column_names:
            return self.columns[key]
        raise TypeError(
            f"split {self.name!r} is streamed: its columns {self.columns.column_names} are in RAM, its images are "
            "read in order (`images()`), not by row"
        )

    def encoded_rows(self) -> Any:
        """``(row, encoded image)`` for the whole stream in order, undecoded (a process or worker decodes only its
        rows). Read in batches (``IterableDataset.iter``): iterating the stream itself in a DataLoader worker
        would give the worker only its share of the files, and the rows wrong numbers."""
        stream = self.stream.select_columns([self.image_column])
        stream = stream.cast_column(self.image_column, Image(decode=False))
        row = 0
        for batch in stream.iter(batch_size=256):
            for encoded in batch[self.image_column]:
                if row >= len(self.columns):
                    raise DatasetValidationError(
                        f"split {self.name!r} has more rows than when its labels were read ({len(self.columns)}): "
                        "the stream changed during the run; pin 'benchmark.revision'"
                    )
                yield row, encoded
                row += 1

    def decode(self, row: int, encoded: Any) -> PILImage.Image:
        """One encoded image as the split's PIL image (its mode and size)."""
        try:
            if encoded is None:
                raise ValueError("the image is empty")
            image = Image().decode_example(encoded)
            image = image.convert(self.mode) if image.mode != self.mode else image
            for size, method in self.resizes:
                if image.size != (size, size):
                    image = image.resize((size, size), method)
            return image
        except Exception as err:
            raise DatasetValidationError(f"split {self.name!r}, row {row}: unreadable image ({err})") from err

    def images(self) -> Any:
        """``(row, image)`` for every row, in stream order."""
        for row, encoded in self.encoded_rows():
            yield row, self.decode(row, encoded)

    def first_image(self) -> PILImage.Image:
        """The first row's image; its encoded bytes are read from the stream once and kept (every method's
        model size, the amplifier's resizing and the report ask for it)."""
        if self._first_encoded is None:
            for _, encoded in self.encoded_rows():
                self._first_encoded = encoded
                break
            else:
                raise DatasetValidationError(f"split {self.name!r} is empty")
        return self.decode(0, self._first_encoded)

    def images_at(self, rows: Sequence[int]) -> dict[int, PILImage.Image]:
        """The images of ``rows``, read in one pass that stops at the last of them."""
        wanted, found = set(rows), {}
        if wanted:
            for row, encoded in self.encoded_rows():
                if row in wanted:
                    found[row] = self.decode(row, encoded)
                    if len(found) == len(wanted):
                        break
        return found


def _decoded_images(dataset: Dataset) -> np.ndarray:
    """The split's images as one uint8 N x H x W x C array, decoded once per split object.

    Every recipe, selection pass and evaluation of a run reads the same split objects; decoding 50,000 28 px
    PNGs takes about 7 s on one core (2026-11-30, beside other jobs), so a split's decoded pixels are kept
    (read-only) as long as the split object lives.
    """
    images = _DECODED.get(dataset)
    if images is None:
        images = _decode_rows(dataset.select_columns(["image"]), range(len(dataset)))
        images.setflags(write=False)
        _DECODED[dataset] = images
    return images


_DECODED: weakref.WeakKeyDictionary[Dataset, np.ndarray] = weakref.WeakKeyDictionary()  # a pure cache


def _integer_columns(dataset: Dataset, columns: Sequence[str], with_index: bool) -> dict[str, torch.Tensor]:
    """``labels``, the requested integer columns and (``with_index``) the row number, as small tensors in RAM:
    the per-sample state of a method (LfF's loss EMA, JTT's weights, groups) is indexed by that row number."""
    for column in ("image", "label", *columns):
        if column not in dataset.column_names:
            raise ValueError(f"dataset has no column {column!r}; available: {dataset.column_names}")
    values = {"labels": torch.as_tensor(np.asarray(dataset["label"]), dtype=torch.long)}
    for column in columns:
        values[column] = torch.as_tensor(np.asarray(dataset[column]), dtype=torch.long)
    if with_index:
        values["index"] = torch.arange(len(dataset))
    return values


def _to_channels(pixels: torch.Tensor, num_channels: int) -> torch.Tensor:
    """uint8 N x C x H x W with the model's channel count: grayscale in an RGB classifier is replicated, as
    transformers' pipelines do (``load_image`` converts every image to RGB), so training and
    ``pipeline("image-classification")`` see the same pixels."""
    if pixels.shape[1] == 1 and num_channels == 3:
        pixels = pixels.expand(-1, 3, -1, -1).contiguous()
    if pixels.shape[1] != num_channels:
        raise ValueError(f"images have {pixels.shape[1]} channel(s) but the model expects {num_channels}")
    return pixels


def _check_size(height: int, width: int, image_size: int) -> None:
    if (height, width) != (image_size, image_size):
        raise ValueError(
            f"images are {height}x{width} px but the model expects {image_size}x{image_size}; "
            f"build the data at that size (e.g. image_size={image_size})"
        )


def _decode_rows(images: Dataset, rows: Sequence[int], chunk: int = 4096) -> np.ndarray:
    """uint8 N x H x W x C of ``rows`` of a one-column ``image`` dataset, decoded a chunk at a time by PIL,
    as ``datasets`` decodes (identical pixels; 7 s instead of 37 s for 50,000 28 px images through its numpy
    formatting, measured on 2026-11-30 on one busy core)."""
    rows = list(rows)
    parts = [_stacked(images[rows[start : start + chunk]]["image"]) for start in range(0, len(rows), chunk)]
    return np.concatenate(parts) if len(parts) != 1 else parts[0]


def _stacked(images: Sequence[Any]) -> np.ndarray:
    """Decoded images (PIL or arrays) as uint8 N x H x W x C (grayscale with C = 1)."""
    arrays = [np.asarray(image) for image in images]
    return np.stack([a[..., None] if a.ndim == 2 else a for a in arrays])


def _model_pixels(images: np.ndarray, image_size: int, num_channels: int) -> torch.Tensor:
    """N x H x W x C uint8 images as the model's N x C x H x W, their size and channels checked."""
    _check_size(images.shape[1], images.shape[2], image_size)
    return _to_channels(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()), num_channels)


def _image_pixels(image: Any, image_size: int, num_channels: int) -> torch.Tensor:
    """One decoded image as uint8 C x H x W with the model's channel count, its size checked."""
    return _model_pixels(_stacked([image]), image_size, num_channels)[0]


class _ImageRows(torch.utils.data.Dataset):
    """What both map-style image datasets share: their constructor, a split's integer columns in RAM, the
    train-time ``transform`` and the item each row becomes (``pixel_values`` uint8 C x H x W, ``labels``,
    columns); a subclass says how its pixels are held (`_hold_pixels`)."""

    def __init__(
        self,
        dataset: Dataset,
        image_size: int,
        num_channels: int = 3,
        columns: Sequence[str] = (),
        with_index: bool = False,
        transform: Any = None,
    ) -> None:
        self.columns = _integer_columns(dataset, columns, with_index)
        self.transform = transform
        self.image_size, self.num_channels = image_size, num_channels
        self._hold_pixels(dataset)

    def _hold_pixels(self, dataset: Dataset) -> None:
        raise NotImplementedError

    def _item(self, pixels: torch.Tensor, index: int) -> dict[str, torch.Tensor]:
        return {
            "pixel_values": pixels if self.transform is None else self.transform(pixels),
            **{name: values[index] for name, values in self.columns.items()},
        }


class ImageTensorDataset(_ImageRows):
    """A split decoded into RAM: ``pixel_values`` (uint8 C x H x W), ``labels`` and any integer columns."""

    def _hold_pixels(self, dataset: Dataset) -> None:
        self.pixel_values = _model_pixels(_decoded_images(dataset), self.image_size, self.num_channels)

    def __len__(self) -> int:
        return self.pixel_values.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self._item(self.pixel_values[index], index)


class OnTheFlyImageDataset(_ImageRows):
    """A split decoded batch by batch when the DataLoader asks (``__getitems__``): memory stays one batch
    per worker whatever the split's size. Items are those of `ImageTensorDataset`, pixel for pixel."""

    def _hold_pixels(self, dataset: Dataset) -> None:
        self.images = dataset.select_columns(["image"])
        if len(dataset):
            self.pixels([0])  # the size and channel checks before any work

    def __len__(self) -> int:
        return len(self.images)

    def pixels(self, indices: Sequence[int]) -> torch.Tensor:
        """uint8 N x C x H x W of the given rows, decoded now."""
        return _model_pixels(_decode_rows(self.images, indices), self.image_size, self.num_channels)

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, torch.Tensor]]:
        pixels = self.pixels(indices)
        return [self._item(pixels[i], index) for i, index in enumerate(indices)]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([index])[0]


class StreamingImageDataset(torch.utils.data.IterableDataset):
    """A `StreamedSplit`'s rows for scoring, in stream order, each with its row ``index``; on several processes
    each decodes only its rows (``i % N == rank``: the others pass undecoded)."""

    def __init__(self, split: StreamedSplit, image_size: int, num_channels: int = 3) -> None:
        self.split, self.image_size, self.num_channels = split, image_size, num_channels

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        rank, count = process_rank_and_count()
        for row, encoded in self.split.encoded_rows():
            if row % count == rank:
                yield {
                    "pixel_values": _image_pixels(self.split.decode(row, encoded), self.image_size, self.num_channels),
                    "index": torch.tensor(row),
                }


STREAM_SHUFFLE_BUFFER = 10_000  # rows a streamed training split is shuffled within (their encoded bytes in RAM)


class StreamedTrainingItems(torch.utils.data.IterableDataset):
    """A `StreamedSplit`'s rows for training: each epoch one pass over the stream, shuffled within a buffer of
    ``buffer_size`` rows drawn from (``seed``, epoch), so a run is reproducible. Items carry the encoded
    image, ``labels`` and the row, which the per-sample state of a method is indexed by; the collator
    (`StreamedBatchCollator`) decodes them, so under several processes each decodes only the part of a batch
    Accelerate gives it, and DataLoader workers each take every W-th row. ``len`` is the split's, so the
    Trainer counts epochs as for a downloaded split."""

    def __init__(self, split: StreamedSplit, *, seed: int, shuffle: bool = True, buffer_size: int = 0) -> None:
        self.split, self.seed, self.shuffle = split, seed, shuffle
        self.buffer_size = buffer_size or STREAM_SHUFFLE_BUFFER
        self.labels = torch.as_tensor(np.asarray(split["label"]), dtype=torch.long)
        self.columns = {"labels": self.labels}  # by row, as the map-style datasets' (objectives bind to them)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.split)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _ordered(self) -> Iterator[tuple[int, Any]]:
        if not self.shuffle:
            yield from self.split.encoded_rows()
            return
        rng = np.random.default_rng([self.seed, self.epoch])
        buffer: list[tuple[int, Any]] = []
        for row in self.split.encoded_rows():
            buffer.append(row)
            if len(buffer) >= self.buffer_size:
                pick = int(rng.integers(len(buffer)))
                buffer[pick], buffer[-1] = buffer[-1], buffer[pick]
                yield buffer.pop()
        yield from (buffer[i] for i in rng.permutation(len(buffer)))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for position, (row, encoded) in enumerate(self._ordered()):
            if position % workers == worker:
                yield {"image": encoded, "row": row, "labels": self.labels[row]}


class StreamedBatchCollator:
    """Decodes a batch of `StreamedTrainingItems` (in the process and worker that trains on it), applies the
    train-time ``transform`` and normalises as `ImageBatchCollator` does."""

    def __init__(
        self,
        split: StreamedSplit,
        image_size: int,
        num_channels: int,
        normalizer: ImageBatchCollator,
        transform: Any = None,
        with_index: bool = False,
    ) -> None:
        self.split, self.image_size, self.num_channels = split, image_size, num_channels
        self.normalizer, self.transform, self.with_index = normalizer, transform, with_index

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        pixels = []
        for item in items:
            image = _image_pixels(self.split.decode(item["row"], item["image"]), self.image_size, self.num_channels)
            pixels.append(image if self.transform is None else self.transform(image))
        batch = {
            "pixel_values": self.normalizer.normalize(torch.stack(pixels)),
            "labels": torch.stack([item["labels"] for item in items]),
        }
        if self.with_index:
            batch["index"] = torch.tensor([item["row"] for item in items])
        return batch


ImageDataset = ImageTensorDataset | OnTheFlyImageDataset


def decoded_bytes(dataset: Dataset, num_channels: int = 3) -> int:
    """The bytes a split's pixels take decoded for a model with ``num_channels`` (grayscale is replicated for an
    RGB model), from its first image: sizes are uniform, checked at load."""
    if not len(dataset):
        return 0
    first = np.asarray(dataset[0]["image"])
    channels = first.shape[2] if first.ndim == 3 else 1
    return len(dataset) * first.shape[0] * first.shape[1] * max(channels, num_channels)


class ImageBatchCollator:
    """Stacks items and maps uint8 pixels to ``(x / 255 - mean) / std`` (the image processor's math)."""

    def __init__(self, image_mean: Sequence[float], image_std: Sequence[float]) -> None:
        self.mean = torch.tensor(image_mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(image_std, dtype=torch.float32).view(1, -1, 1, 1)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels.float() / 255.0 - self.mean) / self.std

    def __call__(self, items: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        batch = {key: torch.stack([item[key] for item in items]) for key in items[0]}
        batch["pixel_values"] = self.normalize(batch["pixel_values"])
        return batch


def model_inputs(
    model: PreTrainedModel,
    dataset: Dataset | IterableDataset,
    with_index: bool = False,
    loading: ImageLoading | None = None,
    train: bool = False,
    seed: int = 0,
) -> tuple[ImageDataset | StreamedTrainingItems, Any]:
    """The split at the model's size, in RAM or on the fly by ``loading``'s budget (a streamed one as it
    arrives: a `StreamedSplit` shuffled from ``seed`` when ``train``), with its augmentation when ``train``;
    and the collator with the model's normalisation."""
    loading = loading or ImageLoading()
    dataset = as_split(dataset)
    size, mean, std = image_normalization(model.config)
    transform = loading.transform(size) if train else None
    if isinstance(dataset, StreamedSplit):
        items = StreamedTrainingItems(dataset, seed=seed, shuffle=train)
        collate = StreamedBatchCollator(dataset, size, len(mean), ImageBatchCollator(mean, std), transform, with_index)
        return items, collate
    in_memory = decoded_bytes(dataset, len(mean)) <= loading.in_memory_gb * 1e9
    kind = ImageTensorDataset if in_memory else OnTheFlyImageDataset
    if not in_memory:
        logger.debug("decoding %d images on the fly (over the %g GB budget)", len(dataset), loading.in_memory_gb)
    return kind(dataset, size, len(mean), with_index=with_index, transform=transform), ImageBatchCollator(mean, std)


def at_model_size(model: PreTrainedModel, dataset: Dataset | StreamedSplit) -> Dataset | StreamedSplit:
    """``dataset`` with its images resized (bilinear) to the classifier's input size, if they differ (a
    streamed split lazily, as it is read)."""
    size = image_normalization(model.config)[0]
    dataset = as_split(dataset)
    if first_image(dataset).size == (size, size):
        return dataset
    if isinstance(dataset, StreamedSplit):  # resized as its images are decoded
        return dataset.resized(size)
    return dataset.map(
        lambda batch: {"image": [im.resize((size, size), PILImage.Resampling.BILINEAR) for im in batch["image"]]},
        batched=True,
        desc=f"resizing to {size} px for the bias amplifier",
    )


def prepared(model: PreTrainedModel, split: Dataset | StreamedSplit) -> Any:
    """``split`` ready for repeated `predict_logits` with ``model`` (model selection scores valid every epoch):
    decoded once at the model's size, or a streamed split itself (read again at each call)."""
    split = as_split(split)
    return split if isinstance(split, StreamedSplit) else model_inputs(model, split)[0]


@torch.no_grad()
def predict_logits(
    model: PreTrainedModel,
    dataset: Dataset | ImageDataset,
    batch_size: int = 1024,
    *,
    loading: ImageLoading | None = None,
    num_workers: int | None = None,
) -> np.ndarray:
    """Logits of ``model`` on every row of ``dataset`` (in order), on the model's device.

    Pass the dataset of `model_inputs` to skip decoding when predicting repeatedly. A split over ``loading``'s
    memory budget is decoded batch by batch (``num_workers`` DataLoader workers, default ``loading``'s); a
    streamed dataset (`datasets.IterableDataset`) as it arrives, in stream order. Under several processes (a
    torch.distributed group) each scores its share of the rows and every process gets all of them.
    """
    dataset = as_split(dataset)
    if isinstance(dataset, StreamedSplit):
        return _predict_stream(model, dataset, batch_size)
    if isinstance(dataset, ImageTensorDataset | OnTheFlyImageDataset):
        tensors, collate = dataset, ImageBatchCollator(*image_normalization(model.config)[1:])
    else:
        tensors, collate = model_inputs(model, dataset, loading=loading)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    rows = rows_of_this_process(len(tensors))  # each process its share; gathered below, in order
    starts = range(rows.start, rows.stop, batch_size)
    if isinstance(tensors, ImageTensorDataset):
        batches = (tensors.pixel_values[start : min(start + batch_size, rows.stop)] for start in starts)
    else:
        batches = iter(
            torch.utils.data.DataLoader(
                [range(start, min(start + batch_size, rows.stop)) for start in starts],
                batch_size=None,
                num_workers=num_workers if num_workers is not None else (loading or ImageLoading()).num_workers,
                collate_fn=tensors.pixels,
            )
        )
    outputs = [torch.zeros((0, model.config.num_labels), device=device)]
    for pixels in batches:
        outputs.append(model(pixel_values=collate.normalize(pixels).to(device)).logits.float())
    model.train(was_training)
    return gather_rows(torch.cat(outputs)).cpu().numpy()  # gathered on the device (NCCL needs CUDA tensors)


def _predict_stream(model: PreTrainedModel, dataset: StreamedSplit, batch_size: int) -> np.ndarray:
    """`predict_logits` of a streamed dataset, in stream order; each process decodes and scores every N-th row
    (in the process itself: DataLoader workers would each see a part of the stream, and the positions with it)."""
    size, mean, std = image_normalization(model.config)
    collate = ImageBatchCollator(mean, std)
    stream = StreamingImageDataset(dataset, size, len(mean))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    logits, positions = [torch.zeros((0, model.config.num_labels), device=device)], [torch.zeros(0, dtype=torch.long)]
    loader = torch.utils.data.DataLoader(stream, batch_size=batch_size, collate_fn=collate)
    for batch in loader:
        logits.append(model(pixel_values=batch["pixel_values"].to(device)).logits.float())
        positions.append(batch["index"])
    model.train(was_training)
    logits = gather_rows(torch.cat(logits)).cpu()
    positions = gather_rows(torch.cat(positions).to(device)).cpu()
    return logits[torch.argsort(positions)].numpy()  # back in stream order
