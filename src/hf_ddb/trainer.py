"""The one `transformers.Trainer` subclass of hf-ddb: `DebiasTrainer` minimises an `Objective`
(`hf_ddb.objectives`) with the target and any co-trained model inside one `DebiasModel`. Every training goes
through it: the debiasing methods, the bias amplifier (`hf_ddb.amplifier.BiasAmplifierTrainer`, GCE on
synthetic images) and BiasEnsemble's committee."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from torch import nn
from transformers import PreTrainedModel, Trainer, TrainerCallback, TrainingArguments
from transformers.utils import ModelOutput

from .inputs import is_streamed, model_inputs, predict_logits, prepared
from .objectives import Objective
from .selection import selection_rule
from .settings import ImageLoading
from .training import log_instead_of_print, training_order_seed

__all__ = ["DebiasModel", "DebiasOutput", "DebiasTrainer", "SelectBest", "selection_score"]


@dataclass
class DebiasOutput(ModelOutput):
    """`DebiasModel`'s output: the target's logits and each co-trained auxiliary's logits by name."""

    logits: torch.Tensor | None = None
    auxiliary_logits: dict[str, torch.Tensor] | None = None
    target_output: ModelOutput | None = None


class DebiasModel(nn.Module):
    """The target classifier and the auxiliary models co-trained with it, as the one module a Trainer owns.

    `forward` runs the target and every auxiliary on the same batch, so the Trainer's optimizer,
    ``zero_grad``, DDP wrapping, mixed precision, device placement and checkpoints cover all of them by
    construction (LfF's bias model once sat beside the Trainer's model and its gradients were never
    zeroed). ``target`` is the classifier that is selected, evaluated and saved.
    """

    def __init__(self, target: PreTrainedModel, auxiliaries: Mapping[str, nn.Module] | None = None) -> None:
        super().__init__()
        self.target = target
        self.auxiliaries = nn.ModuleDict(dict(auxiliaries or {}))

    def forward(self, pixel_values: torch.Tensor, **target_kwargs: Any) -> DebiasOutput:
        """``target_kwargs`` go to the target only (e.g. DFA's ``permutation``)."""
        output = self.target(pixel_values=pixel_values, **target_kwargs)
        auxiliary = {name: module(pixel_values=pixel_values).logits for name, module in self.auxiliaries.items()}
        return DebiasOutput(logits=output.logits, auxiliary_logits=auxiliary, target_output=output)


