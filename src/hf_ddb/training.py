"""Training and evaluation of classifiers with `transformers.Trainer` on hf-ddb datasets.

Images are decoded once into a uint8 tensor (a 60k-image 28 px split is 141 MB) instead of on every
epoch; the collator rescales and normalises exactly as the model's saved image processor does, so a
model trained here behaves the same inside ``pipeline("image-classification")``.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from transformers import PreTrainedModel, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback

from .checks import check_choice, check_integer, check_number
from .metrics import group_metrics
from .models import image_normalization

logger = logging.getLogger(__name__)

__all__ = [
    "ImageBatchCollator",
    "ImageTensorDataset",
    "TrainingConfig",
    "evaluate_groups",
    "model_inputs",
    "predict_logits",
    "train_erm",
]


_DECODED: OrderedDict[str, np.ndarray] = OrderedDict()  # fingerprint -> pixels; a pure cache of decoded PNGs
_DECODED_LIMIT_BYTES = 1 << 30


def _decoded_images(dataset: Dataset) -> np.ndarray:
    """The split's images as one uint8 N x H x W x C array, decoded once per dataset fingerprint.

    Every recipe, selection pass and evaluation reads the same splits; decoding 50,000 PNGs takes about
    10 s on 2 cores, so recently decoded splits are kept (read-only arrays keyed by the dataset's
    fingerprint, at most 1 GiB in all; the least recently used go first).
    """
    key = dataset._fingerprint
    if key in _DECODED:
        _DECODED.move_to_end(key)
        return _DECODED[key]
    images = np.stack(dataset.with_format("numpy", columns=["image"])["image"])
    if images.ndim == 3:
        images = images[..., None]
    images.setflags(write=False)
    _DECODED[key] = images
    while len(_DECODED) > 1 and sum(a.nbytes for a in _DECODED.values()) > _DECODED_LIMIT_BYTES:
        _DECODED.popitem(last=False)
    return images


class ImageTensorDataset(torch.utils.data.Dataset):
    """A decoded image split: ``pixel_values`` (uint8 C x H x W), ``labels`` and any integer columns."""

    def __init__(
        self,
        dataset: Dataset,
        image_size: int,
        num_channels: int = 3,
        columns: Sequence[str] = (),
        with_index: bool = False,
    ) -> None:
        for column in ("image", "label", *columns):
            if column not in dataset.column_names:
                raise ValueError(f"dataset has no column {column!r}; available: {dataset.column_names}")
        images = _decoded_images(dataset)
        if images.shape[1:3] != (image_size, image_size):
            raise ValueError(
                f"images are {images.shape[1]}x{images.shape[2]} px but the model expects "
                f"{image_size}x{image_size}; build the data at that size (e.g. image_size={image_size})"
            )
        pixels = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
        if pixels.shape[1] == 1 and num_channels == 3:
            # grayscale in an RGB classifier: replicated, as transformers' pipelines do (``load_image`` converts
            # every image to RGB), so training and ``pipeline("image-classification")`` see the same pixels
            pixels = pixels.expand(-1, 3, -1, -1).contiguous()
        if pixels.shape[1] != num_channels:
            raise ValueError(f"images have {pixels.shape[1]} channel(s) but the model expects {num_channels}")
        self.pixel_values = pixels
        self.columns = {"labels": torch.as_tensor(np.asarray(dataset["label"]), dtype=torch.long)}
        for column in columns:
            self.columns[column] = torch.as_tensor(np.asarray(dataset[column]), dtype=torch.long)
        if with_index:  # the row number, for per-sample state (LfF's loss EMA, JTT weights, groups)
            self.columns["index"] = torch.arange(len(dataset))

    def __len__(self) -> int:
        return self.pixel_values.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = {"pixel_values": self.pixel_values[index]}
        item.update({name: values[index] for name, values in self.columns.items()})
        return item


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
    model: PreTrainedModel, dataset: Dataset, with_index: bool = False
) -> tuple[ImageTensorDataset, ImageBatchCollator]:
    """The decoded split at the model's size and the collator with the model's normalisation."""
    size, mean, std = image_normalization(model.config)
    return ImageTensorDataset(dataset, size, len(mean), with_index=with_index), ImageBatchCollator(mean, std)


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

    def __post_init__(self) -> None:
        """Every value checked here, so a bad one fails before any training (``epochs=-1`` is no no-op)."""
        from transformers import SchedulerType

        check_number("epochs", self.epochs, low=0.0, low_open=True)
        check_integer("batch_size", self.batch_size, low=1)
        check_number("learning_rate", self.learning_rate, low=0.0, low_open=True)
        check_number("weight_decay", self.weight_decay, low=0.0)
        check_number("max_grad_norm", self.max_grad_norm, low=0.0)
        check_integer("seed", self.seed, low=0, high=2**32 - 1)
        check_choice("lr_scheduler", self.lr_scheduler, [s.value for s in SchedulerType])
        check_choice("mixed_precision", self.mixed_precision, (None, "no", "bf16", "fp16"))
        check_choice("report_to", self.report_to, ("none", "all", "tensorboard", "wandb", "mlflow", "trackio"))
        if not isinstance(self.torch_compile, bool):
            raise ValueError(f"torch_compile must be true or false, got {self.torch_compile!r}")

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
            dataloader_pin_memory=torch.cuda.is_available(),
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


def train_erm(
    model: PreTrainedModel, train: Dataset, args: TrainingArguments, *, callbacks: Sequence[Any] = ()
) -> Trainer:
    """Empirical risk minimisation: plain cross-entropy on ``train`` with `transformers.Trainer`."""
    tensors, collate = model_inputs(model, train)
    trainer = Trainer(model=model, args=args, train_dataset=tensors, data_collator=collate, callbacks=list(callbacks))
    log_instead_of_print(trainer).train()
    return trainer


@torch.no_grad()
def predict_logits(model: PreTrainedModel, dataset: Dataset | ImageTensorDataset, batch_size: int = 1024) -> np.ndarray:
    """Logits of ``model`` on every row of ``dataset`` (in order), on the model's device.

    Pass an `ImageTensorDataset` (from `model_inputs`) to skip decoding when predicting repeatedly.
    """
    if isinstance(dataset, ImageTensorDataset):
        tensors, collate = dataset, ImageBatchCollator(*image_normalization(model.config)[1:])
    else:
        tensors, collate = model_inputs(model, dataset)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    outputs = []
    for start in range(0, len(tensors), batch_size):
        pixels = collate.normalize(tensors.pixel_values[start : start + batch_size])
        outputs.append(model(pixel_values=pixels.to(device)).logits.float().cpu().numpy())
    model.train(was_training)
    return np.concatenate(outputs)


def evaluate_groups(
    model: PreTrainedModel, dataset: Dataset, aligned_bias: Sequence[int] | None = None
) -> dict[str, Any]:
    """`group_metrics` of ``model`` on a split with ``label`` and ``bias_label`` (evaluation only)."""
    if "bias_label" not in dataset.column_names:
        raise ValueError("evaluate_groups needs a 'bias_label' column; use plain accuracy for unlabelled data")
    logits = predict_logits(model, dataset)
    return group_metrics(logits, dataset["label"], dataset["bias_label"], aligned_bias=aligned_bias)
