"""Group-robustness metrics (numpy) and bias-detection metrics (scikit-learn): the ones hf-ddb uses.

A *group* is a (class, bias attribute) pair. A sample is bias-aligned when its bias attribute is the
one its class is aligned with (by default ``bias_label == label``, the convention of every embedded
benchmark); otherwise it is bias-conflicting.

The same functions are available as a local `evaluate` module (see `evaluate_module_path`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["detection_metrics", "evaluate_module_path", "group_metrics", "is_conflicting"]


def class_ids(name: str, values: Any) -> np.ndarray:
    """``values`` as int64 class ids: integers (or integral floats such as 3.0) >= 0; 1.7, -1, NaN or text
    are errors, never truncated or turned into a group of their own."""
    array = np.asarray(values)
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"{name} must be integer class ids, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.floating):
        bad = ~np.isfinite(array) | (array != np.round(array))
        if bad.any():
            raise ValueError(f"{name} must be integer class ids; row {int(np.flatnonzero(bad)[0])} is {array[bad][0]}")
    if array.size and array.min() < 0:
        raise ValueError(f"{name} must be class ids >= 0; row {int(np.argmin(array))} is {array.min()}")
    return array.astype(np.int64)


def _flags(name: str, values: Any) -> np.ndarray:
    """A boolean mask from booleans or 0/1 integers; anything else (e.g. "no"/"yes" strings) is an error."""
    array = np.asarray(values)
    if array.dtype == bool:
        return array
    if np.issubdtype(array.dtype, np.integer) and np.isin(array, (0, 1)).all():
        return array.astype(bool)
    raise ValueError(f"{name} must be booleans (or 0/1), got dtype {array.dtype}")


def _as_predictions(predictions: Any) -> np.ndarray:
    array = np.asarray(predictions)
    if array.ndim == 2:  # logits or probabilities
        if not np.isfinite(array).all():
            raise ValueError(f"predictions have {int((~np.isfinite(array)).sum())} NaN or infinite logits")
        return array.argmax(axis=1)
    if array.ndim != 1:
        raise ValueError(f"predictions must be 1-D class ids or 2-D logits, got shape {array.shape}")
    return class_ids("predictions", array)


def is_conflicting(
    labels: Sequence[int] | np.ndarray,
    bias_labels: Sequence[int] | np.ndarray,
    aligned_bias: Sequence[int] | None = None,
) -> np.ndarray:
    """Boolean mask of bias-conflicting samples.

    ``aligned_bias[c]`` is the bias attribute class ``c`` is aligned with; default: ``c`` itself.
    """
    labels, bias_labels = class_ids("labels", labels), class_ids("bias_labels", bias_labels)
    if labels.shape != bias_labels.shape:
        raise ValueError(f"labels {labels.shape} and bias_labels {bias_labels.shape} differ in shape")
    if aligned_bias is not None and labels.size and labels.max() >= len(aligned_bias):
        raise ValueError(f"aligned_bias has {len(aligned_bias)} entries but a label is {labels.max()}")
    aligned = labels if aligned_bias is None else class_ids("aligned_bias", aligned_bias)[labels]
    return bias_labels != aligned


def _mean_or_none(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def group_metrics(
    predictions: Sequence[int] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    bias_labels: Sequence[int] | np.ndarray,
    aligned_bias: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Average, worst-group, aligned, conflicting and unbiased accuracy, and accuracy per group.

    ``predictions`` are class ids or logits. ``unbiased_accuracy`` is the mean of the accuracies of
    the (class, bias) groups present, the metric LfF reports on Colored MNIST; ``worst_group_accuracy``
    is their minimum. Accuracies of an empty subset are ``None``.
    """
    preds = _as_predictions(predictions)
    labels, bias_labels = class_ids("labels", labels), class_ids("bias_labels", bias_labels)
    if not preds.shape == labels.shape == bias_labels.shape:
        raise ValueError(
            f"predictions {preds.shape}, labels {labels.shape} and bias_labels {bias_labels.shape} "
            "must have the same length"
        )
    if labels.size == 0:
        raise ValueError("group_metrics needs at least one sample")
    correct = preds == labels
    conflicting = is_conflicting(labels, bias_labels, aligned_bias)
    per_group = {}
    for label, bias in sorted(set(zip(labels.tolist(), bias_labels.tolist(), strict=True))):
        mask = (labels == label) & (bias_labels == bias)
        per_group[f"{label},{bias}"] = {"accuracy": float(correct[mask].mean()), "count": int(mask.sum())}
    group_accuracies = np.array([g["accuracy"] for g in per_group.values()])
    return {
        "accuracy": float(correct.mean()),
        "worst_group_accuracy": float(group_accuracies.min()),
        "aligned_accuracy": _mean_or_none(correct[~conflicting]),
        "conflicting_accuracy": _mean_or_none(correct[conflicting]),
        "unbiased_accuracy": float(group_accuracies.mean()),
        "per_group": per_group,
    }


def detection_metrics(
    scores: Sequence[float] | np.ndarray,
    is_conflicting: Sequence[bool] | np.ndarray,
    flagged: Sequence[bool] | np.ndarray | None = None,
) -> dict[str, Any]:
    """How well a per-sample score (higher = more likely bias-conflicting) finds the conflicting samples.

    Returns ``auroc``, ``average_precision`` and ``precision_at_k`` with ``k`` = the true number of
    conflicting samples (so it equals recall at that ``k``). With ``flagged`` (e.g. pseudo bias labels
    that mark samples as conflicting) also ``precision``, ``recall`` and ``f1`` of those flags.
    Uses bias labels: for evaluation only.
    """
    from sklearn.metrics import average_precision_score, precision_recall_fscore_support, roc_auc_score

    scores = np.asarray(scores, dtype=np.float64)
    positives = _flags("is_conflicting", is_conflicting)
    if scores.shape != positives.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and is_conflicting {positives.shape} must be equal 1-D shapes")
    if not np.isfinite(scores).all():
        raise ValueError(f"scores has {int((~np.isfinite(scores)).sum())} NaN or infinite values")
    k = int(positives.sum())
    both_present = 0 < k < positives.size
    top_k = np.argsort(-scores, kind="mergesort")[:k]
    result: dict[str, Any] = {
        "num_conflicting": k,
        "auroc": float(roc_auc_score(positives, scores)) if both_present else None,
        "average_precision": float(average_precision_score(positives, scores)) if k else None,
        "precision_at_k": float(positives[top_k].mean()) if k else None,
    }
    if flagged is not None:
        flags = _flags("flagged", flagged)
        if flags.shape != positives.shape:
            raise ValueError(f"flagged {flags.shape} must have the shape of is_conflicting {positives.shape}")
        precision, recall, f1, _ = precision_recall_fscore_support(
            positives, flags, average="binary", zero_division=np.nan
        )
        undefined = lambda value: None if np.isnan(value) else float(value)  # noqa: E731  (no flags, no positives)
        result.update(
            num_flagged=int(flags.sum()), precision=undefined(precision), recall=undefined(recall), f1=undefined(f1)
        )
    return result


def evaluate_module_path() -> str:
    """Path of the local `evaluate` module wrapping `group_metrics`: ``evaluate.load(path)``."""
    return str(Path(__file__).parent / "metric_modules" / "group_accuracy" / "group_accuracy.py")
