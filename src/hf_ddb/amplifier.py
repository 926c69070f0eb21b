"""Step B of DDB: the bias amplifier (BA) and the bias signals it gives on the real training set.

The BA is an ordinary image classifier trained **only on synthetic, bias-aligned images**: it never sees
the rare bias-conflicting real samples, so it cannot memorise them, and on the real data it fails exactly
where the bias does not hold. `BiasAmplifierTrainer` refuses a dataset marked real.

`bias_signals` scores every real training sample (BA loss, probability of the true class, correctness,
predicted class); `pseudo_bias_labels` turns the scores into "bias-conflicting" flags with a named rule, and
`pseudo_bias` gives each row a pseudo bias value: the amplifier's predicted class is the row's inferred bias
attribute (the amplifier learned classes whose images carry nothing but the bias), so a 10-valued colour bias
gives 10 pseudo groups per class instead of two. None of them uses bias labels. `detection_report`
compares flags and scores with the true bias labels, for evaluation only.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from datasets import Dataset, IterableDataset
from transformers import PreTrainedModel, TrainerCallback, TrainingArguments

from .data import dataset_origin
from .inputs import StreamedSplit, as_split, at_model_size, predict_logits, prepared
from .metrics import detection_metrics, is_conflicting
from .objectives import ERMObjective
from .pseudo_labels import (
    PSEUDO_GROUPINGS,
    PSEUDO_LABEL_RULES,
    check_grouping,
    check_rule,
    pseudo_bias,
    pseudo_bias_labels,
    pseudo_bias_width,
)
from .settings import RUNTIME_SETTINGS, AmplifierConfig, ImageLoading, TrainingConfig
from .trainer import DebiasTrainer
from .utils import atomic_file

__all__ = [
    "PSEUDO_GROUPINGS",
    "PSEUDO_LABEL_RULES",
    "SIGNAL_NAMES",
    "AmplifierConfig",
    "RUNTIME_SETTINGS",
    "BiasSignals",
    "BiasAmplifierTrainer",
    "at_model_size",
    "bias_signals",
    "check_grouping",
    "check_rule",
    "detection_report",
    "generator_fidelity",
    "heldout_synthetic_accuracy",
    "memorisation_check",
    "memorisation_verdict",
    "pseudo_bias",
    "pseudo_bias_labels",
    "pseudo_bias_width",
    "train_bias_amplifier",
    "train_on_real_data",
]


class BiasAmplifierTrainer(DebiasTrainer):
    """Trains the bias amplifier on synthetic images only; a dataset marked real is refused.

    A `DebiasTrainer` with an `ERMObjective` of ``loss`` (default GCE with ``gce_q``: with the BA's per-sample
    loss driving DDB-II, a GCE amplifier gave 2-12 points more unbiased accuracy than a CE one, docs/results/history.md,
    amplifier ablation) and optional ``class_balanced`` batches. A dataset is refused when it is marked real
    (every hf-ddb benchmark split is, see `hf_ddb.data.dataset_origin`) or carries a ``bias_label`` column.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        args: TrainingArguments,
        train_dataset: Dataset,
        *,
        loss: str = "gce",
        gce_q: float = 0.7,
        class_balanced: bool = False,
        loading: ImageLoading | None = None,
        **kwargs: Any,
    ) -> None:
        if dataset_origin(train_dataset) == "real" or "bias_label" in train_dataset.column_names:
            raise ValueError(
                "the bias amplifier must be trained on synthetic images only, but this dataset is marked real "
                "(an hf-ddb benchmark split or a dataset with a 'bias_label' column); generate one with "
                "hf_ddb.generation.generate_synthetic_dataset"
            )
        objective = ERMObjective(loss_type=loss, gce_q=gce_q, class_balanced=class_balanced)
        super().__init__(model, args, train_dataset, objective, loading=loading, **kwargs)


