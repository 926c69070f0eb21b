"""Training settings (`TrainingConfig`, turned into `transformers.TrainingArguments`), plain ERM with
`transformers.Trainer` and group evaluation. How a split's images reach the model is `hf_ddb.inputs`'s."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from datasets import Dataset
from transformers import PreTrainedModel, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from .inputs import StreamedSplit, model_inputs, predict_logits
from .metrics import group_metrics
from .settings import ImageLoading, TrainingConfig

logger = logging.getLogger(__name__)

__all__ = ["TrainingConfig", "evaluate_groups", "train_erm", "training_order_seed"]


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
