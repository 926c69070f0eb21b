"""Model selection rules: which epoch of a training run (and which setting of a tuning grid) is kept, scored
on ``valid`` only, never on ``test``. One small class per kind of rule, named in configs by `SELECTION_RULES`'s
keys; numpy only, so a config's ``selection`` is checked without importing torch.

* ``last`` - the last epoch, nothing scored.
* ``valid_accuracy`` - accuracy on valid.
* ``valid_worst_pseudo_group`` / ``valid_mean_pseudo_group`` - worst or mean accuracy over the amplifier's
  pseudo groups on valid (they need the amplifier; no bias labels).
* ``oracle_valid_worst_group`` / ``oracle_valid_unbiased`` - worst or mean accuracy over the true groups on
  valid: they read bias labels, oracles named as such.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .metrics import group_metrics

__all__ = [
    "AUTO_WITH_AMPLIFIER",
    "SELECTION_RULES",
    "GroupSelection",
    "LastEpoch",
    "Selection",
    "ValidAccuracy",
    "default_selection",
    "selection_rule",
]


class Selection:
    """A rule that ranks a model on the valid split; ``needs_amplifier``: it reads the amplifier's pseudo groups;
    ``uses_bias_labels``: it reads valid's true bias labels (an oracle)."""

    name = ""
    needs_amplifier = False
    uses_bias_labels = False
    scores = True  # False for `last`: no epoch is scored

    def score(self, logits: np.ndarray, labels: np.ndarray, bias: np.ndarray | None = None) -> float:
        """The model's score from its valid ``logits`` (``bias``: pseudo or true bias per row, when the rule
        reads groups); higher is better."""
        raise NotImplementedError


class LastEpoch(Selection):
    name = "last"
    scores = False


class ValidAccuracy(Selection):
    name = "valid_accuracy"

    def score(self, logits: np.ndarray, labels: np.ndarray, bias: np.ndarray | None = None) -> float:
        return float((np.asarray(logits).argmax(1) == np.asarray(labels)).mean())


class GroupSelection(Selection):
    """Worst (``statistic="worst"``) or mean (``"mean"``) accuracy over (class, bias) groups on valid, the bias
    being the amplifier's pseudo bias (``needs_amplifier``) or the true one (``uses_bias_labels``)."""

    def __init__(
        self, name: str, statistic: str, *, needs_amplifier: bool = False, uses_bias_labels: bool = False
    ) -> None:
        self.name, self.statistic = name, statistic
        self.needs_amplifier, self.uses_bias_labels = needs_amplifier, uses_bias_labels

    def score(self, logits: np.ndarray, labels: np.ndarray, bias: np.ndarray | None = None) -> float:
        if bias is None:
            raise ValueError(f"{self.name} selection needs a bias value per valid row")
        key = "worst_group_accuracy" if self.statistic == "worst" else "unbiased_accuracy"
        return group_metrics(logits, labels, bias)[key]


SELECTION_RULES: dict[str, Selection] = {
    rule.name: rule
    for rule in (
        ValidAccuracy(),
        LastEpoch(),
        GroupSelection("valid_worst_pseudo_group", "worst", needs_amplifier=True),
        GroupSelection("valid_mean_pseudo_group", "mean", needs_amplifier=True),
        GroupSelection("oracle_valid_worst_group", "worst", uses_bias_labels=True),
        GroupSelection("oracle_valid_unbiased", "mean", uses_bias_labels=True),
    )
}

# `selection: auto` (the default) with an amplifier in the run: every method selected by the amplifier's pseudo
# groups on valid; chosen across the three embedded benchmarks (docs/results/index.md, "DDB's defaults").
AUTO_WITH_AMPLIFIER = "valid_mean_pseudo_group"


def selection_rule(name: str) -> Selection:
    """The rule called ``name``; `ValueError` naming the choices otherwise."""
    if name not in SELECTION_RULES:
        raise ValueError(f"unknown selection {name!r}; choose one of {list(SELECTION_RULES)}")
    return SELECTION_RULES[name]


def default_selection(recipes: Sequence[Any]) -> str:
    """What ``selection: auto`` means for a run of ``recipes``: the amplifier's pseudo groups on valid when a
    DDB method trains an amplifier anyway (fair to every method: validation accuracy on a biased valid split
    picks the early, biased epochs of the reweighting methods), otherwise validation accuracy."""
    return AUTO_WITH_AMPLIFIER if any(r.needs_amplifier for r in recipes) else "valid_accuracy"
