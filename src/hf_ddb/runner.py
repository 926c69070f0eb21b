"""The whole of DDB from one config: data -> diffusion -> generation -> amplifier -> debiasing -> report.

Every stage writes into its own folder under ``output_dir`` and finishes by writing ``stage.json`` with a
key: a hash of the settings the stage depends on (its config section and the keys of the stages it reads).
A re-run with the same key skips the stage; a changed setting re-runs that stage and everything after it,
and moves the old folder aside (``<stage>.stale-<key>``) instead of deleting it. Interrupted stages resume:
diffusion from its last checkpoint, generation from its finished shards; the amplifier and each method are
written atomically, so they are either complete or redone.

Folder layout::

    output_dir/
      diffusion/pipeline/           BiasAlignedGenerationPipeline (+ README.md model card)
      synthetic/dataset/            the synthetic bias-aligned Dataset
      amplifier/model/              the bias amplifier (+ README.md), amplifier/signals.npz
      methods/<name>/model/         each trained classifier (+ README.md), methods/<name>/metrics.json
      results.json  results.md  group_accuracy.png  amplifier_losses.png  synthetic_samples.png
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict

from .config import DDB_METHODS, RunConfig
from .recipes import PSEUDO_GROUP_SELECTIONS

__all__ = ["STAGE_ORDER", "Run", "stage_key"]

STAGE_ORDER = ("diffusion", "generation", "amplifier", "debias", "report")


def stage_key(payload: Any) -> str:
    """A short, stable hash of a JSON-able payload and the hf-ddb version: the cache key of a stage."""
    from . import __version__

    text = json.dumps({"hf_ddb": __version__, **payload}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _log(message: str) -> None:
    print(f"[hf-ddb] {message}", flush=True)


class Run:
    """One run of a `RunConfig`; each method runs one stage (and, through the cache, the stages before it)."""

    def __init__(
        self, config: RunConfig, *, data: DatasetDict | None = None, log: Callable[[str], None] = _log
    ) -> None:
        self.config = config
        self.root = Path(config.output_dir)
        self.log = log
        self._data = data  # the config's dataset when the caller loaded it already (the CLI validates it)
        self._resolved: dict[str, Any] = {}

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
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            from accelerate import PartialState

            from .utils import force_cpu_processes

            with PartialState(cpu=force_cpu_processes()).main_process_first():
                return self._check_cache(name, folder, key)
        return self._check_cache(name, folder, key)

    def _check_cache(self, name: str, folder: Path, key: str) -> bool:
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
        (folder / "stage.pending.json").write_text(json.dumps({"key": key}))
        return False

    @staticmethod
    def _pending_key(folder: Path) -> str | None:
        path = folder / "stage.pending.json"
        return json.loads(path.read_text())["key"] if path.is_file() else None

    def _finish(self, name: str, folder: Path, key: str, started: float, **extra: Any) -> None:
        seconds = round(time.time() - started, 1)
        if int(os.environ.get("RANK", "0")) != 0:
            return
        marker = {"stage": name, "key": key, "seconds": seconds, **extra}
        tmp = folder / ".stage.json.tmp"
        tmp.write_text(json.dumps(marker, indent=2, default=str))
        os.replace(tmp, folder / "stage.json")
        (folder / "stage.pending.json").unlink(missing_ok=True)
        self.log(f"{name}: done in {seconds} s")

    # ---------------------------------------------------------------- keys
    def key(self, stage: str, method: str | None = None) -> str:
        c = self.config
        if stage == "diffusion":
            return stage_key({"benchmark": c.benchmark, "diffusion": asdict(c.diffusion)})
        if stage == "generation":
            return stage_key({"diffusion": self.key("diffusion"), "generation": asdict(c.generation)})
        if stage == "amplifier":
            return stage_key({"generation": self.key("generation"), "amplifier": asdict(c.amplifier)})
        if stage == "debias":
            payload = {
                "benchmark": c.benchmark,
                "classifier": asdict(c.classifier),
                "training": c.training.to_dict(),
                "selection": c.selection,
                "method": method,
                "options": c.method_options.get(method, {}),
            }
            if method in DDB_METHODS or c.selection in PSEUDO_GROUP_SELECTIONS:
                payload["amplifier"] = self.key("amplifier")
            return stage_key(payload)
        raise ValueError(f"unknown stage {stage!r}; stages: {list(STAGE_ORDER)}")

    # ---------------------------------------------------------------- stages
    @property
    def data(self) -> DatasetDict:
        """The benchmark (loaded once; embedded benchmarks are cached by `load_benchmark`)."""
        if self._data is None:
            from .config import load_run_dataset

            self._data = load_run_dataset(self.config)
        return self._data

    @property
    def needs_amplifier(self) -> bool:
        """Whether the config needs steps A and B (a DDB method, or selection by BA pseudo groups)."""
        c = self.config
        return any(m in DDB_METHODS for m in c.methods) or c.selection in PSEUDO_GROUP_SELECTIONS

    @property
    def class_names(self) -> list[str]:
        return list(self.data["train"].features["label"].names)

    def diffusion(self) -> Path:
        """Train (or resume) the class-conditional diffusion model; returns the pipeline folder."""
        return self._once("diffusion", self._diffusion)

    def _diffusion(self) -> Path:
        from .diffusion import train_diffusion

        folder, key = self.root / "diffusion", self.key("diffusion")
        if not self._cached("diffusion", folder, key):
            started = time.time()
            self.log(f"diffusion: training {self.config.diffusion.max_train_steps} steps (resumable)")
            output = train_diffusion(self.data["train"], self.config.diffusion, folder)
            self._finish("diffusion", folder, key, started, global_step=output.global_step)
        return folder / "pipeline"

    def generation(self) -> Dataset:
        """Generate the synthetic bias-aligned dataset (resumes from finished shards)."""
        return self._once("generation", self._generation)

    def _generation(self) -> Dataset:
        from .generation import generate_synthetic_dataset
        from .pipeline_bias_aligned import BiasAlignedGenerationPipeline

        pipeline_dir = self.diffusion()
        folder, key = self.root / "synthetic", self.key("generation")
        if not self._cached("generation", folder, key):
            started = time.time()
            generation = self.config.generation
            self.log(f"generation: {generation.num_images_per_class} images per class, w = {generation.guidance_scale}")
            pipeline = BiasAlignedGenerationPipeline.from_pretrained(pipeline_dir)
            generate_synthetic_dataset(pipeline, folder, generation)
            self._finish("generation", folder, key, started)
        return Dataset.load_from_disk(str(folder / "dataset"))

    def amplifier(self) -> Path:
        """Train the bias amplifier on the synthetic images only and score the real train/valid splits."""
        return self._once("amplifier", self._amplifier)

    def _amplifier(self) -> Path:
        from .amplifier import (
            BiasAmplifierTrainer,
            bias_signals,
            detection_report,
            generator_fidelity,
            heldout_synthetic_accuracy,
            pseudo_bias_labels,
        )
        from .models import build_classifier, save_classifier
        from .training import TrainingConfig

        synthetic = self.generation()
        folder, key = self.root / "amplifier", self.key("amplifier")
        if not self._cached("amplifier", folder, key):
            started = time.time()
            settings = self.config.amplifier
            self.log(f"amplifier: {settings.architecture}, {settings.loss} loss, {len(synthetic)} synthetic images")
            size = synthetic[0]["image"].width

            def make_model() -> Any:
                return build_classifier(
                    settings.architecture, dict(enumerate(self.class_names)), image_size=size, seed=settings.seed
                )

            def train(model: Any, images: Dataset) -> None:
                training = TrainingConfig(
                    epochs=settings.epochs,
                    batch_size=settings.batch_size,
                    learning_rate=settings.learning_rate,
                    seed=settings.seed,
                )
                args = training.to_training_arguments(folder / "trainer", logging_strategy="no")
                BiasAmplifierTrainer(
                    model, args, images, loss=settings.loss, class_balanced=settings.class_balanced
                ).train()

            model, processor = make_model()
            train(model, synthetic)
            model.eval()
            synthetic_accuracy = heldout_synthetic_accuracy(
                synthetic, lambda: make_model()[0], train, seed=settings.seed
            )
            signals = {split: bias_signals(model, self.data[split]) for split in ("train", "valid")}
            flags = {split: pseudo_bias_labels(signals[split], settings.rule) for split in signals}
            arrays = {f"{split}_{name}": value for split, block in signals.items() for name, value in block.items()}
            arrays.update({f"{split}_pseudo_conflicting": flag for split, flag in flags.items()})
            fidelity = generator_fidelity(synthetic_accuracy, signals["train"]["correct"], len(self.class_names))
            self.log(
                f"amplifier: {fidelity['synthetic_heldout_accuracy']:.1%} right on held-out synthetic images, "
                f"{fidelity['real_train_accuracy']:.1%} on the real training set"
            )
            for warning in fidelity["warnings"]:
                self.log(f"WARNING: {warning}; DDB's results below are not a debiasing result")
            tmp = folder / ".signals.tmp.npz"
            np.savez(tmp, **arrays)
            os.replace(tmp, folder / "signals.npz")
            detection = (
                detection_report(signals["train"], flags["train"], self.data["train"], self.config.aligned_bias)
                if "bias_label" in self.data["train"].column_names
                else None
            )
            save_classifier(model, processor, folder / "model")
            self._finish(
                "amplifier",
                folder,
                key,
                started,
                detection=detection,
                fidelity=fidelity,
                num_synthetic=len(synthetic),
            )
        return folder / "model"

    def amplifier_signals(self) -> dict[str, np.ndarray]:
        """The amplifier stage's signals on train/valid, read from disk once per `Run`."""
        return self._once("amplifier_signals", self._read_signals)

    def _read_signals(self) -> dict[str, np.ndarray]:
        self.amplifier()
        with np.load(self.root / "amplifier" / "signals.npz") as arrays:
            return {name: arrays[name] for name in arrays.files}

    def debias(self, methods: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        """Train every configured method (each cached on its own); returns their metrics."""
        return {method: self._method(method) for method in (methods or self.config.methods)}

    def _method(self, method: str) -> dict[str, Any]:
        return self._once(f"method:{method}", lambda: self._train_method(method))

    def _train_method(self, method: str) -> dict[str, Any]:
        from transformers import AutoModelForImageClassification

        from .models import build_classifier, save_classifier
        from .recipes import RECIPES, train_with_recipe
        from .training import evaluate_groups, predict_logits

        folder, key = self.root / "methods" / method, self.key("debias", method)
        if self._cached(method, folder, key):
            return json.loads((folder / "metrics.json").read_text())
        options = dict(self.config.method_options.get(method, {}))
        if method in DDB_METHODS:  # the upstream stages first, so the timing below is the method's own
            options["amplifier"] = AutoModelForImageClassification.from_pretrained(self.amplifier()).eval()
            options.setdefault("rule", self.config.amplifier.rule)
            arrays = self.amplifier_signals()  # scored once by the amplifier stage
            names = ("loss", "prob_true", "correct", "prediction")
            options["signals"] = {split: {n: arrays[f"{split}_{n}"] for n in names} for split in ("train", "valid")}
        valid_flags = None
        if self.config.selection in PSEUDO_GROUP_SELECTIONS and method not in DDB_METHODS:
            valid_flags = self.amplifier_signals()["valid_pseudo_conflicting"]
        started = time.time()
        recipe = RECIPES[method](**options)
        classifier, training = self.config.classifier, self.config.training
        image_size = classifier.image_size or self.data["train"][0]["image"].width
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
        model, info = train_with_recipe(
            recipe,
            self.data,
            make_model,
            training,
            str(folder / "trainer"),
            selection=self.config.selection,
            valid_pseudo_flags=valid_flags,
            progress_bar=True,
        )
        save_classifier(model, processors[-1], folder / "model")
        metrics: dict[str, Any] = {"method": method, "info": info}
        for split in ("valid", "test"):
            if "bias_label" in self.data[split].column_names:
                metrics[split] = evaluate_groups(model, self.data[split], self.config.aligned_bias)
            else:
                logits = predict_logits(model, self.data[split])
                metrics[split] = {"accuracy": float((logits.argmax(1) == np.asarray(self.data[split]["label"])).mean())}
        metrics["seconds"] = round(time.time() - started, 1)
        tmp = folder / ".metrics.json.tmp"
        tmp.write_text(json.dumps(metrics, indent=2))
        os.replace(tmp, folder / "metrics.json")
        self._finish(method, folder, key, started)
        return metrics

    def report(self) -> dict[str, Any]:
        """Every stage the config needs, then results.json/results.md, the plots and the model cards."""
        from .report import write_report

        return write_report(self, self.debias())
