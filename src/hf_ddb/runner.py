"""The whole of DDB from one config: data -> diffusion -> generation -> amplifier -> debiasing -> report.

Every stage writes into its own folder under ``output_dir`` and finishes by writing ``stage.json`` with a
key: a hash of the settings the stage depends on (its config section and the keys of the stages it reads).
A re-run with the same key skips the stage; a changed setting re-runs that stage and everything after it,
and moves the old folder aside (``<stage>.stale-<key>``) instead of deleting it. Interrupted stages resume:
diffusion from its last checkpoint, generation from its finished shards; the amplifier and each method are
written atomically, so they are either complete or redone.

`Run` holds the stages' bodies; their keys, records and the skip / move-aside / resume bookkeeping are
`hf_ddb.stage_cache.StageCache`'s, where the stages are declared once (`STAGES`: what each reads and which
config sections key it; one stage per method after them). The folder layout is `hf_ddb.layout.RunLayout`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict
from transformers import TrainerCallback

from .amplifier import BiasSignals, generator_fidelity
from .config import RunConfig
from .inputs import first_image
from .layout import RunLayout
from .selection import selection_rule
from .stage_cache import STAGES, StageCache
from .utils import LaunchedProcesses, atomic_write_text, progress_bars_shown

__all__ = ["Run"]

logger = logging.getLogger(__name__)


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
        self.cache = StageCache(config, self.layout, self.processes, log)  # keys, markers, stale folders

    # ---------------------------------------------------------------- the cache
    def key(self, stage: str) -> str:
        """The cache key of one of `STAGES` (`StageCache.key`)."""
        return self.cache.key(stage)

    def method_key(self, method: str) -> str:
        """The cache key of ``method``'s stage (`StageCache.method_key`)."""
        return self.cache.method_key(method)

    def _once(self, name: str, compute: Callable[[], Any]) -> Any:
        """Each stage resolves once per `Run` (later stages ask for earlier ones repeatedly)."""
        if name not in self._resolved:
            self._resolved[name] = compute()
        return self._resolved[name]

    @property
    def is_main_process(self) -> bool:
        """Whether this process writes: every process computes a stage, the main one saves it."""
        return self.processes.is_main

    def stage_record(self, stage: str) -> dict[str, Any] | None:
        """What a finished stage recorded (``key``, ``seconds``, and the amplifier's ``detection`` and ``fidelity``:
        the generator check, its warnings by the current rule), or None when ``stage`` (one of `STAGES` or a
        method name) has not finished with the current settings."""
        marker = self.cache.record(stage)
        if marker and marker.get("fidelity"):  # judged again by the current rule from the numbers it measured
            measured = marker["fidelity"]
            marker["fidelity"] = generator_fidelity(
                measured["synthetic_heldout_accuracy"], measured["real_train_accuracy"], len(self.class_names)
            )
        return marker

    def reuse(self, stage: str, source: Run) -> bool:
        """Take ``source``'s finished ``stage`` (one of `STAGES`) when it was made with this run's settings
        (`StageCache.reuse`): runs that differ only downstream (a benchmark's seeds) so share the work."""
        taken = self.cache.reuse(stage, source.cache)
        if taken:
            self._resolved.pop(stage, None)
        return taken

    def forget(self, stage: str) -> None:
        """Make the next request for ``stage`` (one of `STAGES` or a method) compute it again, in place
        (`StageCache.forget`; a benchmark's probe must see the training)."""
        self.cache.forget(stage)
        self._resolved.pop(f"method:{stage}" if stage in self.config.methods else stage, None)

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

        self.cache.run("diffusion", folder, self.key("diffusion"), work)
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

        self.cache.run("generation", self.layout.synthetic, self.key("generation"), work)
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

        self.cache.run("amplifier", layout.amplifier, self.key("amplifier"), work)
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
        self.cache.run(method, folder, self.method_key(method), lambda: self._fit_method(method))
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
        info = getattr(self.data["train"], "info", None)  # a streamed split has none
        summary.source_license = info.license if info is not None else None
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
