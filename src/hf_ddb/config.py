"""Declarative run configs (YAML files in ``pipelines/``), validated before any work starts."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .data import BENCHMARKS
from .diffusion import DiffusionConfig
from .generation import GenerationConfig
from .training import TrainingConfig

__all__ = ["ConfigError", "RunConfig", "load_config"]

METHODS = ("erm",)


class ConfigError(ValueError):
    """A config is invalid; the message names the offending key."""


@dataclass
class ClassifierConfig:
    architecture: str = "mlp"
    image_mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    image_std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    model_args: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunConfig:
    benchmark: dict[str, Any]
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    methods: list[str] = field(default_factory=lambda: ["erm"])
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    output_dir: str = "runs/default"

    @property
    def benchmark_name(self) -> str:
        return self.benchmark["name"]

    @property
    def benchmark_options(self) -> dict[str, Any]:
        return {k: v for k, v in self.benchmark.items() if k != "name"}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _section(cls: type, values: Any, where: str) -> Any:
    if values is None:
        return cls()
    if not isinstance(values, dict):
        raise ConfigError(f"'{where}' must be a mapping, got {type(values).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown key '{where}.{unknown[0]}'; known keys in '{where}': {sorted(known)}")
    defaults = cls()
    optional = {f.name for f in dataclasses.fields(cls) if "None" in str(f.type)}
    for key, value in values.items():
        if value is None and key in optional:
            continue
        expected = type(getattr(defaults, key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            continue
        if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
            raise ConfigError(f"'{where}.{key}' must be {expected.__name__}, got {value!r}")
    return cls(**values)


def parse_config(raw: dict[str, Any]) -> RunConfig:
    """Validate a config mapping; raises `ConfigError` naming the first bad key."""
    if not isinstance(raw, dict):
        raise ConfigError("a config must be a mapping of keys to values")
    known = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown key '{unknown[0]}'; known top-level keys: {sorted(known)}")
    benchmark = raw.get("benchmark")
    if not isinstance(benchmark, dict) or "name" not in benchmark:
        raise ConfigError("'benchmark' must be a mapping with a 'name'")
    name = benchmark["name"]
    if name not in BENCHMARKS:
        raise ConfigError(f"'benchmark.name' is {name!r}; choose one of {sorted(BENCHMARKS)}")
    options = set(BENCHMARKS[name].__kwdefaults__ or {})
    for key in benchmark:
        if key != "name" and key not in options:
            raise ConfigError(f"unknown key 'benchmark.{key}' for {name!r}; known: {sorted(options)}")
    methods = raw.get("methods", ["erm"])
    if not isinstance(methods, list) or not methods:
        raise ConfigError("'methods' must be a non-empty list")
    for method in methods:
        if method not in METHODS:
            raise ConfigError(f"'methods' has unknown method {method!r}; available: {list(METHODS)}")
    training = _section(TrainingConfig, raw.get("training"), "training")
    if training.epochs <= 0 or training.batch_size <= 0 or training.learning_rate <= 0:
        raise ConfigError("'training.epochs', 'training.batch_size' and 'training.learning_rate' must be > 0")
    diffusion_raw = raw.get("diffusion") or {}
    if not isinstance(diffusion_raw, dict):
        raise ConfigError("'diffusion' must be a mapping")
    preset = diffusion_raw.get("preset", "cpu")
    try:
        diffusion = DiffusionConfig.from_preset(preset)
    except ValueError as err:
        raise ConfigError(f"'diffusion.preset': {err}") from err
    diffusion = _section(DiffusionConfig, {**diffusion.to_dict(), **diffusion_raw}, "diffusion")
    generation = _section(GenerationConfig, raw.get("generation"), "generation")
    for name, section in (("diffusion", diffusion), ("generation", generation)):
        try:
            section.validate()
        except ValueError as err:
            raise ConfigError(f"'{name}': {err}") from err
    output_dir = raw.get("output_dir", "runs/default")
    if not isinstance(output_dir, str):
        raise ConfigError(f"'output_dir' must be a string, got {output_dir!r}")
    return RunConfig(
        benchmark=dict(benchmark),
        classifier=_section(ClassifierConfig, raw.get("classifier"), "classifier"),
        training=training,
        methods=list(methods),
        diffusion=diffusion,
        generation=generation,
        output_dir=output_dir,
    )


def load_config(path: str | os.PathLike) -> RunConfig:
    """Read and validate a YAML run config."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found")
    with path.open() as handle:
        raw = yaml.safe_load(handle)
    return parse_config(raw or {})