def bias_signals(
    model: PreTrainedModel,
    dataset: Dataset | IterableDataset | StreamedSplit,
    batch_size: int = 1024,
    loading: ImageLoading | None = None,
) -> dict[str, np.ndarray]:
    """Per real sample: the BA's cross-entropy ``loss``, ``prob_true`` of the true class, ``correct``, ``prediction``.

    Real images of another size than the BA's are resized to it (the BA is usually trained at the
    diffusion resolution); ``loading``'s memory budget decides whether they are decoded at once. A streamed
    dataset is scored as it arrives, in stream order (its labels are read in an image-free pass).
    """
    dataset = as_split(dataset)
    logits = predict_logits(model, at_model_size(model, dataset), batch_size=batch_size, loading=loading)
    labels = np.asarray(dataset["label"])
    log_probs = torch.log_softmax(torch.from_numpy(logits).double(), dim=1).numpy()
    log_p_true = log_probs[np.arange(len(labels)), labels]
    prediction = logits.argmax(1)
    return {
        "loss": -log_p_true,
        "prob_true": np.exp(log_p_true),
        "correct": prediction == labels,
        "prediction": prediction,
    }


def detection_report(
    signals: dict[str, np.ndarray],
    flags: np.ndarray,
    dataset: Dataset,
    aligned_bias: Sequence[int] | None = None,
) -> dict[str, Any]:
    """How well the BA finds the truly conflicting samples (uses bias labels: evaluation only).

    Adds the BA's accuracy on real bias-aligned and bias-conflicting samples, the first diagnostic to read.
    """
    truth = is_conflicting(dataset["label"], dataset["bias_label"], aligned_bias)
    report = detection_metrics(signals["loss"], truth, flagged=flags)
    report["ba_accuracy_aligned"] = float(signals["correct"][~truth].mean()) if (~truth).any() else None
    report["ba_accuracy_conflicting"] = float(signals["correct"][truth].mean()) if truth.any() else None
    return report


