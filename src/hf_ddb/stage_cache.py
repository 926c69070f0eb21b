"""The run folder's stage cache: which stages a run has and what keys each (`STAGES`, `StageCache.key`,
`StageCache.method_key`), and the bookkeeping around a stage's work (`StageCache.run`): a finished stage with the
same key is skipped, a stale one is moved aside (``<stage>.stale-<key>``), an interrupted one is marked
``stage.pending.json`` and resumes. `hf_ddb.runner.Run` holds the stages' bodies and asks this for the rest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .config import RunConfig
from .layout import RunLayout
from .recipes import Recipe
from .utils import LaunchedProcesses, atomic_write_text, remove_leftovers

__all__ = ["STAGES", "STAGE_ORDER", "Stage", "StageCache", "read_marker", "recipe_settings", "stage_key"]

logger = logging.getLogger(__name__)


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


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The ``stage.json`` a finished stage wrote into ``folder``; None while it has not finished."""
    path = folder / "stage.json"
    return json.loads(path.read_text()) if path.is_file() else None


class StageCache:
    """The stages of one `RunConfig` in its run folder (``layout``): their keys, folders and records, and
    `run`, which does a stage's work only when its folder holds no finished stage with the current key. Under
    several processes (``processes``) every process works and the main one writes."""

    def __init__(
        self,
        config: RunConfig,
        layout: RunLayout,
        processes: LaunchedProcesses,
        log: Callable[[str], None] = logger.info,
    ) -> None:
        self.config, self.layout, self.processes, self.log = config, layout, processes, log

    # ---------------------------------------------------------------- keys and folders
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
        if c.reads_amplifier(method):
            payload["amplifier"] = self.key("amplifier")
        if c.recipe(method).trains_bias_model:  # it trains the amplifier's settings on the real data
            payload["bias_model"] = {**asdict(c.amplifier), "resolution": c.diffusion.resolution}
        return stage_key(payload)

    def folder(self, stage: str) -> tuple[Path, str]:
        """The folder and current key of one of `STAGES` or a method."""
        if stage in STAGES:
            folders = {"diffusion": self.layout.diffusion, "generation": self.layout.synthetic}
            return folders.get(stage, self.layout.amplifier), self.key(stage)
        if stage in self.config.methods:
            return self.layout.method(stage), self.method_key(stage)
        raise ValueError(f"unknown stage {stage!r}; stages: {list(STAGES)} and the methods {self.config.methods}")

    def record(self, stage: str) -> dict[str, Any] | None:
        """What a finished stage wrote into ``stage.json`` (``key``, ``seconds`` and what its work returned), or
        None when ``stage`` (one of `STAGES` or a method name) has not finished with the current settings."""
        folder, key = self.folder(stage)
        marker = read_marker(folder)
        return marker if marker is not None and marker.get("key") == key else None

    # ---------------------------------------------------------------- running a stage
    def run(self, name: str, folder: Path, key: str, work: Callable[[], dict[str, Any] | None]) -> None:
        """Runs ``work`` unless ``folder`` holds a finished stage with ``key``; what it returns goes into
        ``stage.json`` beside the key and the time taken."""
        if self._cached(name, folder, key):
            return
        started = time.time()
        self._finish(name, folder, key, started, **(work() or {}))
        if self.processes.several:  # nobody reads the stage's files before the main process wrote them
            import torch.distributed as dist

            dist.barrier()

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
        if folder.is_dir() and self.processes.is_main:  # the others wait (main_process_first)
            for path in remove_leftovers(folder):
                self.log(f"{name}: removed {path.name}, left by an interrupted write")
        marker = read_marker(folder)
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
        if not self.processes.is_main:
            return
        marker = {"stage": name, "key": key, "seconds": seconds, **extra}
        atomic_write_text(folder / "stage.json", json.dumps(marker, indent=2, default=str))
        (folder / "stage.pending.json").unlink(missing_ok=True)
        self.log(f"{name}: done in {seconds} s")

    # ---------------------------------------------------------------- sharing and redoing
    def reuse(self, stage: str, source: StageCache) -> bool:
        """Take ``source``'s finished ``stage`` (one of `STAGES`) when it was made with these settings (the same
        key) and this run has not finished it yet: its folder is copied in, atomically. Runs that differ only
        downstream (a benchmark's seeds, which enter the amplifier and the methods, not the generator) so share
        the work. Returns whether it was taken."""
        import shutil

        from .utils import atomic_directory

        if stage not in STAGES:
            raise ValueError(f"only the stages {list(STAGES)} can be reused, not {stage!r}")
        if source.record(stage) is None or source.key(stage) != self.key(stage):
            return False
        if self.record(stage) is not None:
            return False
        folder, _ = self.folder(stage)
        if self.processes.is_main:
            folder.parent.mkdir(parents=True, exist_ok=True)
            with atomic_directory(folder) as tmp:
                shutil.copytree(source.folder(stage)[0], tmp, symlinks=True, dirs_exist_ok=True)
        return True

    def forget(self, stage: str) -> None:
        """Make ``stage`` (one of `STAGES` or a method) unfinished: its record is removed, its outputs stay to be
        overwritten when it runs again."""
        folder, _ = self.folder(stage)
        if self.processes.is_main:
            (folder / "stage.json").unlink(missing_ok=True)
