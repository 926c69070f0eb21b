"""Training settings (`TrainingConfig`, turned into `transformers.TrainingArguments`), plain ERM with
`transformers.Trainer` and group evaluation. How a split's images reach the model is `hf_ddb.inputs`'s."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from datasets import Dataset
from transformers import PreTrainedModel, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from .checks import LIMITS, check_choice, check_integer, check_number
from .inputs import DEFAULT_IN_MEMORY_GB, ImageLoading, StreamedSplit, model_inputs, predict_logits
from .metrics import group_metrics
from .utils import force_cpu_processes

logger = logging.getLogger(__name__)

__all__ = ["TrainingConfig", "evaluate_groups", "train_erm", "training_order_seed"]


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
        check_integer("seed", self.seed, low=0, high=LIMITS["seed"])
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


class NamedProgressCallback(ProgressCallback):
    """transformers' progress bar with a name (which method or candidate is training); the metrics the Trainer
    logs go to the ``hf_ddb`` logger (debug level) instead of being written under the bar."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__()
        self.name = name

    def on_train_begin(self, args: TrainingArguments, state: Any, control: Any, **kwargs: Any) -> None:
        super().on_train_begin(args, state, control, **kwargs)
        if self.training_bar is not None and self.name:
            self.training_bar.set_description(self.name)

    def on_log(self, args: TrainingArguments, state: Any, control: Any, logs: dict | None = None, **kwargs: Any):
        if state.is_world_process_zero and logs:
            logger.debug("%s step %d: %s", self.name or "training", state.global_step, logs)


def log_instead_of_print(trainer: Trainer, name: str | None = None) -> Trainer:
    """Replaces ``trainer``'s `PrinterCallback` (if any) by `LogCallback` and its progress bar (if any) by a
    `NamedProgressCallback` called ``name``: the Trainer prints nothing but its bar; returns the trainer."""
    callbacks = trainer.callback_handler.callbacks
    if any(isinstance(callback, PrinterCallback) for callback in callbacks):
        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(LogCallback())
    if any(type(callback) is ProgressCallback for callback in callbacks):
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(NamedProgressCallback(name))
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
