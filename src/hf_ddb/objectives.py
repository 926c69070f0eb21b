"""Training objectives: how the target's per-sample losses become the loss `DebiasTrainer` minimises.

One small class per objective (as timm's ``TrainingTask`` subclasses), each owning its hyper-parameters
(checked when it is built, so a config is validated before any work), its per-run state (created by
`bind` once the training set is known) and the auxiliary modules it co-trains with the target (returned
by `auxiliaries`, so they live inside the one module the Trainer optimises):

* `ERMObjective` - cross-entropy, optionally per-sample weighted (JTT's upweighted error set).
* `GroupDROObjective` - GroupDRO's online group weights over given groups (true or pseudo).
* `RelativeDifficultyObjective` - LfF's W = L_B / (L_B + L_D) from per-sample loss EMAs, with a bias model
  co-trained (LfF, BiasEnsemble) or frozen (DDB-II: fixed losses).
* `DisEntObjective` - DFA's loss on a disentangled target (LfF's weights plus feature swapping).

A recipe (`hf_ddb.recipes`) decides which objective to use and with what groups, weights or bias model.
`Objective.loss` returns the total and its named parts (the target's term, the co-trained bias model's, DFA's
swap term), which `DebiasTrainer` logs beside the loss.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from .settings import (
    DisEntSettings,
    EMASettings,
    LfFSettings,
    check_group_dro,
    check_unit_interval,
    settings_of,
)
from .utils import gather_rows, process_rank_and_count, sum_over_processes

if TYPE_CHECKING:
    from transformers import Trainer

__all__ = [
    "WEIGHT_NORMALISATIONS",
    "DisEntSettings",
    "EMASettings",
    "LfFSettings",
    "DisEntObjective",
    "ERMObjective",
    "GroupBalancedSampler",
    "GroupDROObjective",
    "Objective",
    "RelativeDifficultyObjective",
    "check_group_dro",
    "gce_loss",
    "settings_of",
]

WEIGHT_NORMALISATIONS = ("none", "class", "group")


def gce_loss(logits: torch.Tensor, labels: torch.Tensor, q: float = 0.7) -> torch.Tensor:
    """Generalised cross-entropy per sample, ``(1 - p_y^q) / q`` (Zhang & Sabuncu, 2018).

    Its gradient is ``p_y^q`` times the cross-entropy gradient: easy (bias-aligned) samples dominate,
    which is why LfF and DDB use it to make a model *more* biased.
    """
    if not 0 < q <= 1:
        raise ValueError(f"GCE needs 0 < q <= 1, got {q}")
    p_true = F.softmax(logits.float(), dim=1).gather(1, labels[:, None]).squeeze(1)
    return (1.0 - p_true.clamp_min(1e-12) ** q) / q


def _per_row(name: str, values: np.ndarray | None, n: int) -> None:
    if values is not None and len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries but the training set has {n} samples")


class Objective:
    """Base class: plain cross-entropy. Subclasses override `reduce` (the loss from the target's per-sample CE
    and the outputs), or `loss` when the forward pass itself differs (DFA), and, as needed, the hooks below."""

    name = "erm"

    def auxiliaries(self) -> dict[str, nn.Module]:
        """Modules trained alongside the target (put inside `DebiasModel`, so the Trainer owns them)."""
        return {}

    def check_target(self, target: PreTrainedModel) -> None:
        """Raises if ``target`` cannot be trained with this objective."""

    def bind(self, labels: torch.Tensor, device: torch.device) -> None:
        """Checks per-sample inputs against the training set's ``labels`` and creates the per-run state."""

    @property
    def samples_rows(self) -> bool:
        """Whether `train_sampler` draws rows itself (a streamed split, read in order, cannot be sampled)."""
        return False

    def train_sampler(self, seed: int) -> torch.utils.data.Sampler[int] | None:
        """A sampler for the training rows (after `bind`), or None for the Trainer's own."""
        return None

    def loss(
        self,
        trainer: Trainer,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        labels: torch.Tensor,
        index: torch.Tensor,
    ) -> tuple[torch.Tensor, Any, dict[str, torch.Tensor]]:
        """The batch's loss, the model's outputs and the loss's named parts (they sum to it); ``index`` holds the
        batch's training-set rows."""
        outputs = model(**inputs)
        terms = self.reduce(self.per_sample_loss(outputs.logits, labels), index, outputs, labels)
        return (sum(terms.values()), outputs, terms) if isinstance(terms, dict) else (terms, outputs, {})

    def per_sample_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The target's loss per sample, which `reduce` turns into the batch's: cross-entropy."""
        return F.cross_entropy(logits.float(), labels, reduction="none")

    def reduce(
        self, ce: torch.Tensor, index: torch.Tensor, outputs: Any, labels: torch.Tensor
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """The loss from the target's per-sample CE (``outputs`` also holds co-trained models' logits), or its
        named terms (the loss is their sum)."""
        return ce.mean()


@dataclass
class ERMObjective(Objective):
    """Cross-entropy (or, with ``loss="gce"``, generalised CE with ``gce_q``: the bias amplifier's and the bias
    models' loss); with ``sample_weights`` (one per training row, rescaled to mean 1) weighted ERM; with
    ``class_balanced`` batches drawn with every class equally likely (for unequal class counts)."""

    sample_weights: np.ndarray | None = None
    loss_type: str = "ce"
    gce_q: float = 0.7
    class_balanced: bool = False
    name = "erm"

    def __post_init__(self) -> None:
        if self.loss_type not in ("ce", "gce"):
            raise ValueError(f"loss must be 'ce' or 'gce', got {self.loss_type!r}")
        check_unit_interval("gce_q", self.gce_q, low_open=True)
        if self.sample_weights is not None:
            weights = np.asarray(self.sample_weights, dtype=float)
            if not np.isfinite(weights).all() or (weights < 0).any() or not weights.sum() > 0:
                raise ValueError("sample_weights must be finite, non-negative and not all zero")

    @property
    def samples_rows(self) -> bool:
        return self.class_balanced

    def bind(self, labels: torch.Tensor, device: torch.device) -> None:
        _per_row("sample_weights", self.sample_weights, len(labels))
        self._labels = labels
        self._weights = None
        if self.sample_weights is not None:
            weights = torch.as_tensor(self.sample_weights, dtype=torch.float32)
            self._weights = (weights / weights.mean()).to(device)

    def train_sampler(self, seed: int) -> torch.utils.data.Sampler[int] | None:
        if not self.class_balanced:
            return None
        labels = self._labels.cpu()
        weights = (1.0 / torch.bincount(labels).double())[labels]
        generator = torch.Generator().manual_seed(seed)
        return torch.utils.data.WeightedRandomSampler(weights, len(weights), replacement=True, generator=generator)

    def per_sample_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return (
            gce_loss(logits, labels, self.gce_q) if self.loss_type == "gce" else super().per_sample_loss(logits, labels)
        )

    def reduce(self, ce: torch.Tensor, index: torch.Tensor, outputs: Any, labels: torch.Tensor) -> torch.Tensor:
        return ce.mean() if self._weights is None else (self._weights[index] * ce).mean()


class GroupBalancedSampler(torch.utils.data.Sampler[int]):
    """Draws ``num_samples`` rows per epoch with replacement, each group equally likely (Sagawa et al.'s
    ``--reweight_groups``: weight 1 / n_g per row).

    The draw depends only on (``seed``, epoch): every process of a distributed run produces the same
    sequence and Accelerate's batch sharding gives each process its own batches, as it does for
    transformers' seeded random sampler. The Trainer advances the epoch through `set_epoch`.
    """

    def __init__(self, group_ids: Sequence[int] | np.ndarray, num_samples: int | None = None, seed: int = 0) -> None:
        groups = torch.as_tensor(np.asarray(group_ids), dtype=torch.long)
        if groups.numel() == 0 or int(groups.min()) < 0:
            raise ValueError("group_ids must be a non-empty sequence of non-negative group ids")
        counts = torch.bincount(groups).double()
        self.weights = 1.0 / counts[groups]
        self.num_samples = len(groups) if num_samples is None else int(num_samples)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        yield from torch.multinomial(self.weights, self.num_samples, replacement=True, generator=generator).tolist()


@dataclass
class GroupDROObjective(Objective):
    """GroupDRO (Sagawa et al., 2020): online exponentiated-gradient group weights q with ``step_size``, the
    group adjustment ``adjustment / sqrt(n_g)`` added to each group's loss, and, with ``group_balanced``,
    batches drawn by `GroupBalancedSampler` over ``group_ids``."""

    group_ids: np.ndarray | None = None
    num_groups: int | None = None
    step_size: float = 0.01
    adjustment: float = 0.0
    group_balanced: bool = False
    name = "groupdro"

    def __post_init__(self) -> None:
        if self.group_ids is None:
            raise ValueError("GroupDRO needs group_ids")
        check_group_dro(self.step_size, self.adjustment)

    def bind(self, labels: torch.Tensor, device: torch.device) -> None:
        _per_row("group_ids", self.group_ids, len(labels))
        groups = torch.as_tensor(self.group_ids, dtype=torch.long)
        num_groups = self.num_groups or int(groups.max()) + 1
        self._groups = groups.to(device)
        self.group_sizes = torch.bincount(groups, minlength=num_groups).float().to(device)
        self.group_weights = torch.full((num_groups,), 1.0 / num_groups, device=device)

    @property
    def samples_rows(self) -> bool:
        return self.group_balanced

    def train_sampler(self, seed: int) -> torch.utils.data.Sampler[int] | None:
        return GroupBalancedSampler(self.group_ids, seed=seed) if self.group_balanced else None

    def reduce(self, ce: torch.Tensor, index: torch.Tensor, outputs: Any, labels: torch.Tensor) -> torch.Tensor:
        return self.group_loss(ce, self._groups[index])

    def group_loss(self, ce: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        """Updates q with this batch's group losses, returns the q-weighted sum of them.

        Under several processes the batch is every process's rows: group sizes and losses are summed over
        the processes, every process updates the same q, and each returns its rows' share of the loss
        times the process count (DDP averages the gradients: the sum is the whole batch's gradient)."""
        num_groups = len(self.group_weights)
        processes = process_rank_and_count()[1]
        counts = sum_over_processes(torch.bincount(groups, minlength=num_groups).float())
        sums = torch.zeros(num_groups, device=ce.device).scatter_add(0, groups, ce)
        group_loss = sums / counts.clamp_min(1)  # this process's rows over the whole batch's group sizes
        with torch.no_grad():
            batch_loss = group_loss if processes == 1 else sum_over_processes(sums) / counts.clamp_min(1)
            adjusted = batch_loss + self.adjustment / self.group_sizes.clamp_min(1).sqrt()
            present = counts > 0
            self.group_weights[present] *= torch.exp(self.step_size * adjusted[present])
            self.group_weights /= self.group_weights.sum()
        return (self.group_weights * group_loss).sum() * processes


class _LossEMA:
    """LfF's per-sample loss EMA: the first update takes the loss itself, then alpha-averages."""

    def __init__(self, labels: torch.Tensor, alpha: float) -> None:
        self.labels, self.alpha = labels, alpha
        self.num_classes = int(labels.max()) + 1 if len(labels) else 0
        self.values = torch.zeros(len(labels))
        self.updated = torch.zeros(len(labels))

    def update(self, index: torch.Tensor, loss: torch.Tensor) -> None:
        index, loss = index.cpu(), loss.detach().float().cpu()
        self.values[index] = self.alpha * self.values[index] + (1 - self.alpha * self.updated[index]) * loss
        self.updated[index] = 1.0

    def normalised(self, index: torch.Tensor) -> torch.Tensor:
        """EMA of ``index`` divided by the largest EMA of its class (LfF's class-wise max normalisation)."""
        index = index.cpu()
        class_max = torch.zeros(self.num_classes).scatter_reduce(
            0, self.labels, self.values, "amax", include_self=False
        )
        return self.values[index] / class_max[self.labels[index]].clamp_min(1e-8)


@dataclass
class RelativeDifficultyObjective(Objective, LfFSettings):
    """LfF's weighting (Nam et al., 2020): CE x W with W = L_B / (L_B + L_D) from per-sample loss EMAs
    (``ema_alpha``), each class-max normalised, the bias model's L_B from

    * ``bias_model``: co-trained on the same batches with GCE (``gce_q``; LfF) or CE (``bias_loss="ce"``,
      only on the rows of ``bias_train_mask``: BiasEnsemble), or
    * ``bias_losses``: a frozen model's fixed per-row losses (DDB-II's amplifier).

    W is bounded below by ``weight_floor`` and, with ``weight_normalisation`` ``class`` or ``group`` (over
    ``group_ids``), rescaled so every class or group carries the same mass.
    """

    bias_model: nn.Module | None = None
    bias_losses: np.ndarray | None = None
    bias_loss: str = "gce"
    bias_train_mask: np.ndarray | None = None
    weight_floor: float = 0.0
    weight_normalisation: str = "none"
    group_ids: np.ndarray | None = None
    name = "lff"

    def __post_init__(self) -> None:
        super().__post_init__()  # the settings' own checks (gce_q, ema_alpha; DFA's weights)
        if self.bias_losses is None and self.bias_model is None:
            raise ValueError("LfF-style weights need bias_losses (a frozen bias model) or a bias_model to co-train")
        if self.bias_loss not in ("gce", "ce"):
            raise ValueError(f"bias_loss must be 'gce' or 'ce', got {self.bias_loss!r}")
        if self.bias_losses is not None and not np.isfinite(np.asarray(self.bias_losses, dtype=float)).all():
            raise ValueError("bias_losses must be finite")
        check_unit_interval("weight_floor", self.weight_floor)
        if self.weight_normalisation not in WEIGHT_NORMALISATIONS:
            raise ValueError(
                f"weight_normalisation must be one of {list(WEIGHT_NORMALISATIONS)}, got {self.weight_normalisation!r}"
            )
        if self.weight_normalisation == "group" and self.group_ids is None:
            raise ValueError("weight_normalisation='group' needs group_ids")

    def auxiliaries(self) -> dict[str, nn.Module]:
        return {"bias": self.bias_model} if self.bias_model is not None else {}

    def bind(self, labels: torch.Tensor, device: torch.device) -> None:
        n = len(labels)
        for name in ("bias_losses", "bias_train_mask", "group_ids"):
            _per_row(name, getattr(self, name), n)
        self._train_mask = None
        if self.bias_train_mask is not None:
            self._train_mask = torch.as_tensor(self.bias_train_mask, dtype=torch.bool).to(device)
        self._weight_keys = None
        if self.weight_normalisation != "none":
            keys = labels if self.weight_normalisation == "class" else self.group_ids
            self._weight_keys = torch.as_tensor(np.asarray(keys), dtype=torch.long)
        self.ema_d = _LossEMA(labels, self.ema_alpha)  # the target's loss EMA
        self.ema_b = _LossEMA(labels, self.ema_alpha)  # the bias model's
        if self.bias_losses is not None:  # the EMA of a frozen model's loss is that loss
            self.ema_b.update(torch.arange(n), torch.as_tensor(self.bias_losses, dtype=torch.float32))

    def reduce(
        self, ce: torch.Tensor, index: torch.Tensor, outputs: Any, labels: torch.Tensor
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        bias_logits = outputs.auxiliary_logits.get("bias")
        bias_ce, bias_term = None, None
        if bias_logits is not None:
            per_sample = F.cross_entropy(bias_logits.float(), labels, reduction="none")
            bias_ce = per_sample.detach()
            if self.bias_loss == "gce":  # LfF's code trains on CE * q * p^q (p detached): q times GCE's gradient
                per_sample = self.gce_q * gce_loss(bias_logits, labels, self.gce_q)
            if self._train_mask is None:
                bias_term = per_sample.mean()
            else:  # BiasEnsemble: the bias model learns from the rows its committee found bias-aligned only
                keep = self._train_mask[index].float()
                bias_term = (per_sample * keep).sum() / keep.sum().clamp_min(1)
        loss = (ce * self.weights(ce, bias_ce, index)).mean()
        return loss if bias_term is None else {"target": loss, "bias_model": bias_term}

    def weights(self, ce: torch.Tensor, bias_ce: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor:
        """Updates the loss EMAs with this batch (``bias_ce`` None: frozen bias model), returns the rows' W
        (floored, normalised) on ``ce``'s device. Under several processes the EMAs take every process's
        rows of the step, so each process holds the same EMAs, indexed by training-set row."""
        rows = gather_rows(index)
        if bias_ce is not None:
            self.ema_b.update(rows, gather_rows(bias_ce.detach()))
        self.ema_d.update(rows, gather_rows(ce.detach()))
        weights = self.current_weights(index).to(ce.device).clamp_min(self.weight_floor)
        if self._weight_keys is not None:
            weights = weights * self._mass_factor(index).to(weights.device)
        return weights

    def current_weights(self, index: torch.Tensor) -> torch.Tensor:
        """W = L_B / (L_B + L_D) of rows ``index`` from the EMAs as they stand (no floor, no normalisation)."""
        loss_b, loss_d = self.ema_b.normalised(index), self.ema_d.normalised(index)
        return loss_b / (loss_b + loss_d + 1e-8)

    def _mass_factor(self, index: torch.Tensor) -> torch.Tensor:
        """Per-row factor that gives every class (``class``: mean weight 1 in each class) or every group
        (``group``: equal total weight per present group, mean weight 1 overall) the same mass, from the
        current weights of all rows (both loss EMAs, floor applied)."""
        keys = self._weight_keys
        weights = self.current_weights(torch.arange(len(keys))).clamp_min(self.weight_floor)
        mass = torch.zeros(int(keys.max()) + 1).scatter_add(0, keys, weights).clamp_min(1e-12)
        counts = torch.bincount(keys).float()
        if self.weight_normalisation == "class":
            factor = counts / mass
        else:
            factor = len(keys) / (int((counts > 0).sum()) * mass)
        return factor[keys[index.cpu()]]


@dataclass
class DisEntObjective(RelativeDifficultyObjective, DisEntSettings):
    """DFA's loss (Lee et al., 2021, ``train_ours``) on a disentangled target: W-weighted CE for the intrinsic
    head, ``lambda_dis_align`` x GCE for the bias head, and from ``swap_start`` (a fraction of the run) the
    same on bias features permuted across the batch, weighted by ``lambda_swap`` and ``lambda_swap_align``
    (the bias head then predicts the label its swapped-in bias features came with)."""

    name = "disent"

    def __post_init__(self) -> None:
        DisEntSettings.__post_init__(self)  # DFA needs no bias_model or bias_losses: its bias head is the target's

    def check_target(self, target: PreTrainedModel) -> None:
        if not getattr(target.config, "disentangled", False):
            raise ValueError("the 'disent' objective needs a disentangled target (see DisEnt)")

    def bind(self, labels: torch.Tensor, device: torch.device) -> None:
        self._train_mask = self._weight_keys = None
        self.ema_d = _LossEMA(labels, self.ema_alpha)
        self.ema_b = _LossEMA(labels, self.ema_alpha)

    def loss(
        self,
        trainer: Trainer,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        labels: torch.Tensor,
        index: torch.Tensor,
    ) -> tuple[torch.Tensor, Any, dict[str, torch.Tensor]]:
        swap = trainer.state.global_step >= self.swap_start * trainer.state.max_steps
        if swap:  # one permutation per step, from (seed, step): the same on resume and on every process
            generator = torch.Generator().manual_seed(trainer.args.seed * 1_000_003 + trainer.state.global_step)
            inputs["permutation"] = torch.randperm(len(labels), generator=generator).to(labels.device)
        result = model(**inputs)
        target = result.target_output
        ce = F.cross_entropy(target.logits.float(), labels, reduction="none")
        bias_ce = F.cross_entropy(target.bias_logits.float(), labels, reduction="none")
        weights = self.weights(ce.detach(), bias_ce.detach(), index)
        q = self.gce_q  # q * GCE: LfF's and DFA's CE * q * p^q
        terms = {
            "target": (ce * weights).mean(),
            "bias_model": self.lambda_dis_align * q * gce_loss(target.bias_logits, labels, q).mean(),
        }
        if swap:
            swap_ce = F.cross_entropy(target.swap_logits.float(), labels, reduction="none")
            swap_gce = q * gce_loss(target.swap_bias_logits, labels[inputs["permutation"]], q)
            terms["swap"] = self.lambda_swap * ((swap_ce * weights).mean() + self.lambda_swap_align * swap_gce.mean())
        return sum(terms.values()), result, terms
