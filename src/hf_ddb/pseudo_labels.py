"""Pseudo labels from a bias model's signals, with no bias labels: the rules that flag a row
bias-conflicting (`pseudo_bias_labels`) and the pseudo groups they give (`pseudo_bias`). numpy only, so a config
names and checks its rule without importing torch."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .checks import check_choice, check_number

__all__ = [
    "PSEUDO_GROUPINGS",
    "PSEUDO_LABEL_RULES",
    "check_grouping",
    "check_rule",
    "pseudo_bias",
    "pseudo_bias_labels",
    "pseudo_bias_width",
]


def _rule_misclassified(signals: dict[str, np.ndarray]) -> np.ndarray:
    return ~np.asarray(signals["correct"], dtype=bool)


def _rule_loss_mixture(signals: dict[str, np.ndarray], seed: int = 0) -> np.ndarray:
    """Two-component Gaussian mixture on log(loss); the component with the higher mean is 'conflicting'."""
    from sklearn.mixture import GaussianMixture

    x = np.log(np.maximum(signals["loss"], 1e-8))[:, None]
    mixture = GaussianMixture(n_components=2, random_state=seed).fit(x)
    high = int(np.argmax(mixture.means_[:, 0]))
    return mixture.predict_proba(x)[:, high] > 0.5


def _rule_top_fraction(signals: dict[str, np.ndarray], fraction: float = 0.01) -> np.ndarray:
    check_number("fraction", fraction, low=0.0, high=1.0, low_open=True)
    if fraction == 1.0:
        raise ValueError("fraction must be below 1: flagging every sample is no pseudo label")
    count = max(1, int(round(fraction * len(signals["loss"]))))
    flags = np.zeros(len(signals["loss"]), dtype=bool)
    flags[np.argsort(-signals["loss"], kind="mergesort")[:count]] = True
    return flags


PSEUDO_LABEL_RULES = {
    "misclassified": _rule_misclassified,
    "loss_mixture": _rule_loss_mixture,
    "top_fraction": _rule_top_fraction,
}


def check_rule(rule: str, options: Mapping[str, Any]) -> None:
    """Raises unless ``rule`` is a pseudo-label rule that takes every one of ``options``."""
    if rule not in PSEUDO_LABEL_RULES:
        raise ValueError(f"unknown pseudo-label rule {rule!r}; choose one of {sorted(PSEUDO_LABEL_RULES)}")
    known = set(inspect.signature(PSEUDO_LABEL_RULES[rule]).parameters) - {"signals"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"rule {rule!r} takes no option(s) {unknown}; its options: {sorted(known)}")


def pseudo_bias_labels(signals: dict[str, np.ndarray], rule: str = "misclassified", **options: Any) -> np.ndarray:
    """Boolean "bias-conflicting" flag per sample from BA signals; no bias labels involved.

    Rules: ``misclassified`` (default; flagged when the BA gets the sample wrong), ``loss_mixture`` (a
    two-component Gaussian mixture on the log-losses picks the threshold; option ``seed``), ``top_fraction``
    (the ``fraction`` of samples with the highest loss). An option the rule does not take, or a NaN or
    infinite loss, is an error.
    """
    check_rule(rule, options)
    loss = np.asarray(signals["loss"], dtype=float)
    if not np.isfinite(loss).all():
        raise ValueError(f"signals['loss'] has {int((~np.isfinite(loss)).sum())} NaN or infinite values")
    return PSEUDO_LABEL_RULES[rule](signals, **options)


PSEUDO_GROUPINGS = ("inferred_bias", "flag")


def check_grouping(grouping: str, rule: str) -> None:
    """Raises unless ``grouping`` is one of `PSEUDO_GROUPINGS` and can be formed under ``rule``."""
    check_choice("groups", grouping, PSEUDO_GROUPINGS)
    if grouping == "inferred_bias" and rule != "misclassified":
        raise ValueError(
            f"groups 'inferred_bias' reads the amplifier's predicted class, which flags a row exactly when the "
            f"rule is 'misclassified'; with rule {rule!r} use groups 'flag'"
        )


def pseudo_bias_width(grouping: str, num_classes: int) -> int:
    """How many pseudo bias values a class has under ``grouping``: 2 for ``flag``, one per class otherwise."""
    return 2 if grouping == "flag" else num_classes


def pseudo_bias(
    signals: Mapping[str, np.ndarray], labels: Sequence[int] | np.ndarray, flags: np.ndarray, grouping: str, width: int
) -> np.ndarray:
    """Per row its pseudo bias value **relative to its class**: 0 where the amplifier sees the row as
    bias-aligned, so (class, value) are the row's pseudo group (group id ``label * width + value``).

    ``grouping="flag"``: the rule's bias-conflicting flag (0/1; ``width`` 2). ``"inferred_bias"``: the
    amplifier's predicted class is the row's inferred bias value, stored as ``(prediction - label) mod width``
    (``width`` = the number of classes): the conflicting rows of a class fall into one group per inferred bias
    value instead of one group for all. For a binary task both give the same ids, row for row.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if grouping == "flag":
        return np.asarray(flags, dtype=np.int64)
    prediction = np.asarray(signals["prediction"], dtype=np.int64)
    if prediction.size and (prediction.max() >= width or labels.max() >= width):
        raise ValueError(f"the amplifier predicts class {prediction.max()} but the dataset has {width} classes")
    return (prediction - labels) % width
