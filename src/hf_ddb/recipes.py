"""Debiasing methods: infer bias groups or weights, then train robustly.

One seam separates the two halves. A `Recipe` (one class per method, carrying its name, display name and
whether it uses bias labels or the amplifier) looks at the training data (and, for DDB, the bias amplifier's
signals) and returns a `BiasInference` whose `Objective` (`hf_ddb.objectives`: weighted ERM, GroupDRO,
LfF-style relative-difficulty weights, DFA's loss) `DebiasTrainer` (a `transformers.Trainer`) minimises.
Co-trained auxiliary models (LfF's bias model) belong to the objective and live inside the one module the
Trainer optimises (`DebiasModel`). The methods:

* `ERM` - plain cross-entropy.
* `JTT` (Liu et al., 2021) - an ERM identification model, its error set upweighted by ``upweight``.
* `LfF` (Nam et al., 2020) - a GCE bias model co-trained on the real data; per-sample loss EMA (alpha 0.7)
  and class-wise max normalisation as in the original code; W(x) = L_B / (L_B + L_D).
* `DisEnt` (DFA; Lee et al., 2021) - intrinsic and bias encoders in one disentangled target, LfF's weights
  and feature swapping across the batch.
* `BiasEnsemble` (Lee et al., 2023) - a committee of GCE bias models flags the bias-aligned rows; LfF then
  runs with a fresh bias model trained (CE) on those rows only.
* `GroupDROOracle` (Sagawa et al., 2020) - GroupDRO with the **true** (class, bias) groups, group-balanced
  batches, step size and adjustment tuned on valid worst-group accuracy. It uses bias labels: an oracle upper
  bound, not a fair competitor.
* `DDBI` (DDB Recipe I) - pseudo groups (class x the amplifier's inferred bias) from the bias
  amplifier, then GroupDRO with group-balanced batches, tuned on valid's pseudo groups.
* `DDBII` (DDB Recipe II) - weights from the frozen amplifier (cell balancing, confidence, or LfF's
  ratio with the amplifier giving L_B).

Model selection (`selection=`) never looks at ``test``: ``valid_accuracy`` (default), ``last``,
``valid_worst_pseudo_group`` / ``valid_mean_pseudo_group`` (worst or mean accuracy over the amplifier's pseudo
groups on ``valid``: DDB recipes, or any recipe given the amplifier's flags) or
``oracle_valid_worst_group`` / ``oracle_valid_unbiased`` (worst or mean accuracy over the true groups on
``valid``; they use bias labels, named as oracles).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .checks import LIMITS, check_choice, check_integer, check_number
from .pseudo_labels import (
    PSEUDO_GROUPINGS,
    check_grouping,
    check_rule,
    pseudo_bias,
    pseudo_bias_labels,
    pseudo_bias_width,
)
from .settings import (
    AmplifierConfig,
    DisEntSettings,
    EMASettings,
    LfFSettings,
    TrainingConfig,
    check_group_dro,
    check_unit_interval,
    settings_of,
)

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel

    from .objectives import DisEntObjective, Objective

logger = logging.getLogger(__name__)

__all__ = [
    "DDBIIPaper",
    "DDBIIReal",
    "DDBIPaper",
    "DDBIReal",
    "FGCCDB",
    "DDB_II_WEIGHTINGS",
    "RECIPES",
    "BiasEnsemble",
    "BiasInference",
    "DDBI",
    "DDBII",
    "DisEnt",
    "ERM",
    "GroupDROOracle",
    "JTT",
    "LfF",
    "Recipe",
    "RecipeContext",
    "committee_aligned",
    "TRUST_CODE_ENV",
    "code_trusted",
    "import_recipe",
    "register_recipe",
    "resolve_recipe",
    "train_real_bias_model",
]

ModelFactory = Callable[[], "PreTrainedModel"]


def _objectives() -> Any:
    """`hf_ddb.objectives`, imported when a recipe first builds an objective (it imports torch; declaring and
    checking a recipe's options does not)."""
    from . import objectives

    return objectives


@dataclass
class BiasInference:
    """What a recipe learned about the bias: the objective to train with, and what selection and reports use."""

    objective: Objective = field(default_factory=lambda: _objectives().ERMObjective())
    make_target: ModelFactory | None = None  # a target of another shape than make_model's (DFA's two encoders)
    valid_pseudo_bias: np.ndarray | None = None  # pseudo bias per valid row (0 = aligned), for model selection
    conflict_scores: np.ndarray | None = None  # per train row, how bias-conflicting the recipe judges it (reports)
    conflict_flags: np.ndarray | None = None  # per train row, whether the recipe flags it bias-conflicting (reports)
    search: Mapping[str, Sequence[Any]] = field(default_factory=dict)  # objective fields to tune: name -> values
    tune_on: str | None = None  # the selection score that ranks the `search` candidates on valid
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class RecipeContext:
    """Everything a `Recipe` may read to infer the bias, passed explicitly (nothing is injected into a recipe's
    options): the ``train`` and ``valid`` splits (never ``test``), a factory of fresh target models, the
    training settings and, for recipes that read the bias amplifier (``needs_amplifier``), the amplifier and
    its `bias_signals` per split (a run scores them once in its amplifier stage; otherwise `signals` computes
    them from ``amplifier``) with the pseudo-label ``rule`` (and its ``rule_options``) the run flags rows by."""

    train: Dataset
    valid: Dataset | None = None
    make_model: ModelFactory | None = None
    training: TrainingConfig = field(default_factory=TrainingConfig)
    amplifier: PreTrainedModel | None = None
    amplifier_signals: Mapping[str, Mapping[str, np.ndarray]] | None = None
    rule: str = "misclassified"
    rule_options: Mapping[str, Any] = field(default_factory=dict)
    # for recipes that train a bias model of their own on the real data (``trains_bias_model``): the run's
    # amplifier settings and resolution, so that "the amplifier, trained on real images" is a like-for-like row
    bias_model: AmplifierConfig = field(default_factory=AmplifierConfig)
    bias_model_size: int | None = None  # default: the training images' own size

    def __post_init__(self) -> None:
        check_rule(self.rule, self.rule_options)

    def signals(self, split: str) -> Mapping[str, np.ndarray]:
        """The amplifier's signals on ``split`` (``"train"`` or ``"valid"``), stored or computed."""
        dataset = self.train if split == "train" else self.valid
        if dataset is None:
            raise ValueError(f"this method reads the {split!r} split: give the RecipeContext a valid split")
        if self.amplifier_signals is not None and split in self.amplifier_signals:
            signals = self.amplifier_signals[split]
            if len(signals["loss"]) != len(dataset):
                rows = len(signals["loss"])
                raise ValueError(f"amplifier_signals[{split!r}] has {rows} rows, the {split} split {len(dataset)}")
            return signals
        if self.amplifier is None:
            raise ValueError("this method needs the bias amplifier: give the context an amplifier or its signals")
        from .amplifier import bias_signals

        return bias_signals(self.amplifier, dataset)

    def new_model(self) -> PreTrainedModel:
        """A freshly initialised target model."""
        if self.make_model is None:
            raise ValueError("this method trains models of its own: give the context a make_model factory")
        return self.make_model()


# ------------------------------------------------------------------------------------------------ recipes
class Recipe:
    """A debiasing method: infers from the training data which `Objective` to train with (a `BiasInference`).

    Subclasses override `infer` and set the method's metadata, the one place each method is named:
    ``name`` (its key in configs and run folders), ``display_name`` and ``summary`` (reports and cards),
    ``uses_bias_labels`` (an oracle), ``needs_amplifier`` (DDB: steps A and B run first, and the
    `RecipeContext` holds the amplifier and its signals) and ``trains_bias_model`` (it trains a bias model of
    the amplifier's settings on the real data: `train_real_bias_model`), and ``references``, the papers whose
    ideas it reuses (keys of `hf_ddb.hub.REFERENCE_BIBTEX`: its card cites them). Their dataclass fields are
    the method's options (``method_options`` in a config), checked when it is built.
    """

    name = "recipe"
    display_name = "recipe"
    summary = ""
    uses_bias_labels = False
    needs_amplifier = False
    trains_bias_model = False
    references = ()

    def infer(self, context: RecipeContext) -> BiasInference:
        """The `BiasInference` (objective, tuning grid, selection groups) to train with; ERM by default."""
        return BiasInference()


class ERM(Recipe):
    name, display_name = "erm", "ERM"
    summary = "Plain empirical risk minimisation: the biased baseline."


@dataclass
class JTT(Recipe):
    """Just Train Twice: ERM for ``identification_epochs``, then upweight its training errors by ``upweight``."""

    identification_epochs: float = 1.0
    upweight: float = 20.0
    name, display_name = "jtt", "JTT"
    summary = "Just Train Twice: an ERM model's training errors are upweighted and the model retrained."

    def __post_init__(self) -> None:
        check_number("upweight", self.upweight, low=0.0, low_open=True)
        check_number("identification_epochs", self.identification_epochs, low=0.0, low_open=True, high=LIMITS["epochs"])

    def infer(self, context: RecipeContext) -> BiasInference:
        from .inputs import predict_logits
        from .training import train_erm

        train, identifier = context.train, context.new_model()
        config = TrainingConfig(**{**context.training.to_dict(), "epochs": self.identification_epochs})
        with tempfile.TemporaryDirectory() as scratch:
            args = config.to_training_arguments(scratch, disable_tqdm=True, logging_strategy="no")
            train_erm(identifier, train, args, loading=config.image_loading())
        errors = predict_logits(identifier, train).argmax(1) != np.asarray(train["label"])
        weights = np.where(errors, self.upweight, 1.0)
        return BiasInference(
            _objectives().ERMObjective(sample_weights=weights), info={"error_set_size": int(errors.sum())}
        )


@dataclass
class LfF(Recipe, LfFSettings):
    """Learning from Failure: a GCE bias model of the same architecture, co-trained on the real data
    (options ``gce_q`` and ``ema_alpha``: `LfFSettings`)."""

    name, display_name = "lff", "LfF"
    references = ("lff",)
    summary = "Learning from Failure: a GCE bias model co-trained on the real data reweights samples."

    def infer(self, context: RecipeContext) -> BiasInference:
        bias_model = _independent_init(context.new_model(), context.training.seed + 1)
        objective = _objectives().RelativeDifficultyObjective(bias_model=bias_model, **settings_of(self, LfFSettings))
        return BiasInference(objective)


def _independent_init(model: PreTrainedModel, seed: int) -> PreTrainedModel:
    """Re-draws the parameters of a fresh ``make_model()`` from ``seed``: LfF and BiasEnsemble initialise their
    bias models independently of the target, and ``make_model()`` repeats the target's initial weights.

    A model loaded from pretrained weights keeps them and only its classification head is re-drawn: LfF's code
    builds both models alike, so with a pretrained target the bias model starts from the same weights."""
    import torch

    pretrained = bool(getattr(model.config, "_name_or_path", "")) and hasattr(model, "timm_model")
    modules = model.timm_model.get_classifier().modules() if pretrained else model.modules()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for module in modules:
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    return model


def committee_aligned(prob_true: np.ndarray, threshold: float = 0.99, agreement: int = 3) -> np.ndarray:
    """BiasEnsemble's detection: a row is bias-aligned when at least ``agreement`` committee members give its
    label a probability above ``threshold``. ``prob_true`` is members x rows; everything else is conflicting."""
    return (np.asarray(prob_true) > threshold).sum(axis=0) >= agreement


@dataclass
class BiasEnsemble(Recipe, LfFSettings):
    """BiasEnsemble (Lee et al., 2023) with LfF: a committee of GCE bias models finds the bias-aligned rows,
    then LfF runs with a fresh bias model trained with CE on those rows only.

    As in the authors' code (``pretrain_b_ensemble_best``, ``train_lff_be``): ``num_models`` members, each
    independently initialised and trained with GCE for ``committee_steps`` steps at
    ``committee_learning_rate``, early-stopped on valid accuracy (target labels only) checked every
    ``check_every`` steps; a row is aligned when at least ``agreement`` members give its label a probability
    above ``threshold``. The committee is then discarded. The target keeps LfF's weights on every row.
    """

    num_models: int = 5
    committee_steps: int = 1000
    committee_learning_rate: float = 0.01
    check_every: int = 500
    threshold: float = 0.99
    agreement: int = 3
    name, display_name = "bias_ensemble", "BiasEnsemble"
    LINKED = (("num_models", "agreement"),)  # checked together
    summary = (
        "BiasEnsemble + LfF: a committee of GCE models flags bias-aligned samples; LfF's bias model learns only them."
    )

    def __post_init__(self) -> None:
        super().__post_init__()  # gce_q, ema_alpha
        check_integer("num_models", self.num_models, low=1, high=LIMITS["models"])
        check_integer("agreement", self.agreement, low=1, high=self.num_models)
        check_integer("committee_steps", self.committee_steps, low=1, high=LIMITS["steps"])
        check_integer("check_every", self.check_every, low=1, high=LIMITS["steps"])
        check_number("committee_learning_rate", self.committee_learning_rate, low=0.0, low_open=True)
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")

    def infer(self, context: RecipeContext) -> BiasInference:
        import torch

        from .inputs import predict_logits
        from .trainer import DebiasTrainer, SelectBest, selection_score

        objectives = _objectives()
        train, training = context.train, context.training
        labels = np.asarray(train["label"])
        accuracy = selection_score("valid_accuracy", context.valid)
        prob_true = []
        for member_index in range(self.num_models):
            seed = training.seed + 1 + member_index
            member = _independent_init(context.new_model(), seed)
            config = TrainingConfig(
                **{**training.to_dict(), "learning_rate": self.committee_learning_rate, "seed": seed}
            )
            keeper = SelectBest(accuracy, member, every_steps=self.check_every)
            with tempfile.TemporaryDirectory() as scratch:
                args = config.to_training_arguments(
                    scratch, max_steps=self.committee_steps, disable_tqdm=True, logging_strategy="no"
                )
                objective = objectives.ERMObjective(loss_type="gce", gce_q=self.gce_q)
                DebiasTrainer(
                    member, args, train, objective, loading=config.image_loading(), callbacks=[keeper]
                ).train()
            member.load_state_dict(keeper.best_state)
            probabilities = torch.softmax(torch.from_numpy(predict_logits(member, train)), dim=1).numpy()
            prob_true.append(probabilities[np.arange(len(labels)), labels])
        prob_true = np.stack(prob_true)
        aligned = committee_aligned(prob_true, self.threshold, self.agreement)
        objective = objectives.RelativeDifficultyObjective(
            bias_model=_independent_init(context.new_model(), training.seed + 1),
            bias_loss="ce",
            bias_train_mask=aligned,
            **settings_of(self, LfFSettings),
        )
        return BiasInference(
            objective,
            conflict_scores=1.0 - prob_true.mean(axis=0),
            conflict_flags=~aligned,
            info={"pseudo_conflicting": int((~aligned).sum())},
        )


@dataclass
class DisEnt(Recipe, DisEntSettings):
    """DFA / DisEnt (Lee et al., 2021): intrinsic and bias encoders, feature swapping, LfF's weights.

    The target becomes a disentangled MLP (`hf_ddb.models.MLPForImageClassification` with
    ``disentangled=True``; encoder ``hidden_sizes`` default to DFA's Colored-MNIST 100-100-16). Its loss is
    DFA's ``train_ours``: CE x W for the intrinsic head, ``lambda_dis_align`` x GCE for the bias head, and
    from ``swap_start`` (a fraction of the run: DFA swaps after step 10,000 of 50,000) the same on bias
    features permuted across the batch, weighted by ``lambda_swap`` and ``lambda_swap_align``. Defaults are
    DFA's Colored-MNIST values (``scripts/run_cmnist_ours.sh``: 10 / 1 / 10). MLP targets only.
    """

    hidden_sizes: Sequence[int] | None = (100, 100, 16)
    name, display_name = "disent", "DFA (DisEnt)"
    summary = (
        "Learning Debiased Representation via Disentangled Feature Augmentation: intrinsic and bias encoders, "
        "LfF's weights and bias features swapped across the batch."
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden_sizes is not None:
            if isinstance(self.hidden_sizes, str | bytes) or not isinstance(self.hidden_sizes, Sequence):
                raise ValueError(f"hidden_sizes must be a list of layer widths, got {self.hidden_sizes!r}")
            for index, width in enumerate(self.hidden_sizes):
                check_integer(f"hidden_sizes[{index}]", width, low=1, high=LIMITS["channels"])

    def objective(self) -> DisEntObjective:
        return _objectives().DisEntObjective(**settings_of(self, DisEntSettings))

    def infer(self, context: RecipeContext) -> BiasInference:
        seed = context.training.seed
        return BiasInference(self.objective(), make_target=lambda: self.disentangled(context.new_model(), seed))

    def disentangled(self, model: PreTrainedModel, seed: int) -> PreTrainedModel:
        """``model``'s MLP as DFA's intrinsic + bias pair (same labels, size and normalisation), seeded."""
        import torch

        from .models import MLPConfig, MLPForImageClassification

        if not isinstance(model.config, MLPConfig):
            raise ValueError(f"DisEnt needs the 'mlp' classifier, not a {type(model.config).__name__} model")
        config = MLPConfig.from_dict({**model.config.to_dict(), "disentangled": True})
        if self.hidden_sizes is not None:
            config.hidden_sizes = list(self.hidden_sizes)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return MLPForImageClassification(config)


def _check_group_dro(step_sizes: Sequence[float], adjustments: Sequence[float]) -> None:
    if not step_sizes or not adjustments:
        raise ValueError("step_sizes and adjustments need at least one value each")
    for step_size in step_sizes:
        for adjustment in adjustments:
            check_group_dro(step_size, adjustment)


@dataclass
class GroupDROOracle(Recipe):
    """GroupDRO on the TRUE (class, bias) groups. Uses bias labels: an oracle, not a fair competitor.

    As in Sagawa et al., batches are group-balanced (``group_balanced``) and the step size and the group
    adjustment C are tuned: every pair in ``step_sizes`` x ``adjustments`` is trained and the one with the
    best unbiased (mean-group) accuracy on ``valid`` is kept (true groups: bias labels on valid too). Not
    worst-group accuracy, as Sagawa et al. did: a valid split drawn at the training ratio has about one
    sample per rare group, and every candidate scored 0 on Colored MNIST at 1% (README).
    """

    step_sizes: Sequence[float] = (0.01, 0.1)
    adjustments: Sequence[float] = (0.0, 4.0)
    group_balanced: bool = True
    name, display_name = "groupdro_oracle", "GroupDRO (oracle)"
    summary = (
        "GroupDRO on the TRUE (class, bias) groups with group-balanced batches, tuned on valid mean-group "
        "accuracy: it uses bias labels in training and selection, an upper reference."
    )
    uses_bias_labels = True

    def __post_init__(self) -> None:
        _check_group_dro(self.step_sizes, self.adjustments)

    def infer(self, context: RecipeContext) -> BiasInference:
        train = context.train
        num_bias = train.features["bias_label"].num_classes
        groups = np.asarray(train["label"]) * num_bias + np.asarray(train["bias_label"])
        num_groups = train.features["label"].num_classes * num_bias
        objective = _objectives().GroupDROObjective(
            group_ids=groups,
            num_groups=num_groups,
            step_size=self.step_sizes[0],
            adjustment=self.adjustments[0],
            group_balanced=self.group_balanced,
        )
        return BiasInference(
            objective,
            search={"step_size": list(self.step_sizes), "adjustment": list(self.adjustments)},
            tune_on="oracle_valid_unbiased",
        )


@dataclass
class _DDB(Recipe):
    """What DDB's recipes share: the amplifier's pseudo groups (`hf_ddb.amplifier.pseudo_bias`) from the
    context's signals and rule. ``groups``: ``inferred_bias`` (class x the amplifier's predicted class, the
    default) or ``flag`` (class x flagged by the rule)."""

    groups: str = "inferred_bias"
    needs_amplifier = True

    def __post_init__(self) -> None:
        check_choice("groups", self.groups, PSEUDO_GROUPINGS)

    def _pseudo_bias(self, context: RecipeContext, split: str) -> tuple[Mapping[str, np.ndarray], np.ndarray, int]:
        """The split's amplifier signals, each row's pseudo bias value (0 = aligned) and the values' range."""
        check_grouping(self.groups, context.rule)
        dataset = context.train if split == "train" else context.valid
        signals = context.signals(split)
        flags = pseudo_bias_labels(dict(signals), context.rule, **context.rule_options)
        width = pseudo_bias_width(self.groups, dataset.features["label"].num_classes)
        return signals, pseudo_bias(signals, dataset["label"], flags, self.groups, width), width

    def _pseudo_groups(self, context: RecipeContext) -> _PseudoGroups:
        signals, bias, width = self._pseudo_bias(context, "train")
        _, valid_bias, _ = self._pseudo_bias(context, "valid")
        labels = np.asarray(context.train["label"])
        return _PseudoGroups(signals, labels, bias, valid_bias, width, self.groups)


@dataclass
class _PseudoGroups:
    """The amplifier's view of the training set: its signals, each row's pseudo bias value (0 = aligned) and
    the same on valid; group id = label * width + value."""

    signals: Mapping[str, np.ndarray]
    labels: np.ndarray
    bias: np.ndarray
    valid_bias: np.ndarray
    width: int
    grouping: str

    @property
    def inferred_bias(self) -> np.ndarray:
        """Each row's inferred bias as an absolute value: the amplifier's predicted class. From flags alone, an
        unflagged row's bias is its class's and a flagged one's is "another" (one shared value), which for two
        classes is the other class: the same values as the predicted class."""
        num_classes = int(self.labels.max()) + 1
        if self.grouping == "flag" and num_classes > 2:
            return np.where(self.bias == 0, self.labels, num_classes)
        return (self.labels + self.bias) % max(self.width, num_classes)

    @property
    def ids(self) -> np.ndarray:
        return self.labels * self.width + self.bias

    @property
    def num_groups(self) -> int:
        return (int(self.labels.max()) + 1) * self.width

    @property
    def flagged(self) -> np.ndarray:
        return self.bias != 0

    def info(self) -> dict[str, Any]:
        return {"pseudo_conflicting": int(self.flagged.sum()), "pseudo_groups": int(len(np.unique(self.ids)))}


@dataclass
class DDBI(_DDB):
    """DDB Recipe I: the amplifier's pseudo groups, then GroupDRO with the oracle's machinery.

    Batches are balanced over the pseudo groups (``group_balanced``) and GroupDRO's step size and group
    adjustment C are tuned over ``step_sizes`` x ``adjustments`` on valid's mean pseudo-group accuracy (the
    amplifier's groups on valid: no bias labels). With the default ``groups="inferred_bias"`` the groups are
    (class, the amplifier's predicted class): a 10-valued bias gives each conflicting colour of a class its
    own group, where (class, flagged) would pool nine colours and the amplifier's false flags in one.
    """

    group_balanced: bool = True
    step_sizes: Sequence[float] = (0.01,)
    adjustments: Sequence[float] = (0.0, 4.0)
    name, display_name = "ddb_i", "DDB-I"
    references = ("fg_ccdb",)  # (class, predicted class) groups: FG-CCDB's confusion cells
    summary = (
        "Diffusing DeBias Recipe I, two-step: the bias amplifier's pseudo groups (class x inferred bias), "
        "group-balanced batches and GroupDRO tuned on valid's pseudo groups."
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_group_dro(self.step_sizes, self.adjustments)

    def infer(self, context: RecipeContext) -> BiasInference:
        groups = self._pseudo_groups(context)
        objective = _objectives().GroupDROObjective(
            group_ids=groups.ids,
            num_groups=groups.num_groups,
            step_size=self.step_sizes[0],
            adjustment=self.adjustments[0],
            group_balanced=self.group_balanced,
        )
        return BiasInference(
            objective,
            valid_pseudo_bias=groups.valid_bias,
            search={"step_size": list(self.step_sizes), "adjustment": list(self.adjustments)},
            tune_on="valid_mean_pseudo_group",
            info=groups.info(),
        )


DDB_II_WEIGHTINGS = ("lff", "floor", "class", "group", "group_floor", "cell", "confidence")
_STATIC_WEIGHTINGS = ("cell", "confidence")  # fixed per-row weights from the frozen amplifier (weighted ERM)


@dataclass
class DDBII(_DDB, EMASettings):
    """DDB Recipe II: the frozen amplifier's signals reweight the training rows.

    ``weighting`` chooses the weights (default ``cell``: the best on colored_mnist at every ratio and on
    background_mnist, README "DDB's defaults"):

    * ``lff`` - LfF's W = L_B / (L_B + L_D) with the amplifier's loss as L_B, as published, bounded below by
      ``weight_floor`` (default 0). A confident amplifier gives aligned rows W ~ 1e-6, so the target trains on
      the flagged rows alone and gives up aligned accuracy.
    * ``floor`` - ``lff`` with a data-driven floor: W >= the share of training rows the amplifier flags.
    * ``class`` - ``lff`` rescaled to mean 1 within each class.
    * ``group`` - ``lff`` rescaled so every pseudo group carries the same total weight.
    * ``group_floor`` - ``floor``, then ``group``.
    * ``cell`` - fixed weights that make the inferred bias independent of the class (as CCDB / FG-CCDB do):
      each (class, inferred bias) cell weighs n_class x p(inferred bias), so p(bias | class) matches p(bias);
      the aligned cell keeps its share p(bias) of its class.
    * ``confidence`` - fixed weights exp(-gamma * p_amplifier(label | x)) (AFR, Qiu et al. 2023), each class
      rescaled to mean 1; gamma is chosen so that the flagged rows carry as much weight as the rest (no bias
      labels), and ``weight_floor`` bounds a row's weight relative to its class mean.
    """

    weighting: str = "cell"
    weight_floor: float = 0.0
    name, display_name = "ddb_ii", "DDB-II"
    references = ("fg_ccdb", "ccdb")  # the default cell weights are (FG-)CCDB's balancing
    summary = "Diffusing DeBias Recipe II, end to end: the frozen bias amplifier's signals reweight the samples."

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.weighting not in DDB_II_WEIGHTINGS:
            raise ValueError(f"weighting must be one of {list(DDB_II_WEIGHTINGS)}, got {self.weighting!r}")
        check_unit_interval("weight_floor", self.weight_floor)
        EMASettings.__post_init__(self)

    def infer(self, context: RecipeContext) -> BiasInference:
        groups = self._pseudo_groups(context)
        info = {**groups.info(), "weighting": self.weighting}
        if self.weighting in _STATIC_WEIGHTINGS:
            if self.weighting == "cell":
                weights = cell_weights(groups.labels, groups.inferred_bias)
            else:
                weights, gamma = confidence_weights(groups.signals["prob_true"], groups.labels, groups.flagged)
                info["gamma"] = gamma
            weights = np.maximum(weights, self.weight_floor)
            info.update(weight_floor=self.weight_floor, flagged_weight_share=_share(weights, groups.flagged))
            objective = _objectives().ERMObjective(sample_weights=weights)
            return BiasInference(objective, valid_pseudo_bias=groups.valid_bias, info=info)
        flagged_share = float(groups.flagged.mean())
        floored = self.weighting in ("floor", "group_floor")
        floor = max(self.weight_floor, flagged_share) if floored else self.weight_floor
        normalisation = {"class": "class", "group": "group", "group_floor": "group"}.get(self.weighting, "none")
        objective = _objectives().RelativeDifficultyObjective(
            bias_losses=groups.signals["loss"],
            ema_alpha=self.ema_alpha,
            weight_floor=floor,
            weight_normalisation=normalisation,
            group_ids=groups.ids if normalisation == "group" else None,
        )
        return BiasInference(objective, valid_pseudo_bias=groups.valid_bias, info={**info, "weight_floor": floor})


def _share(weights: np.ndarray, flagged: np.ndarray) -> float:
    return float(weights[flagged].sum() / weights.sum()) if weights.sum() > 0 else 0.0


def cell_weights(labels: np.ndarray, inferred_bias: np.ndarray) -> np.ndarray:
    """Per-row weights (mean 1) under which the inferred bias is independent of the class: row i of cell
    (y, b) weighs p(b) / p(b | y), so cell (y, b) carries n_y * p(b) (CCDB's balancing with an amplifier's
    predicted class as b). No bias labels."""
    labels, inferred_bias = np.asarray(labels, dtype=np.int64), np.asarray(inferred_bias, dtype=np.int64)
    width = int(max(labels.max(), inferred_bias.max())) + 1
    cells = labels * width + inferred_bias
    cell_count = np.bincount(cells, minlength=width * width)[cells]
    class_count = np.bincount(labels, minlength=width)[labels]
    bias_share = np.bincount(inferred_bias, minlength=width)[inferred_bias] / len(labels)
    weights = class_count * bias_share / cell_count
    return weights / weights.mean()


def confidence_weights(prob_true: np.ndarray, labels: np.ndarray, flagged: np.ndarray) -> tuple[np.ndarray, float]:
    """AFR's weights exp(-gamma * p(label | x)) from a frozen biased model, rescaled to mean 1 per class, with
    gamma chosen (bisection) so that the ``flagged`` rows carry half of the total weight; returns the
    weights and gamma. Without flagged rows gamma is 0 (plain ERM)."""
    prob_true, labels = np.asarray(prob_true, dtype=float), np.asarray(labels, dtype=np.int64)
    flagged = np.asarray(flagged, dtype=bool)

    class_min = np.full(int(labels.max()) + 1, np.inf)
    np.minimum.at(class_min, labels, prob_true)

    def weights_at(gamma: float) -> np.ndarray:
        raw = np.exp(-gamma * (prob_true - class_min[labels]))  # each class's least confident row weighs 1
        class_mean = np.bincount(labels, weights=raw) / np.maximum(np.bincount(labels), 1)
        return raw / class_mean[labels]

    if not flagged.any() or flagged.all() or _share(weights_at(0.0), flagged) >= 0.5:
        return weights_at(0.0), 0.0
    low, high = 0.0, 1.0
    while _share(weights_at(high), flagged) < 0.5 and high < 1e3:
        low, high = high, high * 2
    for _ in range(50):
        middle = (low + high) / 2
        low, high = (middle, high) if _share(weights_at(middle), flagged) < 0.5 else (low, middle)
    return weights_at(high), high


# ------------------------------------------------------------------ the paper's recipes, as published
@dataclass
class DDBIPaper(DDBI):
    """DDB Recipe I as the paper publishes it: GroupDRO on (class, flagged by the amplifier) pseudo groups."""

    groups: str = "flag"
    name, display_name = "ddb_i_paper", "DDB-I (paper)"
    references = ()
    summary = "Diffusing DeBias Recipe I as published: GroupDRO on (class, flagged by the amplifier) groups."


@dataclass
class DDBIIPaper(DDBII):
    """DDB Recipe II as the paper publishes it: LfF's W = L_B / (L_B + L_D) with the frozen amplifier's loss
    as L_B, groups (class, flagged) for selection."""

    groups: str = "flag"
    weighting: str = "lff"
    name, display_name = "ddb_ii_paper", "DDB-II (paper)"
    references = ("lff",)
    summary = "Diffusing DeBias Recipe II as published: LfF's weights with the frozen amplifier as bias model."


# ------------------------------------------- competitors: a bias model trained on the real data, no diffusion
def train_real_bias_model(
    context: RecipeContext, rows: np.ndarray | None = None, seed_offset: int = 0
) -> PreTrainedModel:
    """A bias model of the run's amplifier settings trained on the REAL training split (the boolean ``rows`` of
    it, default all) at the amplifier's resolution (`hf_ddb.amplifier.train_on_real_data`)."""
    from .amplifier import train_on_real_data

    train = context.train if rows is None else context.train.select(np.flatnonzero(rows))
    return train_on_real_data(
        context.bias_model, train, image_size=context.bias_model_size, runtime=context.training, seed_offset=seed_offset
    )


class _OnRealBiasModel:
    """Mixin for a DDB recipe run on a real-data bias model instead of the amplifier (no diffusion): the model,
    of the amplifier's settings, is trained on the real training split (`train_real_bias_model`), its
    `bias_signals` replace the amplifier's, and its loss and flags on train are the inference's conflict scores
    (reports)."""

    needs_amplifier = False
    trains_bias_model = True

    def infer(self, context: RecipeContext) -> BiasInference:
        from .amplifier import bias_signals

        model = train_real_bias_model(context)
        signals = {split: bias_signals(model, getattr(context, split)) for split in ("train", "valid")}
        inference = super().infer(replace(context, amplifier_signals=signals, amplifier=None))
        inference.conflict_scores = signals["train"]["loss"]
        inference.conflict_flags = ~np.asarray(signals["train"]["correct"], dtype=bool)
        return inference


@dataclass
class DDBIReal(_OnRealBiasModel, DDBI):
    """DDB-I's recipe with the amplifier replaced by the same model trained on the real training split (an
    ablation: what the diffusion stage adds). No diffusion, no synthetic images."""

    name, display_name = "ddb_i_real", "DDB-I, real-data bias model"
    summary = "DDB-I's recipe on a bias model of the amplifier's settings trained on the real data (no diffusion)."


@dataclass
class DDBIIReal(_OnRealBiasModel, DDBII):
    """DDB-II's recipe (cell weights) with the amplifier replaced by the same model trained on the real
    training split: a GCE bias model's predicted class as the bias, as in CCDB / FG-CCDB's cell balancing."""

    name, display_name = "ddb_ii_real", "DDB-II, real-data bias model"
    summary = "DDB-II's recipe on a bias model of the amplifier's settings trained on the real data (no diffusion)."


@dataclass
class FGCCDB(Recipe):
    """FG-CCDB (Zhao & Zhang, ICLR 2026; CCDB, Zhao et al. 2025): a deliberately biased model's hard confusion
    matrix on the real training set, then confusion-cell weights under which p(predicted | class) matches
    p(predicted).

    The bias model comes from multi-stage data-selective retraining (MST): stage 1 trains a model of the
    amplifier's settings on every training row; each of the ``stages - 1`` further stages trains a fresh one on
    only the rows the previous stage classified correctly (the bias-aligned ones), so the last model has seen
    few bias-conflicting rows and cannot have memorised them. Its predicted class is each row's bias value;
    the weights are `cell_weights`. Written from the papers' description (their code was not available): the
    stage count and per-stage training are the amplifier's settings, not the authors' schedule.
    """

    stages: int = 2
    name, display_name = "fg_ccdb", "FG-CCDB"
    references = ("fg_ccdb", "ccdb")
    summary = (
        "Fine-grained class-conditional distribution balancing: a real-data bias model retrained in stages on the "
        "rows it gets right, its confusion cells reweighted so the predicted bias is independent of the class."
    )
    trains_bias_model = True

    def __post_init__(self) -> None:
        check_integer("stages", self.stages, low=1, high=LIMITS["models"])

    def infer(self, context: RecipeContext) -> BiasInference:
        from .amplifier import bias_signals

        labels = np.asarray(context.train["label"])
        selected, kept = None, []  # kept: per stage, the rows its model gets right (the next stage's data)
        for stage in range(self.stages):
            model = train_real_bias_model(context, rows=selected, seed_offset=stage)
            train_signals = bias_signals(model, context.train)
            selected = np.asarray(train_signals["correct"], dtype=bool)
            kept.append(int(selected.sum()))
            if selected.all() or not selected.any():
                break
        valid_signals = bias_signals(model, context.valid)
        num_classes = context.train.features["label"].num_classes
        weights = cell_weights(labels, np.asarray(train_signals["prediction"]))
        valid_bias = (np.asarray(valid_signals["prediction"]) - np.asarray(context.valid["label"])) % num_classes
        flagged = ~np.asarray(train_signals["correct"], dtype=bool)
        info = {
            "pseudo_conflicting": int(flagged.sum()),
            "rows_kept_per_stage": kept,
            "flagged_weight_share": _share(weights, flagged),
        }
        return BiasInference(
            _objectives().ERMObjective(sample_weights=weights),
            valid_pseudo_bias=valid_bias,
            conflict_scores=np.asarray(train_signals["loss"]),
            conflict_flags=flagged,
            info=info,
        )


RECIPES: dict[str, type[Recipe]] = {
    cls.name: cls
    for cls in (
        ERM,
        JTT,
        LfF,
        DisEnt,
        BiasEnsemble,
        FGCCDB,
        DDBIReal,
        DDBIIReal,
        DDBI,
        DDBII,
        DDBIPaper,
        DDBIIPaper,
        GroupDROOracle,
    )
}


TRUST_CODE_ENV = "HF_DDB_TRUST_CODE"


def code_trusted(trust_code: bool = False) -> bool:
    """Whether methods may be imported from a config's import paths: ``trust_code`` (``--trust-code``, a Python
    argument) or ``HF_DDB_TRUST_CODE=1`` in the environment. Off by default, as transformers'
    ``trust_remote_code``: a config is shared like data, and naming code in it must not be enough to run it."""
    return trust_code or os.environ.get(TRUST_CODE_ENV, "") == "1"


def import_recipe(path: str, *, trust_code: bool = False, base_dir: str | os.PathLike | None = None) -> type[Recipe]:
    """The `Recipe` subclass at ``path``: ``package.module:ClassName`` (an importable module) or
    ``path/to/file.py:ClassName`` (a Python file; a relative path is read from ``base_dir``, the config's folder,
    and may not leave it), so that a run config can name a method defined outside hf-ddb. Importing runs that
    code, so it is refused, before anything is imported, unless `code_trusted` (``trust_code``)."""
    import importlib
    import importlib.util
    import sys

    module_name, _, class_name = path.rpartition(":")
    if not module_name or not class_name.isidentifier():
        raise ValueError(f"{path!r} is no import path; write 'package.module:ClassName' or 'file.py:ClassName'")
    if not code_trusted(trust_code):
        raise ValueError(
            f"{path!r} would run the code in {module_name}; allow it with --trust-code (or {TRUST_CODE_ENV}=1, "
            "or trust_code=True) only if you trust that code"
        )
    if module_name.endswith(".py"):
        base = Path(base_dir or ".").resolve()
        file = (base / module_name).resolve()
        if not Path(module_name).is_absolute() and not file.is_relative_to(base):
            raise ValueError(f"{path!r}: {module_name} leaves the config's folder {base}; give an absolute path")
        if not file.is_file():
            raise ValueError(f"{path!r}: no file {file}")
        key = f"hf_ddb_user_recipes.{file.stem}_{abs(hash(str(file)))}"
        module = sys.modules.get(key)
        if module is None:
            logger.info(f"importing {class_name} from {file} (trusted code)")
            spec = importlib.util.spec_from_file_location(key, file)
            module = importlib.util.module_from_spec(spec)
            sys.modules[key] = module  # dataclasses look their module up while the file runs
            try:
                spec.loader.exec_module(module)
            except KeyboardInterrupt:
                del sys.modules[key]
                raise
            except Exception as err:  # the user's own code failed: name the file, keep its words
                del sys.modules[key]
                raise ValueError(f"{path!r}: running {module_name} failed ({type(err).__name__}: {err})") from err
            except BaseException as err:  # sys.exit() in a script: a refusal, not the end of hf-ddb
                del sys.modules[key]
                raise ValueError(f"{path!r}: running {module_name} exited ({type(err).__name__}: {err})") from err
    else:
        logger.info(f"importing {class_name} from module {module_name} (trusted code)")
        try:
            module = importlib.import_module(module_name)
        except KeyboardInterrupt:
            raise
        except ImportError as err:
            raise ValueError(f"{path!r}: cannot import {module_name!r} ({err})") from err
        except Exception as err:
            raise ValueError(f"{path!r}: importing {module_name!r} failed ({type(err).__name__}: {err})") from err
        except BaseException as err:
            raise ValueError(f"{path!r}: running {module_name} exited ({type(err).__name__}: {err})") from err
    recipe = getattr(module, class_name, None)
    if not (isinstance(recipe, type) and issubclass(recipe, Recipe)) or recipe.name == Recipe.name:
        raise ValueError(f"{path!r} is not a Recipe subclass with its own `name`")
    return recipe


def resolve_recipe(method: str, *, trust_code: bool = False, base_dir: str | os.PathLike | None = None) -> type[Recipe]:
    """A built-in method by name (`RECIPES`), or a method outside hf-ddb by import path (`import_recipe`, which
    needs ``trust_code``)."""
    if method in RECIPES:
        return RECIPES[method]
    if ":" in method:
        return import_recipe(method, trust_code=trust_code, base_dir=base_dir)
    raise ValueError(f"unknown method {method!r}; available: {list(RECIPES)}, or 'package.module:ClassName'")


def register_recipe(recipe: type[Recipe]) -> type[Recipe]:
    """Makes a `Recipe` subclass a method configs can name (``methods``, ``method_options``), as
    ``AutoConfig.register`` does for models; usable as a class decorator. Names are unique."""
    if not (isinstance(recipe, type) and issubclass(recipe, Recipe)) or recipe.name == Recipe.name:
        raise ValueError(f"{recipe!r} is not a Recipe subclass with its own `name`")
    if RECIPES.get(recipe.name, recipe) is not recipe:
        raise ValueError(f"a method named {recipe.name!r} is registered already ({RECIPES[recipe.name].__name__})")
    RECIPES[recipe.name] = recipe
    return recipe