class DebiasTrainer(Trainer):
    """A `Trainer` that minimises an `Objective` (`hf_ddb.objectives`): ERM, weighted ERM, GroupDRO, LfF-style
    weights or DFA's loss.

    The Trainer's ``model`` is a `DebiasModel` holding ``target`` and the objective's co-trained auxiliaries
    (LfF's bias model), so one optimizer, ``zero_grad`` and device placement cover them all;
    ``trainer.target`` is the classifier to keep. The objective owns its state (GroupDRO's group weights,
    LfF's per-sample loss EMAs: the same on every process of a distributed run) and may supply the train
    sampler.
    """

    loss_is_scaled_for_ga = False

    def __init__(
        self,
        model: PreTrainedModel,
        args: TrainingArguments,
        train_dataset: Dataset,
        objective: Objective,
        loading: ImageLoading | None = None,
        progress_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        objective.check_target(model)
        if hasattr(train_dataset, "__len__") and len(train_dataset) == 0:
            raise ValueError("train_dataset is empty: there is nothing to train on")
        seed = training_order_seed(args)
        if is_streamed(train_dataset) and objective.samples_rows:
            raise ValueError(
                f"the {type(objective).__name__} draws its batches with a sampler over rows (group- or "
                "class-balanced), which a streamed training split cannot give; turn the balancing off or download "
                "the dataset"
            )
        tensors, collate = model_inputs(model, train_dataset, with_index=True, loading=loading, train=True, seed=seed)
        labels, num_labels = tensors.columns["labels"], model.config.num_labels
        outside = labels[(labels < 0) | (labels >= num_labels)]
        if len(outside):
            raise ValueError(
                f"train_dataset has label {int(outside[0])}, outside the model's {num_labels} classes "
                f"(0..{num_labels - 1}): build the model with the dataset's class names"
            )
        self.target = model
        super().__init__(
            model=DebiasModel(model, objective.auxiliaries()),
            args=args,
            train_dataset=tensors,
            data_collator=collate,
            **kwargs,
        )
        self.objective = objective
        self._loss_parts: dict[str, tuple[float, int]] = {}  # name -> (sum, steps) since the last log
        objective.bind(tensors.columns["labels"], args.device)
        log_instead_of_print(self, progress_name)

    def _get_train_sampler(self, *args: Any, **kwargs: Any) -> torch.utils.data.Sampler | None:
        sampler = self.objective.train_sampler(training_order_seed(self.args))
        return sampler if sampler is not None else super()._get_train_sampler(*args, **kwargs)

    def compute_loss(
        self, model: nn.Module, inputs: dict[str, torch.Tensor], return_outputs: bool = False, **kwargs: Any
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        index = inputs.pop("index")
        labels = inputs.pop("labels")
        loss, outputs, *named = self.objective.loss(self, model, inputs, labels, index)  # an older objective: 2
        for name, part in (named[0] if named else {}).items():  # summed until the next log
            total, count = self._loss_parts.get(name, (0.0, 0))
            self._loss_parts[name] = (total + float(part.detach()), count + 1)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """The Trainer's log, with each named part of the objective's loss (`Objective.loss`) as ``loss_<part>``:
        its mean over this process's steps since the last log."""
        if "loss" in logs:
            for name, (total, count) in self._loss_parts.items():
                logs[f"loss_{name}"] = round(total / count, 4)
            self._loss_parts = {}
        super().log(logs, *args, **kwargs)


class SelectBest(TrainerCallback):
    """Evaluates ``target`` on ``valid`` after every epoch and keeps its best weights in memory.

    With ``every_steps`` it evaluates after steps 1, 1 + every_steps, ... instead (BiasEnsemble's early
    stopping of each committee member)."""

    def __init__(
        self, score: Callable[[PreTrainedModel], float], target: PreTrainedModel, every_steps: int | None = None
    ) -> None:
        self.score, self.target, self.every_steps = score, target, every_steps
        self.best, self.best_state, self.history = -np.inf, None, []

    def on_epoch_end(self, args: TrainingArguments, state: Any, control: Any, **kwargs: Any) -> None:
        if self.every_steps is None:
            self._evaluate()

    def on_step_end(self, args: TrainingArguments, state: Any, control: Any, **kwargs: Any) -> None:
        if self.every_steps is not None and (state.global_step - 1) % self.every_steps == 0:
            self._evaluate()

    def _evaluate(self) -> None:
        value = self.score(self.target)
        self.history.append(value)
        if value > self.best:
            self.best, self.best_state = value, copy.deepcopy(self.target.state_dict())
        self.target.train()


def selection_score(
    selection: str, valid: Dataset, valid_pseudo_bias: np.ndarray | None = None
) -> Callable[[PreTrainedModel], float]:
    """The score a `hf_ddb.selection` rule gives a model on ``valid`` (its logits computed with the split
    prepared once, at the first call); ``valid_pseudo_bias``: the amplifier's pseudo bias per valid row, for
    the rules that read pseudo groups."""
    rule = selection_rule(selection)
    labels = np.asarray(valid["label"])
    bias = None
    if rule.needs_amplifier:
        if valid_pseudo_bias is None:
            raise ValueError(f"{selection} selection needs the amplifier's pseudo groups (a DDB recipe or flags)")
        bias = np.asarray(valid_pseudo_bias)
    elif rule.uses_bias_labels:
        bias = np.asarray(valid["bias_label"])
    ready: list[Any] = []  # valid prepared once, at the first evaluation

    def score(model: PreTrainedModel) -> float:
        if not ready:
            ready.append(prepared(model, valid))
        return rule.score(predict_logits(model, ready[0]), labels, bias)

    return score
