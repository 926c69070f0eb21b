"""The whole of DDB from one config: data -> diffusion -> generation -> amplifier -> debiasing -> report.

Every stage writes into its own folder under ``output_dir`` and finishes by writing ``stage.json`` with a
key: a hash of the settings the stage depends on (its config section and the keys of the stages it reads).
A re-run with the same key skips the stage; a changed setting re-runs that stage and everything after it,
and moves the old folder aside (``<stage>.stale-<key>``) instead of deleting it. Interrupted stages resume:
diffusion from its last checkpoint, generation from its finished shards; the amplifier and each method are
written atomically, so they are either complete or redone.

The stages are declared once (`STAGES`: what each reads and which config sections key it; one stage per
method after them); the folder layout is `hf_ddb.layout.RunLayout`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict
from transformers import TrainerCallback

from .amplifier import BiasSignals, generator_fidelity
from .config import RunConfig
from .inputs import first_image
from .layout import RunLayout
from .recipes import Recipe
from .selection import selection_rule
from .utils import LaunchedProcesses, atomic_write_text, progress_bars_shown, remove_leftovers

__all__ = ["STAGES", "STAGE_ORDER", "Run", "Stage", "stage_key"]


@dataclass(frozen=True)
class Stage:
    """A stage before the methods: the stages whose keys enter its key, and the config sections it reads."""

    name: str
    inputs: tuple[str, ...]
    sections: Callable[[RunConfig], dict[str, Any]]


STAGES = {
    stage.name: stage
    for stage in (
        Stage("diffusion", (), lambda c: {"benchmark": c.benchmark, "diffusion": asdict(c.diffusion)}),
        Stage("generation", ("diffusion",), lambda c: {"generation": asdict(c.generation)}),
        # the amplifier trains with the training section's augmentation and precision (keyed only when set,
        # so the keys of runs without them are those of before they existed)
        Stage(
            "amplifier",
            ("generation",),
            lambda c: {
                # rule_options keyed only when set, as augmentation and precision below
                "amplifier": {k: v for k, v in asdict(c.amplifier).items() if k != "rule_options" or v},
                **({"augmentation": c.training.augmentation} if c.training.augmentation != "none" else {}),
                **({"precision": c.training.mixed_precision} if c.training.mixed_precision not in (None, "no") else {}),
            },
        ),
    )
}
STAGE_ORDER = (*STAGES, "debias", "report")  # "debias": one stage per method, keyed by `Run.method_key`


logger = logging.getLogger(__name__)


def recipe_settings(recipe: type[Recipe], options: dict[str, Any]) -> dict[str, Any]:
    """Every setting ``recipe`` trains with: its options over its defaults (a changed default re-trains the
    method)."""
    if not dataclasses.is_dataclass(recipe):
        return dict(options)
    defaults = {
        f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
        for f in dataclasses.fields(recipe)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    }
    return {**defaults, **options}


def stage_key(payload: Any) -> str:
    """A short, stable hash of a JSON-able payload and the hf-ddb version: the cache key of a stage."""
    from . import __version__

    text = json.dumps({"hf_ddb": __version__, **payload}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class Run:
    """One run of a `RunConfig`; each method runs one stage (and, through the cache, the stages before it)."""

    def __init__(
        self,
        config: RunConfig,
        *,
        data: DatasetDict | None = None,
        log: Callable[[str], None] = logger.info,
        callbacks: Sequence[TrainerCallback] = (),
    ) -> None:
        self.config = config
        # extra TrainerCallbacks for every method's training (a benchmark's per-epoch probe, a tracker);
        # they observe, the run's results do not depend on them
        self.callbacks = list(callbacks)
        self.layout = RunLayout(Path(config.output_dir))
        self.root = self.layout.root
        self.log = log
        self._data = data  # the config's dataset when the caller loaded it already (the CLI validates it)
        self.loading = config.training.image_loading()  # in RAM or on the fly; the train-time augmentation
        self._resolved: dict[str, Any] = {}
        self.processes = LaunchedProcesses.from_environment()  # the one answer to "am I the main process?"

    # ---------------------------------------------------------------- cache bookkeeping
    def _marker(self, folder: Path) -> dict[str, Any] | None:
        path = folder / "stage.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def _once(self, name: str, compute: Callable[[], Any]) -> Any:
        """Each stage resolves once per `Run` (later stages ask for earlier ones repeatedly)."""
        if name not in self._resolved:
            self._resolved[name] = compute()
        return self._resolved[name]

    def _cached(self, name: str, folder: Path, key: str) -> bool:
        """True when ``folder`` holds a finished stage with ``key``; a stale folder is moved aside.

        Under several processes (torchrun) the main process checks first, the others then find it done.
        """
        if self.processes.several:
            from accelerate import PartialState

            from .utils import force_cpu_processes

            with PartialState(cpu=force_cpu_processes()).main_process_first():
                return self._check_cache(name, folder, key)
        return self._check_cache(name, folder, key)

    def _check_cache(self, name: str, folder: Path, key: str) -> bool:
        if folder.is_dir() and self.is_main_process:  # the others wait (main_process_first)
            for path in remove_leftovers(folder):
                self.log(f"{name}: removed {path.name}, left by an interrupted write")
        marker = self._marker(folder)
        if marker is not None and marker.get("key") == key:
            self.log(f"{name}: cache hit ({folder}, key {key})")
            return True
        stale_key = marker.get("key") if marker else self._pending_key(folder)
        if folder.exists() and stale_key not in (None, key):
            aside = folder.with_name(f"{folder.name}.stale-{stale_key}")
            os.replace(folder, aside)
            self.log(f"{name}: settings changed, previous output moved to {aside}")
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "stage.pending.json", json.dumps({"key": key}))
        return False

    @staticmethod
    def _pending_key(folder: Path) -> str | None:
        path = folder / "stage.pending.json"
        return json.loads(path.read_text())["key"] if path.is_file() else None

    def _finish(self, name: str, folder: Path, key: str, started: float, **extra: Any) -> None:
        seconds = round(time.time() - started, 1)
        if not self.is_main_process:
            return
        marker = {"stage": name, "key": key, "seconds": seconds, **extra}
        atomic_write_text(folder / "stage.json", json.dumps(marker, indent=2, default=str))
        (folder / "stage.pending.json").unlink(missing_ok=True)
        self.log(f"{name}: done in {seconds} s")

    def _stage(self, name: str, folder: Path, key: str, work: Callable[[], dict[str, Any] | None]) -> None:
        """Runs ``work`` unless ``folder`` holds a finished stage with ``key``; what it returns goes into
        ``stage.json`` beside the key and the time taken."""
        if self._cached(name, folder, key):
            return
        started = time.time()
        self._finish(name, folder, key, started, **(work() or {}))
        if self.processes.several:  # nobody reads the stage's files before the main process wrote them
            import torch.distributed as dist

            dist.barrier()

    @property
    def is_main_process(self) -> bool:
        """Whether this process writes: every process computes a stage, the main one saves it."""
        return self.processes.is_main

    def _stage_folder(self, stage: str) -> tuple[Path, str]:
        """The folder and current key of one of `STAGES` or a method."""
        if stage in STAGES:
            folders = {"diffusion": self.layout.diffusion, "generation": self.layout.synthetic}
            return folders.get(stage, self.layout.amplifier), self.key(stage)
        if stage in self.config.methods:
            return self.layout.method(stage), self.method_key(stage)
        raise ValueError(f"unknown stage {stage!r}; stages: {list(STAGES)} and the methods {self.config.methods}")

    def stage_record(self, stage: str) -> dict[str, Any] | None:
        """What a finished stage recorded (``key``, ``seconds``, and the amplifier's ``detection`` and ``fidelity``:
        the generator check, its warnings by the current rule), or None when ``stage`` (one of `STAGES` or a
        method name) has not finished with the current settings."""
        folder, key = self._stage_folder(stage)
        marker = self._marker(folder)
        if marker is None or marker.get("key") != key:
            return None
        if marker.get("fidelity"):  # judged again by the current rule from the numbers the stage measured
            measured = marker["fidelity"]
            marker["fidelity"] = generator_fidelity(
                measured["synthetic_heldout_accuracy"], measured["real_train_accuracy"], len(self.class_names)
            )
        return marker

    def reuse(self, stage: str, source: Run) -> bool:
        """Take ``source``'s finished ``stage`` (one of `STAGES`) when it was made with this run's settings (the
        same key) and this run has not finished it yet: its folder is copied in, atomically. Runs that differ only
        downstream (a benchmark's seeds, which enter the amplifier and the methods, not the generator) so share
        the work. Returns whether it was taken."""
        import shutil

        from .utils import atomic_directory

        if stage not in STAGES:
            raise ValueError(f"only the stages {list(STAGES)} can be reused, not {stage!r}")
        if source.stage_record(stage) is None or source.key(stage) != self.key(stage):
            return False
        if self.stage_record(stage) is not None:
            return False
        folder, _ = self._stage_folder(stage)
        if self.is_main_process:
            folder.parent.mkdir(parents=True, exist_ok=True)
            with atomic_directory(folder) as tmp:
                shutil.copytree(source._stage_folder(stage)[0], tmp, symlinks=True, dirs_exist_ok=True)
        self._resolved.pop(stage, None)
        return True

    def forget(self, stage: str) -> None:
        """Make the next request for ``stage`` (one of `STAGES` or a method) compute it again, in place: its
        finished record is removed, its outputs are overwritten (a benchmark's probe must see the training)."""
        folder, _ = self._stage_folder(stage)
        if self.is_main_process:
            (folder / "stage.json").unlink(missing_ok=True)
        self._resolved.pop(f"method:{stage}" if stage in self.config.methods else stage, None)

    # ---------------------------------------------------------------- keys
    def key(self, stage: str) -> str:
        """The cache key of one of `STAGES`: its config sections and the keys of the stages it reads."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; stages: {list(STAGES)} (methods: `method_key`)")
        spec = STAGES[stage]
        return stage_key({**{name: self.key(name) for name in spec.inputs}, **spec.sections(self.config)})

    def method_key(self, method: str) -> str:
        """The cache key of ``method``'s stage: the data, classifier, training, selection and its options, and
        the amplifier's key when the method or its selection reads the amplifier."""
        c = self.config
        payload = {
            "benchmark": c.benchmark,
            "classifier": asdict(c.classifier),
            "training": c.training.to_dict(),
            "selection": c.selection,
            "method": method,
            "options": recipe_settings(c.recipe(method), c.method_options.get(method, {})),
        }
        if self.config.reads_amplifier(method):
            payload["amplifier"] = self.key("amplifier")
        if c.recipe(method).trains_bias_model:  # it trains the amplifier's settings on the real data
            payload["bias_model"] = {**asdict(c.amplifier), "resolution": c.diffusion.resolution}
        return stage_key(payload)

    # ---------------------------------------------------------------- stages
    @property
    def data(self) -> DatasetDict:
        """The benchmark (loaded once; embedded benchmarks are cached by `load_benchmark`)."""
        if self._data is None:
            from .validation import load_run_dataset

            self._data = load_run_dataset(self.config)
        return self._data

    @property
    def needs_amplifier(self) -> bool:
        """Whether the config needs steps A and B (`RunConfig.needs_amplifier`)."""
        return self.config.needs_amplifier

    @property
    def class_names(self) -> list[str]:
        return list(self.data["train"].features["label"].names)

    def diffusion(self) -> Path:
        """Train (or resume) the class-conditional diffusion model; returns the pipeline folder."""
        return self._once("diffusion", self._diffusion)

    def _diffusion(self) -> Path:
        from .diffusion import train_diffusion

        folder = self.layout.diffusion

        def work() -> dict[str, Any]:
            self.log(f"diffusion: training {self.config.diffusion.max_train_steps} steps (resumable)")
            return {"global_step": train_diffusion(self.data["train"], self.config.diffusion, folder).global_step}

        self._stage("diffusion", folder, self.key("diffusion"), work)
        return self.layout.diffusion_pipeline

    def generation(self) -> Dataset:
        """Generate the synthetic bias-aligned dataset (resumes from finished shards)."""
        return self._once("generation", self._generation)

    def _generation(self) -> Dataset:
        from .diffusion import noise_scheduler
        from .generation import generate_synthetic_dataset
        from .pipeline_generation import BiasAlignedGenerationPipeline

        pipeline_dir = self.diffusion()

        def work() -> None:
            generation = self.config.generation
            self.log(f"generation: {generation.num_images_per_class} images per class, w = {generation.guidance_scale}")
            pipeline = BiasAlignedGenerationPipeline.from_pretrained(pipeline_dir)
            # from the training scheduler, whichever one the report saved into the folder since
            pipeline.scheduler = noise_scheduler(self.config.diffusion)
            generate_synthetic_dataset(pipeline, self.layout.synthetic, generation)

        self._stage("generation", self.layout.synthetic, self.key("generation"), work)
        from .generation import load_synthetic_dataset

        return load_synthetic_dataset(self.layout.synthetic_dataset)

    def amplifier(self) -> Path:
        """Train the bias amplifier on the synthetic images only and score the real train/valid splits."""
        return self._once("amplifier", self._amplifier)

    def _amplifier(self) -> Path:
        from .amplifier import detection_report, memorisation_check, train_bias_amplifier
        from .pipeline_scoring import save_amplifier
        from .utils import atomic_directory

        synthetic = self.generation()
        layout = self.layout

        def work() -> dict[str, Any]:
            settings = self.config.amplifier
            self.log(f"amplifier: {settings.architecture}, {settings.loss} loss, {len(synthetic)} synthetic images")
            model, processor, synthetic_accuracy = train_bias_amplifier(
                synthetic,
                self.class_names,
                settings,
                layout.amplifier / "trainer",
                runtime=self.config.training,
                progress_bar=progress_bars_shown(),
            )
            signals = BiasSignals.score(  # test too: its pseudo groups are reported (the amplifier reads no label)
                model,
                self.data,
                settings.rule,
                splits=("train", "valid", "test"),
                loading=self.loading,
                rule_options=settings.rule_options,
            )
            real_accuracy = float(np.mean(signals.splits["train"]["correct"]))
            fidelity = generator_fidelity(synthetic_accuracy, real_accuracy, len(self.class_names))
            self.log(
                f"amplifier: {fidelity['synthetic_heldout_accuracy']:.1%} right on held-out synthetic images, "
                f"{fidelity['real_train_accuracy']:.1%} on the real training set"
            )
            if self.is_main_process:
                signals.save(layout.signals)
            train = self.data["train"]
            detection = None
            if "bias_label" in train.column_names:
                detection = detection_report(
                    signals.splits["train"], signals.flags["train"], train, self.config.aligned_bias
                )
            memorisation = None
            if self._memorisation_check_runs(train, len(synthetic)):
                memorisation = memorisation_check(
                    settings,
                    train,
                    signals.flags["train"],
                    image_size=first_image(synthetic).width,
                    runtime=self.config.training,
                )
                self.log(f"memorisation check: {memorisation['verdict']}")
            if self.is_main_process:
                with atomic_directory(layout.amplifier_model) as tmp:
                    save_amplifier(model, processor, tmp)
            return {
                "detection": detection,
                "fidelity": fidelity,
                "num_synthetic": len(synthetic),
                "memorisation": memorisation,
            }

        self._stage("amplifier", layout.amplifier, self.key("amplifier"), work)
        record = self.stage_record("amplifier")  # trained now or reused: its check under the current rule
        for warning in (record or {}).get("fidelity", {}).get("warnings", []):
            logger.warning(f"{warning}; DDB's results below are not a debiasing result")
        return layout.amplifier_model

    def _memorisation_check_runs(self, train: Any, num_synthetic: int) -> bool:
        """Whether the amplifier stage also trains its settings on the real data (`memorisation_check`): "on",
        or "auto" while the real training split is at most `MEMORISATION_CHECK_MAX_RATIO` times the synthetic
        set. Never on a streamed split (it is read once per epoch there, at a cost no default should pay)."""
        from .amplifier import MEMORISATION_CHECK_MAX_RATIO

        mode = self.config.amplifier.memorisation_check
        if mode == "off" or not isinstance(train, Dataset):
            return False
        return mode == "on" or len(train) <= MEMORISATION_CHECK_MAX_RATIO * num_synthetic

    def amplifier_signals(self) -> BiasSignals:
        """The amplifier stage's signals on train/valid, read from disk once per `Run`."""
        return self._once("amplifier_signals", self._read_signals)

    def _read_signals(self) -> BiasSignals:
        self.amplifier()
        return BiasSignals.load(self.layout.signals)

    def valid_pseudo_bias(self) -> np.ndarray:
        """The amplifier's pseudo bias of every valid row (`pseudo_bias`): the groups that methods without pseudo
        groups of their own are selected on under the pseudo-group rules."""
        return self.pseudo_bias("valid")

    def pseudo_bias(self, split: str) -> np.ndarray | None:
        """The amplifier's pseudo bias of every row of ``split`` (0 = aligned; `hf_ddb.amplifier.pseudo_bias`):
        (class, predicted class) under the ``misclassified`` rule, else (class, flagged). None for a split the
        amplifier stage did not score."""
        from .amplifier import pseudo_bias, pseudo_bias_width

        signals = self.amplifier_signals()
        if split not in signals.splits:
            return None
        groups = "inferred_bias" if self.config.amplifier.rule == "misclassified" else "flag"
        width = pseudo_bias_width(groups, len(self.class_names))
        labels = self.data[split]["label"]
        return pseudo_bias(signals.splits[split], labels, signals.flags[split], groups, width)

    def debias(self, methods: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        """Train every configured method (each cached on its own); returns their metrics."""
        return {method: self._method(method) for method in (methods or self.config.methods)}

    def _method(self, method: str) -> dict[str, Any]:
        return self._once(f"method:{method}", lambda: self._train_method(method))

    def _train_method(self, method: str) -> dict[str, Any]:
        if self.config.reads_amplifier(method):
            self.amplifier_signals()  # the upstream stages first, so the stage's time is the method's own
        folder = self.layout.method(method)
        self._stage(method, folder, self.method_key(method), lambda: self._fit_method(method))
        return json.loads(self.layout.method_metrics(method).read_text())

    def _fit_method(self, method: str) -> None:
        from transformers import AutoModelForImageClassification

        from .debiasing import train_with_recipe
        from .inputs import predict_logits
        from .metrics import group_metrics
        from .models import build_classifier, save_classifier
        from .recipes import RecipeContext

        recipe_class = self.config.recipe(method)
        amplifier, signals, valid_pseudo = None, None, None
        if recipe_class.needs_amplifier:
            amplifier = AutoModelForImageClassification.from_pretrained(self.amplifier()).eval()
            signals = self.amplifier_signals().splits  # scored once by the amplifier stage
        if selection_rule(self.config.selection).needs_amplifier:  # for recipes that infer no pseudo groups themselves
            valid_pseudo = self.valid_pseudo_bias()
        started = time.time()
        recipe = recipe_class(**self.config.method_options.get(method, {}))
        classifier, training = self.config.classifier, self.config.training
        image_size = classifier.image_size or first_image(self.data["train"]).width
        processors = []

        def make_model() -> Any:
            model, processor = build_classifier(
                classifier.architecture,
                dict(enumerate(self.class_names)),
                image_size=image_size,
                image_mean=classifier.image_mean,
                image_std=classifier.image_std,
                model_args=classifier.model_args,
                seed=training.seed,
                pretrained=classifier.pretrained,
            )
            processors.append(processor)
            return model

        self.log(f"{method}: training ({training.epochs:g} epochs, selection {self.config.selection})")
        context = RecipeContext(
            self.data["train"],
            self.data["valid"],
            make_model,
            training,
            amplifier=amplifier,
            amplifier_signals=signals,
            rule=self.config.amplifier.rule,
            rule_options=self.config.amplifier.rule_options,
            bias_model=self.config.amplifier,
            bias_model_size=self.config.diffusion.resolution,  # the amplifier's: the synthetic images' size
        )
        model, info = train_with_recipe(
            recipe,
            context,
            str(self.layout.method(method) / "trainer"),
            selection=self.config.selection,
            valid_pseudo_bias=valid_pseudo,
            progress_bar=progress_bars_shown(),
            callbacks=self.callbacks,
        )
        if self.is_main_process:
            save_classifier(model, processors[-1], self.layout.method_model(method))
        metrics: dict[str, Any] = {"method": method, "info": info}
        for split in ("valid", "test"):
            dataset = self.data[split]
            logits = predict_logits(model, dataset, loading=self.loading)
            labels = np.asarray(dataset["label"])
            if "bias_label" in dataset.column_names:
                metrics[split] = group_metrics(logits, labels, dataset["bias_label"], self.config.aligned_bias)
            else:
                metrics[split] = {"accuracy": float((logits.argmax(1) == labels).mean())}
            pseudo = self.pseudo_bias(split) if self.config.reads_amplifier(method) else None
            if pseudo is not None:  # the groups the amplifier found: what a run without bias labels can measure
                found = group_metrics(logits, labels, pseudo, aligned_bias=[0] * len(self.class_names))
                metrics[split]["pseudo_groups"] = {
                    "mean_accuracy": found["unbiased_accuracy"],
                    "worst_accuracy": found["worst_group_accuracy"],
                    "aligned_accuracy": found["aligned_accuracy"],
                    "flagged_accuracy": found["conflicting_accuracy"],
                }
        metrics["seconds"] = round(time.time() - started, 1)
        if self.is_main_process:
            atomic_write_text(self.layout.method_metrics(method), json.dumps(metrics, indent=2))

    def report(self) -> dict[str, Any]:
        """Every stage the config needs, then results.json/results.md, the plots and the model cards (written
        by the main process; under several processes the others return what it wrote)."""
        from .metrics import is_conflicting
        from .report import RunSummary, write_report

        summary = RunSummary(self.config, self.root, self.debias(), self.class_names)
        stages = [*(STAGES if self.needs_amplifier else ()), *self.config.methods]
        summary.stages = {name: record for name in stages if (record := self.stage_record(name)) is not None}
        example = first_image(self.data["train"])
        summary.image_mode = example.mode if example.mode in ("L", "RGB") else "RGB"
        summary.image_size = example.size
        if self.needs_amplifier:
            self.amplifier()
            if self.is_main_process:  # the saved pipeline samples as the run generated
                from .diffusion import noise_scheduler
                from .generation import save_scheduler

                generation = self.config.generation
                training_scheduler = noise_scheduler(self.config.diffusion)
                save_scheduler(self.layout.diffusion_pipeline, generation.scheduler, training_scheduler)
            signals = self.amplifier_signals()
            summary.amplifier_train_losses = signals.splits["train"]["loss"]
            summary.amplifier_train_flags = signals.flags["train"]
            summary.amplifier_train_predictions = signals.splits["train"]["prediction"]
            summary.train = self.data["train"]
            summary.synthetic = self.generation()
        train = self.data["train"]
        if "bias_label" in train.column_names:
            summary.train_conflicting = is_conflicting(train["label"], train["bias_label"], self.config.aligned_bias)
        if not self.processes.several:
            return write_report(summary)
        import torch.distributed as dist

        if self.is_main_process:
            write_report(summary)
        dist.barrier()
        return json.loads((self.root / "results.json").read_text())