def heldout_synthetic_accuracy(
    synthetic: Dataset,
    make_model: Callable[[], PreTrainedModel],
    train_model: Callable[[PreTrainedModel, Dataset], None],
    fraction: float = 0.1,
    seed: int = 0,
) -> float:
    """Accuracy on held-out synthetic images of an amplifier trained (``train_model``) on the rest.

    A twin of the run's amplifier, trained on ``1 - fraction`` of the synthetic images (stratified by class,
    at least one held out per class), measures how recognisable the generator's classes are; the run's own
    amplifier keeps every synthetic image.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    num_classes = len(set(synthetic["label"]))
    if len(synthetic) < 2 * num_classes:
        raise ValueError(f"holding out synthetic images needs at least 2 per class, got {len(synthetic)} images")
    held_out = max(int(round(fraction * len(synthetic))), num_classes)  # at least one image per class
    split = synthetic.train_test_split(test_size=held_out, stratify_by_column="label", seed=seed)
    model = make_model()
    train_model(model, split["train"])
    logits = predict_logits(model.eval(), split["test"])
    return float(np.mean(logits.argmax(1) == np.asarray(split["test"]["label"])))


def train_bias_amplifier(
    synthetic: Dataset,
    class_names: Sequence[str],
    settings: AmplifierConfig,
    output_dir: str | os.PathLike,
    *,
    fidelity: bool = True,
    progress_bar: bool = True,
    runtime: TrainingConfig | None = None,
) -> tuple[PreTrainedModel, Any, float | None]:
    """Step B: a classifier trained only on ``synthetic``, at the synthetic images' size. ``runtime`` (the
    run's training section) lends it what is not the amplifier's own (`RUNTIME_SETTINGS`: precision, compile,
    tracker, DataLoader workers, memory budget, augmentation), as for the target.

    Returns the model (in eval mode), its image processor and, with ``fidelity``, the held-out synthetic
    accuracy of a twin trained on 90% of the images (`heldout_synthetic_accuracy`, the generator check).
    """
    from .models import build_classifier

    size = synthetic[0]["image"].width

    def make_model() -> tuple[PreTrainedModel, Any]:
        return build_classifier(
            settings.architecture, dict(enumerate(class_names)), image_size=size, seed=settings.seed
        )

    lent = {key: getattr(runtime, key) for key in RUNTIME_SETTINGS} if runtime is not None else {}
    training = TrainingConfig(
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        seed=settings.seed,
        **lent,
    )

    def train(model: PreTrainedModel, images: Dataset, name: str = "amplifier") -> None:
        args = training.to_training_arguments(output_dir, disable_tqdm=not progress_bar, logging_strategy="no")
        BiasAmplifierTrainer(
            model,
            args,
            images,
            loss=settings.loss,
            class_balanced=settings.class_balanced,
            loading=training.image_loading(),
            progress_name=name,
        ).train()

    model, processor = make_model()
    train(model, synthetic)
    model.eval()
    if not fidelity:
        return model, processor, None

    def train_twin(model: PreTrainedModel, images: Dataset) -> None:
        train(model, images, "amplifier twin (generator check)")

    accuracy = heldout_synthetic_accuracy(synthetic, lambda: make_model()[0], train_twin, seed=settings.seed)
    return model, processor, accuracy


def train_on_real_data(
    settings: AmplifierConfig,
    train: Dataset,
    *,
    image_size: int | None = None,
    runtime: TrainingConfig | None = None,
    seed_offset: int = 0,
    callbacks: Sequence[TrainerCallback] = (),
) -> PreTrainedModel:
    """A model of the amplifier's ``settings`` (architecture, loss, epochs, batch, learning rate, class-balanced
    batches) trained on the REAL ``train`` split at ``image_size`` (default: the images' own): what DDB's
    amplifier is compared with, by the memorisation check and by the methods without diffusion (``ddb_ii_real``,
    ``fg_ccdb``). A ``bias_label`` column is dropped first; ``runtime`` lends `RUNTIME_SETTINGS`."""
    from .data import image_channels
    from .models import build_classifier

    if "bias_label" in train.column_names:
        train = train.remove_columns("bias_label")
    names = dict(enumerate(train.features["label"].names))
    seed = settings.seed + seed_offset
    size = image_size or train[0]["image"].width
    model, _ = build_classifier(
        settings.architecture, names, image_size=size, num_channels=image_channels(train), seed=seed
    )
    lent = {key: getattr(runtime, key) for key in RUNTIME_SETTINGS} if runtime is not None else {}
    training = TrainingConfig(
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        seed=seed,
        **lent,
    )
    objective = ERMObjective(loss_type=settings.loss, class_balanced=settings.class_balanced)
    with tempfile.TemporaryDirectory() as scratch:
        args = training.to_training_arguments(scratch, disable_tqdm=True, logging_strategy="no")
        trainer = DebiasTrainer(
            model,
            args,
            at_model_size(model, train),
            objective,
            loading=training.image_loading(),
            callbacks=list(callbacks),
            progress_name="real-data bias model",
        )
        trainer.train()
    return model.eval()


class _FitEachEpoch(TrainerCallback):
    """After every epoch, the model's training accuracy on the rows ``flags`` marks and on the others."""

    def __init__(self, train: Dataset, flags: np.ndarray) -> None:
        self.train, self.flags, self.labels = train, np.asarray(flags, dtype=bool), np.asarray(train["label"])
        self.inputs: Any = None
        self.history: list[dict[str, float]] = []

    def on_epoch_end(self, args: TrainingArguments, state: Any, control: Any, model: Any = None, **kwargs: Any):
        target = model.target  # the Trainer's model is a DebiasModel
        if self.inputs is None:
            self.inputs = prepared(target, at_model_size(target, self.train))
        correct = predict_logits(target, self.inputs).argmax(1) == self.labels
        self.history.append(
            {
                "epoch": round(state.epoch, 2),
                "flagged_fit": float(correct[self.flags].mean()) if self.flags.any() else None,
                "unflagged_fit": float(correct[~self.flags].mean()) if (~self.flags).any() else None,
            }
        )
        target.train()


# The memorisation check runs by default when the real training split is at most this many times the synthetic
# set: the real-data twin then costs at most as many amplifier trainings.
MEMORISATION_CHECK_MAX_RATIO = 2.0
# A real-data twin right on at least this share of the amplifier's flags has fitted them; it has learned what
# most rows share once it fits this share of the unflagged rows.
MEMORISED_SHARE = 0.5
MAJORITY_FIT = 0.9


def memorisation_check(
    settings: AmplifierConfig,
    train: Dataset,
    flags: np.ndarray,
    *,
    image_size: int | None = None,
    runtime: TrainingConfig | None = None,
) -> dict[str, Any]:
    """Does the diffusion stage pay on this data? Trains the amplifier's settings on the real training split
    (`train_on_real_data`) and records, epoch by epoch, its accuracy on the rows the amplifier ``flags`` and
    on the others. No bias labels: a real-data bias model that comes to fit the amplifier's flags late in
    training has memorised them and could not have flagged them, which is what DDB's amplifier, never shown a
    real image, avoids. Returns the history, the last epoch's fit and `memorisation_verdict`'s sentence."""
    tracker = _FitEachEpoch(train, flags)
    train_on_real_data(settings, train, image_size=image_size, runtime=runtime, callbacks=[tracker])
    last = tracker.history[-1] if tracker.history else {}
    record = {
        "history": tracker.history,
        "flagged": int(np.sum(flags)),
        "flagged_fit": last.get("flagged_fit"),
        "unflagged_fit": last.get("unflagged_fit"),
    }
    record["verdict"] = memorisation_verdict(tracker.history)
    return record


def memorisation_verdict(history: Sequence[Mapping[str, Any]]) -> str:
    """The memorisation check in one sentence, from the real-data twin's fit of the flagged and the other rows
    per epoch. Read at the first epoch where the twin fits `MAJORITY_FIT` of the unflagged rows (it has learned
    what most rows share) and at its last: flags it already fits then look like ordinary rows to it (likely
    bias-aligned rows the amplifier got wrong: no verdict on the diffusion stage); flags it fits only later it
    has memorised (the diffusion stage pays); flags it still misses it would have flagged too."""
    if not history or history[-1].get("flagged_fit") is None:
        return "the amplifier flags no row, so there is nothing a real-data model could have memorised"
    learned = next((row for row in history if (row.get("unflagged_fit") or 0.0) >= MAJORITY_FIT), history[-1])
    early, late = learned["flagged_fit"], history[-1]["flagged_fit"]
    if early >= MEMORISED_SHARE:
        return (
            f"a bias model of the amplifier's settings trained on the real images already fits {early:.0%} of the "
            f"rows the amplifier flags when it fits most other rows (epoch {learned['epoch']:g}): to it they look "
            "like ordinary rows, so many flags are likely bias-aligned rows the amplifier got wrong (see the "
            "generator check), and this check cannot tell whether the diffusion stage pays"
        )
    if late >= MEMORISED_SHARE:
        return (
            f"a bias model of the amplifier's settings trained on the real images fits {early:.0%} of the rows the "
            f"amplifier flags at epoch {learned['epoch']:g} but {late:.0%} at its last: it memorises them and could "
            "not have flagged them, so here the diffusion stage pays"
        )
    return (
        f"a bias model of the amplifier's settings trained on the real images fits only {late:.0%} of the rows the "
        "amplifier flags at its last epoch, so it would flag most of them too: here the recipe without diffusion "
        "(`ddb_ii_real`) may do as well, at a fraction of the cost"
    )


SIGNAL_NAMES = ("loss", "prob_true", "correct", "prediction")


@dataclass
class BiasSignals:
    """The amplifier's `bias_signals` on real splits and the pseudo bias-conflicting flags of one rule.

    ``splits[split]`` maps each of `SIGNAL_NAMES` to one value per row of that split, ``flags[split]`` is
    the rule's flags. Saved as one ``.npz`` of plain arrays (loaded without pickle).
    """

    splits: dict[str, dict[str, np.ndarray]]
    flags: dict[str, np.ndarray]

    @classmethod
    def score(
        cls,
        model: PreTrainedModel,
        data: Mapping[str, Dataset],
        rule: str,
        splits: Sequence[str] = ("train", "valid"),
        loading: ImageLoading | None = None,
        rule_options: Mapping[str, Any] | None = None,
    ) -> BiasSignals:
        scored = {split: bias_signals(model, data[split], loading=loading) for split in splits}
        options = dict(rule_options or {})
        return cls(scored, {split: pseudo_bias_labels(signals, rule, **options) for split, signals in scored.items()})

    def save(self, path: str | os.PathLike) -> None:
        """Writes ``<split>_<name>`` and ``<split>_pseudo_conflicting`` arrays, atomically."""
        arrays = {f"{split}_{name}": value for split, block in self.splits.items() for name, value in block.items()}
        arrays.update({f"{split}_pseudo_conflicting": flags for split, flags in self.flags.items()})
        with atomic_file(path) as tmp:
            np.savez(tmp, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> BiasSignals:
        with np.load(path, allow_pickle=False) as arrays:
            stored = {name: arrays[name] for name in arrays.files}
        splits = sorted({name.split("_", 1)[0] for name in stored})
        return cls(
            {split: {name: stored[f"{split}_{name}"] for name in SIGNAL_NAMES} for split in splits},
            {split: stored[f"{split}_pseudo_conflicting"] for split in splits},
        )


# When the amplifier's own numbers say it did not learn a bias (no bias labels involved).
# Real-train accuracy this far below held-out synthetic accuracy: measured gaps were -1 to +1 point where the
# amplifier carried the bias (colored_mnist, background_mnist; AUROC >= 0.97) and 13 points where it did not
# (corrupted_mnist at 1%, AUROC 0.71, DDB below ERM); docs/concepts/ddb.md, "The generator check".
FIDELITY_GAP = 0.05
# A bias worth removing is one most rows follow: the bias-conflicting share is 0.5-5% in the benchmarks of the
# literature (Waterbirds 5%). An amplifier that flags more than a quarter of the rows found no such shortcut.
# Measured over the amplifiers stored in benchmarks/results (`benchmarks/generator_check.py`): at most 6.2%
# flagged where the amplifier found the conflicting rows (51; colored_mnist, background_mnist; AUROC >= 0.97),
# 12-56% where it did not (36; corrupted_mnist, AUROC 0.64-0.82); 33 of those 36 warn. The check cannot see
# an amplifier that learned the class itself (three ResNet-18 amplifiers, flagging 12-25%, pass).
FIDELITY_MAX_FLAGGED = 0.25


def generator_fidelity(synthetic_accuracy: float, real_accuracy: float, num_classes: int) -> dict[str, Any]:
    """Whether the generator carried a bias the amplifier could learn, judged without bias labels.

    ``synthetic_accuracy``: `heldout_synthetic_accuracy`; ``real_accuracy``: the amplifier's accuracy on the
    real training set (its labels, not bias labels). Returns both accuracies, the share of real rows flagged
    (misclassified) and a list of ``warnings``: the held-out synthetic images barely recognisable (under halfway
    from chance to perfect: the generator is too weak to carry anything), the amplifier more than
    `FIDELITY_GAP` less accurate on the real training set than on synthetic images (the generator's images do
    not carry the real bias, unless the set is that far from bias-aligned), or more than `FIDELITY_MAX_FLAGGED`
    of the real training set flagged (a bias worth removing is followed by most rows). A pure function of the
    three numbers, so a stored check is judged again under the current rule (`hf_ddb.runner.Run.stage_record`).
    """
    chance = 1.0 / num_classes
    real_accuracy = float(real_accuracy)
    flagged = 1.0 - real_accuracy
    warnings = []
    if synthetic_accuracy < chance + (1.0 - chance) / 2:
        warnings.append(
            f"the amplifier recognises only {synthetic_accuracy:.0%} of held-out synthetic images (chance "
            f"{chance:.0%}): the generator's classes are barely distinguishable, so it cannot carry a bias; "
            "train the diffusion model longer or larger"
        )
    if real_accuracy < synthetic_accuracy - FIDELITY_GAP:
        warnings.append(
            f"the amplifier is right on {real_accuracy:.0%} of the real training images but on "
            f"{synthetic_accuracy:.0%} of held-out synthetic ones: unless about {flagged:.0%} of the training set "
            "is bias-conflicting, the generator did not reproduce the real bias and most of the amplifier's "
            "flags are bias-aligned samples"
        )
    if flagged > FIDELITY_MAX_FLAGGED:
        warnings.append(
            f"the amplifier flags {flagged:.0%} of the real training set as bias-conflicting; a bias worth "
            f"removing is followed by most rows (more than {1 - FIDELITY_MAX_FLAGGED:.0%}), so this is no bias signal"
        )
    return {
        "synthetic_heldout_accuracy": synthetic_accuracy,
        "real_train_accuracy": real_accuracy,
        "flagged_share": flagged,
        "warnings": warnings,
    }
