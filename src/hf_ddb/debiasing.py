"""Training a target with a debiasing method: `train_with_recipe` asks a `Recipe` what to train with (its
`BiasInference`), trains a fresh target with `DebiasTrainer` for each setting of the inference's tuning grid,
and keeps the epoch and setting the selection rules (`hf_ddb.selection`) score best on ``valid``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from transformers import PreTrainedModel, TrainerCallback

from .recipes import BiasInference, Recipe, RecipeContext
from .selection import selection_rule
from .trainer import DebiasTrainer, SelectBest, selection_score

__all__ = ["train_with_recipe"]


def _candidates(inference: BiasInference) -> list[tuple[dict[str, Any], BiasInference]]:
    """Every setting of the inference's ``search`` grid (just the inference itself when there is none)."""
    settings: list[dict[str, Any]] = [{}]
    for name, values in inference.search.items():
        settings = [{**setting, name: value} for setting in settings for value in values]
    return [(setting, replace(inference, objective=replace(inference.objective, **setting))) for setting in settings]


def train_with_recipe(
    recipe: Recipe,
    context: RecipeContext,
    output_dir: str,
    *,
    selection: str = "valid_accuracy",
    callbacks: Sequence[TrainerCallback] = (),
    valid_pseudo_bias: np.ndarray | None = None,
    progress_bar: bool = False,
) -> tuple[PreTrainedModel, dict[str, Any]]:
    """Infer the bias with ``recipe`` from ``context``, train a fresh model robustly, select on ``valid``.

    Only the context's ``train`` and ``valid`` are read; the test split is never touched here.
    Returns the selected model and a dict of what happened (inference info, selection history).
    ``callbacks`` are extra `TrainerCallback`s (e.g. a per-epoch probe in a benchmark; they see the
    Trainer's `DebiasModel`, whose ``target`` is the classifier). ``valid_pseudo_bias`` (an amplifier's pseudo
    bias per ``valid`` row, 0 = aligned: `hf_ddb.amplifier.pseudo_bias`) lets recipes that infer no pseudo
    groups of their own be selected by the pseudo-group selections. A recipe that asks to tune
    hyper-parameters (the oracle, DDB-I) has one model trained per setting; the best by its ``tune_on`` score
    on ``valid`` is returned. A callback with an ``on_bias_inference(inference)`` method is shown the recipe's
    `BiasInference` before training (a benchmark scores the recipe's own detection with it).
    """
    rule = selection_rule(selection)
    train, valid, training = context.train, context.valid, context.training
    if valid is None:
        raise ValueError("train_with_recipe selects on the 'valid' split: give the RecipeContext a valid split")
    inference = recipe.infer(context)
    for callback in callbacks:
        if hasattr(callback, "on_bias_inference"):
            callback.on_bias_inference(inference)
    if inference.valid_pseudo_bias is None and valid_pseudo_bias is not None:
        inference.valid_pseudo_bias = np.asarray(valid_pseudo_bias, dtype=np.int64)
    candidates = _candidates(inference)
    tuning = selection_score(inference.tune_on, valid, inference.valid_pseudo_bias) if len(candidates) > 1 else None
    best: tuple[float, PreTrainedModel, dict[str, Any]] | None = None
    search: list[dict[str, Any]] = []
    for setting, candidate in candidates:
        model = (candidate.make_target or context.new_model)()
        selector = (
            SelectBest(selection_score(selection, valid, candidate.valid_pseudo_bias), model) if rule.scores else None
        )
        args = training.to_training_arguments(output_dir, disable_tqdm=not progress_bar, logging_strategy="no")
        trainer = DebiasTrainer(
            model,
            args,
            train,
            candidate.objective,
            loading=training.image_loading(),
            callbacks=[*callbacks, *([selector] if selector else [])],
            progress_name=" ".join([recipe.name, *(f"{key}={value}" for key, value in setting.items())]),
        )
        trainer.train()
        info: dict[str, Any] = {"recipe": recipe.name, "uses_bias_labels": recipe.uses_bias_labels, **candidate.info}
        if selector is not None and selector.best_state is not None:
            model.load_state_dict(selector.best_state)
            info.update(
                selection=selection,
                selection_history=selector.history,
                selected_epoch=int(np.argmax(selector.history)) + 1,
            )
        model.eval()
        if tuning is None:
            return model, info
        score = tuning(model)
        search.append({**setting, inference.tune_on: score})
        if best is None or score > best[0]:
            best = (score, model, {**info, "tuned": setting})
    _, model, info = best
    info["search"] = search
    return model, info
