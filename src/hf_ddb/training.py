"""Training and evaluation of classifiers with `transformers.Trainer` on hf-ddb datasets.

A split whose decoded pixels fit under a memory budget (``TrainingConfig.in_memory_gb``, default 2 GB) is
decoded once into a uint8 tensor (a 60k-image 28 px split is 141 MB) instead of on every epoch; a larger
one is decoded batch by batch as the DataLoader asks (``dataloader_num_workers`` workers), so memory does
not grow with the dataset. Both give the same pixels. Train-time augmentation (``augmentation``) runs on
the uint8 images with torchvision ``transforms.v2``. The collator rescales and normalises exactly as the
model's saved image processor does, so a model trained here behaves the same inside
``pipeline("image-classification")``.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from datasets import Dataset, IterableDataset
from transformers import PreTrainedModel, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback

from .checks import LIMITS, check_choice, check_integer, check_number
from .data import StreamedSplit
from .metrics import group_metrics
from .models import image_normalization
from .utils import force_cpu_processes, gather_rows, process_rank_and_count, rows_of_this_process

logger = logging.getLogger(__name__)

__all__ = [
    "AUGMENTATIONS",
    "ImageBatchCollator",
    "ImageLoading",
    "ImageTensorDataset",
    "OnTheFlyImageDataset",
    "StreamedBatchCollator",
    "StreamedTrainingItems",
    "StreamingImageDataset",
    "streamed_training_items",
    "training_order_seed",
    "TrainingConfig",
    "evaluate_groups",
    "model_inputs",
    "predict_logits",
    "train_erm",
]


AUGMENTATIONS = ("none", "crop_flip")
DEFAULT_IN_MEMORY_GB = 2.0


@dataclass(frozen=True)
class ImageLoading:
    """How a split's images reach a model: decoded once into RAM when its pixels fit under ``in_memory_gb``
    (else on the fly, per batch, in ``num_workers`` DataLoader workers when scoring; training uses the
    Trainer's ``dataloader_num_workers``), and the train-time ``augmentation``: ``none``, or ``crop_flip``
    (random resized crop, scale 0.35-1, and horizontal flip, as the paper's ResNet targets train)."""

    augmentation: str = "none"
    in_memory_gb: float = DEFAULT_IN_MEMORY_GB
    num_workers: int = 0  # DataLoader workers that decode a split on the fly when scoring it

    def __post_init__(self) -> None:
        check_choice("augmentation", self.augmentation, AUGMENTATIONS)
        check_number("in_memory_gb", self.in_memory_gb, low=0.0, high=LIMITS["memory_gb"])
        check_integer("num_workers", self.num_workers, low=0, high=LIMITS["workers"])

    def transform(self, image_size: int) -> Any:
        """The augmentation as a torchvision v2 transform on uint8 C x H x W tensors (None for ``none``)."""
        if self.augmentation == "none":
            return None
        from torchvision.transforms import v2

        return v2.Compose(
            [v2.RandomResizedCrop(image_size, scale=(0.35, 1.0), antialias=True), v2.RandomHorizontalFlip()]
        )


_DECODED: OrderedDict[str, np.ndarray] = OrderedDict()  # fingerprint -> pixels; a pure cache of decoded PNGs
_DECODED_LIMIT_BYTES = 1 << 30


def _decoded_images(dataset: Dataset) -> np.ndarray:
    """The split's images as one uint8 N x H x W x C array, decoded once per dataset fingerprint.

    Every recipe, selection pass and evaluation reads the same splits; decoding 50,000 28 px PNGs takes
    about 7 s on one core (2026-11-30, beside other jobs), so recently decoded splits are kept (read-only
    arrays keyed by the dataset's fingerprint, at most 1 GiB in all; the least recently used go first).
    """
    key = dataset._fingerprint
    if key in _DECODED:
        _DECODED.move_to_end(key)
        return _DECODED[key]
    images = _decode_rows(dataset.select_columns(["image"]), range(len(dataset)))
    images.setflags(write=False)
    _DECODED[key] = images
    while len(_DECODED) > 1 and sum(a.nbytes for a in _DECODED.values()) > _DECODED_LIMIT_BYTES:
        _DECODED.popitem(last=False)
    return images


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


def _check_stream(dataset: IterableDataset) -> None:
    missing = [c for c in ("image", "label") if c not in (dataset.column_names or ["image", "label"])]
    if missing:
        raise ValueError(f"the streamed dataset has no column {missing[0]!r}; available: {dataset.column_names}")


def streamed_training_items(
    dataset: IterableDataset, image_size: int, num_channels: int = 3, transform: Any = None
) -> IterableDataset:
    """A streamed dataset (``load_dataset(..., streaming=True)``) as training items, decoded as they arrive: a
    `datasets.IterableDataset` still, so DataLoader workers split its shards and, under DDP, each process reads
    its own shards (Accelerate shards a stream with at least as many shards as processes; with fewer, every
    process reads it all and keeps its part of each batch)."""
    _check_stream(dataset)

    def item(row: dict[str, Any]) -> dict[str, torch.Tensor]:
        pixels = _image_pixels(row["image"], image_size, num_channels)
        return {
            "pixel_values": pixels if transform is None else transform(pixels),
            "labels": torch.tensor(int(row["label"])),
        }

    return dataset.map(item, remove_columns=dataset.column_names)


class StreamingImageDataset(torch.utils.data.IterableDataset):
    """A stream's rows for scoring (a `datasets.IterableDataset` or a `StreamedSplit`), in stream order, each with
    its row ``index``; on several processes each decodes only its rows (``i % N == rank``: the others pass
    undecoded)."""

    def __init__(self, dataset: IterableDataset | StreamedSplit, image_size: int, num_channels: int = 3) -> None:
        if isinstance(dataset, IterableDataset):
            _check_stream(dataset)
        self.dataset, self.image_size, self.num_channels = dataset, image_size, num_channels

    def _encoded_rows(self) -> Iterator[tuple[int, Any]]:
        if isinstance(self.dataset, StreamedSplit):
            return self.dataset.encoded_rows()
        from datasets import Image

        return enumerate(row["image"] for row in self.dataset.cast_column("image", Image(decode=False)))

    def _decode(self, row: int, encoded: Any) -> Any:
        if isinstance(self.dataset, StreamedSplit):
            return self.dataset.decode(row, encoded)
        from datasets import Image

        return Image().decode_example(encoded)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        rank, count = process_rank_and_count()
        for row, encoded in self._encoded_rows():
            if row % count == rank:
                image = self._decode(row, encoded)
                yield {
                    "pixel_values": _image_pixels(image, self.image_size, self.num_channels),
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
) -> tuple[ImageDataset | IterableDataset | StreamedTrainingItems, Any]:
    """The split at the model's size, in RAM or on the fly by ``loading``'s budget (a streamed one as it
    arrives: a `StreamedSplit` shuffled from ``seed`` when ``train``), with its augmentation when ``train``;
    and the collator with the model's normalisation."""
    loading = loading or ImageLoading()
    size, mean, std = image_normalization(model.config)
    transform = loading.transform(size) if train else None
    if isinstance(dataset, StreamedSplit):
        items = StreamedTrainingItems(dataset, seed=seed, shuffle=train)
        collate = StreamedBatchCollator(dataset, size, len(mean), ImageBatchCollator(mean, std), transform, with_index)
        return items, collate
    if isinstance(dataset, IterableDataset):
        if with_index:
            raise ValueError("a streamed dataset has no rows to index: per-sample methods need a downloaded one")
        return streamed_training_items(dataset, size, len(mean), transform), ImageBatchCollator(mean, std)
    in_memory = decoded_bytes(dataset, len(mean)) <= loading.in_memory_gb * 1e9
    kind = ImageTensorDataset if in_memory else OnTheFlyImageDataset
    if not in_memory:
        logger.debug("decoding %d images on the fly (over the %g GB budget)", len(dataset), loading.in_memory_gb)
    return kind(dataset, size, len(mean), with_index=with_index, transform=transform), ImageBatchCollator(mean, std)


@dataclass
class TrainingConfig:
    """The few settings the recipes share; defaults are LfF's Colored-MNIST ones.

    Adam (AdamW with no weight decay), lr 1e-3, batch 256, constant lr, and no gradient clipping
    (``max_grad_norm = 0``; transformers' default of 1.0 is not what LfF did).
    """

    epochs: float = 10.0
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    lr_scheduler: str = "constant"
    max_grad_norm: float = 0.0
    seed: int = 0
    mixed_precision: str | None = None  # "bf16" / "fp16" (devices that have it); None or "no": full precision
    torch_compile: bool = False
    report_to: str = "none"  # or "tensorboard", "wandb", ...: transformers' integrations
    augmentation: str = "none"  # or "crop_flip": random resized crop + horizontal flip (target and amplifier)
    in_memory_gb: float = DEFAULT_IN_MEMORY_GB  # splits that decode to more are decoded on the fly
    dataloader_num_workers: int = 0  # DataLoader worker processes (decoding on the fly, augmentation)

    def __post_init__(self) -> None:
        """Every value checked here, so a bad one fails before any training (``epochs=-1`` is no no-op)."""
        from transformers import SchedulerType

        check_number("epochs", self.epochs, low=0.0, low_open=True, high=LIMITS["epochs"])
        check_integer("batch_size", self.batch_size, low=1, high=LIMITS["batch_size"])
        check_number("learning_rate", self.learning_rate, low=0.0, low_open=True)
        check_number("weight_decay", self.weight_decay, low=0.0)
        check_number("max_grad_norm", self.max_grad_norm, low=0.0)
        check_integer("seed", self.seed, low=0, high=2**32 - 1)
        check_choice("lr_scheduler", self.lr_scheduler, [s.value for s in SchedulerType])
        check_choice("mixed_precision", self.mixed_precision, (None, "no", "bf16", "fp16"))
        check_choice("report_to", self.report_to, ("none", "all", "tensorboard", "wandb", "mlflow", "trackio"))
        if not isinstance(self.torch_compile, bool):
            raise ValueError(f"torch_compile must be true or false, got {self.torch_compile!r}")
        check_integer("dataloader_num_workers", self.dataloader_num_workers, low=0, high=LIMITS["workers"])
        self.image_loading()  # checks augmentation and in_memory_gb

    def image_loading(self) -> ImageLoading:
        return ImageLoading(self.augmentation, self.in_memory_gb, self.dataloader_num_workers)

    def to_training_arguments(self, output_dir: str | os.PathLike, **overrides: Any) -> TrainingArguments:
        """`TrainingArguments` for these settings; ``overrides`` pass straight to transformers."""
        values = dict(
            output_dir=str(output_dir),
            num_train_epochs=self.epochs,
            per_device_train_batch_size=self.batch_size,
            per_device_eval_batch_size=max(self.batch_size, 512),
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            lr_scheduler_type=self.lr_scheduler,
            max_grad_norm=self.max_grad_norm,
            optim="adamw_torch",
            seed=self.seed,
            data_seed=self.seed,
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="epoch",
            report_to=self.report_to,
            bf16=self.mixed_precision == "bf16",
            fp16=self.mixed_precision == "fp16",
            torch_compile=self.torch_compile,
            remove_unused_columns=False,
            dataloader_num_workers=self.dataloader_num_workers,
            dataloader_pin_memory=torch.cuda.is_available(),
            # several processes without CUDA (torchrun on CPU): DDP over gloo; transformers would else train
            # each process alone on the whole set
            use_cpu=force_cpu_processes(),
            # a streamed training set: each process reads its own shards instead of the main process reading
            # all and sending batches (map-style datasets are never dispatched: no change for them)
            accelerator_config={"dispatch_batches": False},
        )
        values.update(overrides)
        return TrainingArguments(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LogCallback(TrainerCallback):
    """Sends the Trainer's logged metrics to the ``hf_ddb`` logger (debug level) instead of ``print``: with
    ``disable_tqdm`` transformers adds a `PrinterCallback` that prints every log, e.g. the final
    ``train_runtime`` of each inner training (JTT's identification model, BiasEnsemble's committee)."""

    def on_log(self, args: TrainingArguments, state: Any, control: Any, logs: dict | None = None, **kwargs: Any):
        if state.is_local_process_zero and logs:
            logger.debug("step %d: %s", state.global_step, logs)


def log_instead_of_print(trainer: Trainer) -> Trainer:
    """Replaces ``trainer``'s `PrinterCallback` (if any) by `LogCallback`; returns the trainer."""
    if any(isinstance(callback, PrinterCallback) for callback in trainer.callback_handler.callbacks):
        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(LogCallback())
    return trainer


def training_order_seed(args: TrainingArguments) -> int:
    """The seed of the training order (transformers' ``data_seed``, else ``seed``): samplers and streams."""
    return args.data_seed if args.data_seed is not None else args.seed


def train_erm(
    model: PreTrainedModel,
    train: Dataset | StreamedSplit,
    args: TrainingArguments,
    *,
    callbacks: Sequence[Any] = (),
    loading: ImageLoading | None = None,
) -> Trainer:
    """Empirical risk minimisation: plain cross-entropy on ``train`` with `transformers.Trainer`."""
    tensors, collate = model_inputs(model, train, loading=loading, train=True, seed=training_order_seed(args))
    trainer = Trainer(model=model, args=args, train_dataset=tensors, data_collator=collate, callbacks=list(callbacks))
    log_instead_of_print(trainer).train()
    return trainer


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
    if isinstance(dataset, IterableDataset | StreamedSplit):
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


def _predict_stream(model: PreTrainedModel, dataset: IterableDataset | StreamedSplit, batch_size: int) -> np.ndarray:
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


def evaluate_groups(
    model: PreTrainedModel,
    dataset: Dataset | StreamedSplit,
    aligned_bias: Sequence[int] | None = None,
    loading: ImageLoading | None = None,
) -> dict[str, Any]:
    """`group_metrics` of ``model`` on a split with ``label`` and ``bias_label`` (evaluation only)."""
    if "bias_label" not in dataset.column_names:
        raise ValueError("evaluate_groups needs a 'bias_label' column; use plain accuracy for unlabelled data")
    logits = predict_logits(model, dataset, loading=loading)
    return group_metrics(logits, dataset["label"], dataset["bias_label"], aligned_bias=aligned_bias)
