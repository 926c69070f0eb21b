"""Declarative run configs (YAML files in ``pipelines/``), validated before any work starts."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from datasets import DatasetDict

from .data import BENCHMARKS
from .diffusion import DiffusionConfig
from .generation import GenerationConfig
from .training import TrainingConfig

__all__ = [
    "AmplifierConfig",
    "ConfigError",
    "HubConfig",
    "RunConfig",
    "load_config",
    "load_run_dataset",
    "parse_config",
]

METHODS = ("erm", "jtt", "lff", "disent", "bias_ensemble", "groupdro_oracle", "ddb_i", "ddb_ii")
DDB_METHODS = ("ddb_i", "ddb_ii")  # the methods that need steps A and B (diffusion, amplifier)
SELECTIONS = (
    "valid_accuracy",
    "valid_worst_pseudo_group",
    "valid_mean_pseudo_group",
    "last",
    "oracle_valid_worst_group",
    "oracle_valid_unbiased",
)
AMPLIFIER_LOSSES = ("ce", "gce")
HUB_BENCHMARK_KEYS = {
    "name": str,
    "path": str,  # a Hub dataset id or a local folder
    "image_column": str,
    "label_column": str,
    "bias_column": str,
    "revision": str,
    "config_name": str,  # the dataset's configuration, e.g. flwrlabs/celeba's "img_align+identity+attr"
    "image_size": int,  # resize every image to image_size x image_size (square) before anything else
    "bias_ratio": float,  # documentation only: the share of bias-aligned training samples
    "aligned_bias": list,  # aligned_bias[c]: the bias value class c is aligned with (default: c itself)
}


_OPTIONAL_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


# `selection: auto` (the default): with an amplifier in the run, every method is selected by the amplifier's
# pseudo groups on valid; chosen across the three embedded benchmarks (README, "DDB's defaults").
PSEUDO_GROUP_SELECTION = "valid_mean_pseudo_group"


def default_selection(methods: list[str]) -> str:
    """What ``selection: auto`` means for ``methods``: the amplifier's pseudo groups on valid when a DDB method
    trains an amplifier anyway (fair to every method: validation accuracy on a biased valid split picks the
    early, biased epochs of the reweighting methods), otherwise validation accuracy."""
    return PSEUDO_GROUP_SELECTION if any(m in DDB_METHODS for m in methods) else "valid_accuracy"


class ConfigError(ValueError):
    """A config is invalid; the message names the offending key."""


@dataclass
class ClassifierConfig:
    architecture: str = "mlp"
    image_mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    image_std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    image_size: int | None = None  # default: the benchmark's image width
    pretrained: str | None = None  # Hub id or folder of timm-wrapper weights, e.g. timm/resnet50.a1_in1k
    model_args: dict[str, Any] = field(default_factory=dict)


@dataclass
class AmplifierConfig:
    """The bias amplifier: trained only on the synthetic images, at the diffusion resolution."""

    architecture: str = "mlp"
    loss: str = "gce"  # or "ce"; GCE (q = 0.7) gave DDB-II 2-12 points more (README, amplifier ablation)
    epochs: float = 10.0
    batch_size: int = 128
    learning_rate: float = 1e-3
    class_balanced: bool = True
    rule: str = "misclassified"  # pseudo-label rule, see hf_ddb.amplifier.PSEUDO_LABEL_RULES
    seed: int = 0


@dataclass
class HubConfig:
    """Where `hf-ddb push` sends the three artefacts: ``<repo_prefix>-diffusion|-amplifier|-classifier``."""

    repo_prefix: str | None = None
    classifier: str | None = None  # the method pushed as the debiased classifier; default ddb_ii, ddb_i, first
    private: bool = False


@dataclass
class RunConfig:
    benchmark: dict[str, Any]
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    methods: list[str] = field(default_factory=lambda: ["erm"])
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    amplifier: AmplifierConfig = field(default_factory=AmplifierConfig)
    selection: str = "valid_accuracy"  # parse_config resolves the YAML's default "auto" (`default_selection`)
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    hub: HubConfig = field(default_factory=HubConfig)
    output_dir: str = "runs/default"

    @property
    def benchmark_name(self) -> str:
        return self.benchmark["name"]

    @property
    def benchmark_options(self) -> dict[str, Any]:
        return {k: v for k, v in self.benchmark.items() if k != "name"}

    @property
    def aligned_bias(self) -> list[int] | None:
        """Which bias value each class is aligned with; None means ``bias_label == label`` is aligned."""
        return self.benchmark.get("aligned_bias")

    @property
    def bias_ratio(self) -> float | None:
        """Share of bias-aligned training samples, when the benchmark states it."""
        b = self.benchmark
        if "conflict_ratio" in b:
            return 1.0 - b["conflict_ratio"]
        if "aligned_ratio" in b:
            return b["aligned_ratio"]
        if b["name"] in BENCHMARKS:
            defaults = BENCHMARKS[b["name"]].__kwdefaults__ or {}
            if "conflict_ratio" in defaults:
                return 1.0 - defaults["conflict_ratio"]
            return defaults.get("aligned_ratio")
        return b.get("bias_ratio")

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
    field_types = {f.name: f.type for f in dataclasses.fields(cls)}
    optional = {name for name, kind in field_types.items() if "None" in str(kind)}
    for key, value in values.items():
        if value is None and key in optional:
            continue
        default = getattr(defaults, key)
        expected = _OPTIONAL_TYPES[str(field_types[key]).split(" |")[0]] if default is None else type(default)
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
    _check_benchmark(benchmark)
    methods = raw.get("methods", ["erm"])
    if not isinstance(methods, list) or not methods:
        raise ConfigError("'methods' must be a non-empty list")
    for method in methods:
        if method not in METHODS:
            raise ConfigError(f"'methods' has unknown method {method!r}; available: {list(METHODS)}")
    selection = raw.get("selection", "auto")
    if selection not in (*SELECTIONS, "auto"):
        raise ConfigError(f"'selection' is {selection!r}; choose 'auto' or one of {list(SELECTIONS)}")
    if selection == "auto":
        selection = default_selection(methods)
    method_options = raw.get("method_options") or {}
    if not isinstance(method_options, dict):
        raise ConfigError("'method_options' must be a mapping of method name to keyword arguments")
    for method, options in method_options.items():
        if method not in METHODS:
            raise ConfigError(f"'method_options.{method}': unknown method; available: {list(METHODS)}")
        if not isinstance(options, dict):
            raise ConfigError(f"'method_options.{method}' must be a mapping")
        _check_recipe_options(method, options)
    amplifier = _section(AmplifierConfig, raw.get("amplifier"), "amplifier")
    if amplifier.loss not in AMPLIFIER_LOSSES:
        raise ConfigError(f"'amplifier.loss' is {amplifier.loss!r}; choose one of {list(AMPLIFIER_LOSSES)}")
    from .amplifier import PSEUDO_LABEL_RULES

    if amplifier.rule not in PSEUDO_LABEL_RULES:
        raise ConfigError(f"'amplifier.rule' is {amplifier.rule!r}; choose one of {sorted(PSEUDO_LABEL_RULES)}")
    if amplifier.epochs <= 0 or amplifier.batch_size <= 0 or amplifier.learning_rate <= 0:
        raise ConfigError("'amplifier.epochs', 'amplifier.batch_size' and 'amplifier.learning_rate' must be > 0")
    hub = _section(HubConfig, raw.get("hub"), "hub")
    if hub.classifier is None:
        hub.classifier = next((m for m in ("ddb_ii", "ddb_i") if m in methods), methods[0])
    elif hub.classifier not in methods:
        raise ConfigError(f"'hub.classifier' is {hub.classifier!r}, which is not in 'methods' {methods}")
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
        amplifier=amplifier,
        selection=selection,
        method_options={k: dict(v) for k, v in method_options.items()},
        hub=hub,
        output_dir=output_dir,
    )


def _check_benchmark(benchmark: dict[str, Any]) -> None:
    name = benchmark["name"]
    if name == "hub":
        for key, value in benchmark.items():
            if key not in HUB_BENCHMARK_KEYS:
                raise ConfigError(
                    f"unknown key 'benchmark.{key}' for a Hub dataset; known: {sorted(HUB_BENCHMARK_KEYS)}"
                )
            expected = HUB_BENCHMARK_KEYS[key]
            if not isinstance(value, expected) and not (expected is float and isinstance(value, int)):
                raise ConfigError(f"'benchmark.{key}' must be {expected.__name__}, got {value!r}")
        if "path" not in benchmark:
            raise ConfigError("'benchmark.path' (a Hub dataset id or local folder) is required when name is 'hub'")
        return
    if name not in BENCHMARKS:
        raise ConfigError(f"'benchmark.name' is {name!r}; choose one of {sorted(BENCHMARKS) + ['hub']}")
    options = BENCHMARKS[name].__kwdefaults__ or {}
    for key, value in benchmark.items():
        if key == "name":
            continue
        if key not in options:
            raise ConfigError(f"unknown key 'benchmark.{key}' for {name!r}; known: {sorted(options)}")
        expected = type(options[key])
        if (
            options[key] is not None
            and not isinstance(value, expected)
            and not (expected is float and isinstance(value, int))
        ):
            raise ConfigError(f"'benchmark.{key}' must be {expected.__name__}, got {value!r}")


def _check_recipe_options(method: str, options: dict[str, Any]) -> None:
    from .recipes import RECIPES

    known = (
        {f.name for f in dataclasses.fields(RECIPES[method])} if dataclasses.is_dataclass(RECIPES[method]) else set()
    )
    known -= {"amplifier", "signals"}  # set by the run from its own amplifier stage
    for key in options:
        if key not in known:
            raise ConfigError(f"unknown key 'method_options.{method}.{key}'; known: {sorted(known)}")
    try:
        RECIPES[method](**options)  # the recipe checks its own values (e.g. DDB-II's weight_floor range)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"'method_options.{method}': {err}") from err


def load_run_dataset(config: RunConfig) -> DatasetDict:
    """The config's dataset with ``train``/``valid``/``test``; a missing column fails naming the config key."""
    from .data import DatasetValidationError, load_benchmark, load_image_dataset

    if config.benchmark_name != "hub":
        return load_benchmark(config.benchmark_name, **config.benchmark_options)
    b = config.benchmark
    columns = {"image_column": "image", "label_column": "label", "bias_column": None}
    kwargs = {key: b.get(key, default) for key, default in columns.items()}
    if b.get("revision"):
        kwargs["revision"] = b["revision"]
    if b.get("config_name"):
        kwargs["name"] = b["config_name"]
    try:
        dataset = load_image_dataset(b["path"], **kwargs)
    except DatasetValidationError as err:
        message = str(err)
        for key in columns:
            if kwargs.get(key) and message.startswith(f"column {kwargs[key]!r}"):
                raise ConfigError(f"'benchmark.{key}': {message}") from err
        raise ConfigError(f"'benchmark.path' {b['path']!r}: {message}") from err
    missing = [split for split in ("train", "valid", "test") if split not in dataset]
    if missing:
        raise ConfigError(f"'benchmark.path' {b['path']!r} has no split(s) {missing}; found {sorted(dataset)}")
    if b.get("image_size"):
        dataset = _resized(dataset, b["image_size"])
    return dataset


def _resized(dataset: DatasetDict, size: int) -> DatasetDict:
    """Every image as a ``size`` x ``size`` square (bicubic; grayscale stays grayscale, else RGB), cached by
    `datasets` between runs."""
    from PIL import Image as PILImage

    def square(image: PILImage.Image) -> PILImage.Image:
        image = image.convert("L" if image.mode in ("L", "1") else "RGB")
        return image.resize((size, size), PILImage.Resampling.BICUBIC)

    def resize(batch: dict[str, list]) -> dict[str, list]:
        return {"image": [square(im) for im in batch["image"]]}

    return dataset.map(resize, batched=True, batch_size=256, desc=f"resizing to {size} px")


def load_config(path: str | os.PathLike) -> RunConfig:
    """Read and validate a YAML run config."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found")
    with path.open() as handle:
        raw = yaml.safe_load(handle)
    return parse_config(raw or {})
