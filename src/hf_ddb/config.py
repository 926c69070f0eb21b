"""Declarative run configs (YAML files in ``pipelines/``): parsed and checked key by key (`parse_config`);
the data they name is loaded and checked by `hf_ddb.validation`."""

from __future__ import annotations

import collections.abc
import dataclasses
import json
import math
import os
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .amplifier import AmplifierConfig, check_grouping
from .checks import LIMITS, ConfigError
from .config_file import apply_overrides, config_path, load_config, shipped_configs  # noqa: F401 (re-exported)
from .data import BENCHMARK_OPTIONS
from .diffusion import DiffusionConfig
from .generation import GenerationConfig
from .recipes import PSEUDO_GROUP_SELECTIONS, RECIPES, SELECTIONS, Recipe, resolve_recipe
from .training import TrainingConfig

__all__ = [
    "AmplifierConfig",
    "ConfigError",
    "HubConfig",
    "RunConfig",
    "load_config",
    "parse_config",
]

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
    "streaming": bool,  # read the splits as streams (datasets too large to download); docs/guides/scaling.md
}


def _matches(value: Any, hint: Any) -> bool:
    """Whether a YAML value fits a field's type hint: no coercion (1.7 is no int, "yes" no bool), ints
    accepted for floats, lists for sequences and tuples, NaN and infinities refused."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if origin is typing.Literal:
        return value in args
    if origin in (list, tuple, collections.abc.Sequence):
        items = [a for a in args if a is not Ellipsis]
        return isinstance(value, list | tuple) and all(_matches(v, items[0]) for v in value if items)
    if origin in (dict, collections.abc.Mapping):
        return isinstance(value, dict)
    return isinstance(value, hint) if isinstance(hint, type) else True


def _type_name(hint: Any) -> str:
    """A hint in words: ``float`` (finite), ``a list of float``, ``int or None``."""
    origin, args = typing.get_origin(hint), [a for a in typing.get_args(hint) if a is not Ellipsis]
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in args)
    if origin in (list, tuple, collections.abc.Sequence) and args:
        return f"a list of {_type_name(args[0])}"
    if hint is float:
        return "float (finite)"
    if hint is type(None):
        return "None"
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


# `selection: auto` (the default): with an amplifier in the run, every method is selected by the amplifier's
# pseudo groups on valid; chosen across the three embedded benchmarks (docs/results/index.md, "DDB's defaults").
PSEUDO_GROUP_SELECTION = "valid_mean_pseudo_group"


def default_selection(recipes: Sequence[type[Recipe]]) -> str:
    """What ``selection: auto`` means for a run of ``recipes``: the amplifier's pseudo groups on valid when a
    DDB method trains an amplifier anyway (fair to every method: validation accuracy on a biased valid split
    picks the early, biased epochs of the reweighting methods), otherwise validation accuracy."""
    return PSEUDO_GROUP_SELECTION if any(r.needs_amplifier for r in recipes) else "valid_accuracy"


@dataclass
class ClassifierConfig:
    architecture: str = "mlp"
    image_mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    image_std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    image_size: int | None = None  # default: the benchmark's image width
    pretrained: str | None = None  # Hub id or folder of timm-wrapper weights, e.g. timm/resnet50.a1_in1k
    model_args: dict[str, Any] = field(default_factory=dict)


@dataclass
class HubConfig:
    """Where `hf-ddb push` sends the three artefacts: ``<repo_prefix>-diffusion|-amplifier|-classifier``."""

    repo_prefix: str | None = None
    classifier: str | None = None  # the method pushed as the debiased classifier; default ddb_ii, ddb_i, first
    private: bool = False
    # the licence of the cards and the synthetic dataset (a Hub licence id, e.g. mit, cc-by-nc-4.0): what your
    # data's licence allows for models and images made from it; "other" until you say
    license: str = "other"

    def __post_init__(self) -> None:
        if not isinstance(self.license, str) or not re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", self.license):
            raise ValueError(f"license must be a Hub licence id such as 'mit' or 'cc-by-nc-4.0', got {self.license!r}")


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
    # methods defined outside hf-ddb: their name -> the import path the config gave ('module:Class')
    method_imports: dict[str, str] = field(default_factory=dict)
    # each method's Recipe class, resolved once by parse_config (import paths only with its trust_code)
    recipes: dict[str, type[Recipe]] = field(default_factory=dict, repr=False, compare=False)

    def recipe(self, method: str) -> type[Recipe]:
        """The `Recipe` class of one of ``methods`` (built in, or the class parse_config imported)."""
        if method in self.recipes:
            return self.recipes[method]
        return resolve_recipe(self.method_imports.get(method, method))

    def reads_amplifier(self, method: str) -> bool:
        """Whether ``method``'s result depends on the amplifier stage: it needs the amplifier (DDB), or it is
        selected on the amplifier's pseudo groups. The one rule for which stages a method reads."""
        return self.recipe(method).needs_amplifier or self.selection in PSEUDO_GROUP_SELECTIONS

    @property
    def needs_amplifier(self) -> bool:
        """Whether the run needs steps A and B (some method reads the amplifier)."""
        return any(self.reads_amplifier(m) for m in self.methods)

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
        if b["name"] in BENCHMARK_OPTIONS:
            defaults = dataclasses.asdict(BENCHMARK_OPTIONS[b["name"]]())
            if "conflict_ratio" in defaults:
                return 1.0 - defaults["conflict_ratio"]
            return defaults.get("aligned_ratio")
        return b.get("bias_ratio")

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain values (the resolved recipe classes left out: ``method_imports`` names them)."""
        values = dataclasses.asdict(self)
        values.pop("recipes")
        return values


def _section(cls: type, values: Any, where: str) -> Any:
    if values is None:
        return cls()
    if not isinstance(values, dict):
        raise ConfigError(f"'{where}' must be a mapping, got {type(values).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown key '{where}.{unknown[0]}'; known keys in '{where}': {sorted(known)}")
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        if not _matches(value, hints[key]):
            raise ConfigError(f"'{where}.{key}' must be {_type_name(hints[key])}, got {value!r}")
    try:
        return cls(**values)
    except ValueError as err:  # the section's own checks name the setting first
        name = str(err).split(" ", 1)[0]
        raise ConfigError(f"'{where}.{name}': {err}" if name in hints else f"'{where}': {err}") from err


def parse_config(
    raw: dict[str, Any], *, trust_code: bool = False, base_dir: str | os.PathLike | None = None
) -> RunConfig:
    """Validate a config mapping; raises `ConfigError` naming the first bad key.

    Methods named by import path (``file.py:Class``, ``package.module:Class``) run code when imported: only
    with ``trust_code`` (or ``HF_DDB_TRUST_CODE=1``), a file's relative path read from ``base_dir`` (the config
    file's folder; default the current one)."""
    if not isinstance(raw, dict):
        raise ConfigError("a config must be a mapping of keys to values")
    known = {f.name for f in dataclasses.fields(RunConfig)} - {"method_imports", "recipes"}  # from 'methods'
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown key '{unknown[0]}'; known top-level keys: {sorted(known)}")
    benchmark = raw.get("benchmark")
    if not isinstance(benchmark, dict) or "name" not in benchmark:
        raise ConfigError("'benchmark' must be a mapping with a 'name'")
    _check_benchmark(benchmark)
    entries = raw.get("methods", ["erm"])
    if not isinstance(entries, list) or not entries:
        raise ConfigError("'methods' must be a non-empty list")
    recipes: dict[str, type[Recipe]] = {}
    method_imports: dict[str, str] = {}
    for entry in entries:
        if not isinstance(entry, str):
            raise ConfigError(f"'methods' holds {entry!r}; give method names or 'package.module:ClassName'")
        try:
            recipe = resolve_recipe(entry, trust_code=trust_code, base_dir=base_dir)
        except ValueError as err:
            raise ConfigError(f"'methods': {err}") from err
        if recipe.name in recipes:
            raise ConfigError(f"'methods' names {recipe.name!r} twice")
        if entry not in RECIPES:
            if recipe.name in RECIPES:
                raise ConfigError(f"'methods': {entry} is named {recipe.name!r}, a built-in method; rename it")
            method_imports[recipe.name] = entry
        recipes[recipe.name] = recipe
    methods = list(recipes)
    selection = raw.get("selection", "auto")
    if selection not in (*SELECTIONS, "auto"):
        raise ConfigError(f"'selection' is {selection!r}; choose 'auto' or one of {list(SELECTIONS)}")
    if selection == "auto":
        selection = default_selection(list(recipes.values()))
    method_options = raw.get("method_options") or {}
    if not isinstance(method_options, dict):
        raise ConfigError("'method_options' must be a mapping of method name to keyword arguments")
    for method, options in method_options.items():
        if method not in RECIPES and method not in recipes:
            raise ConfigError(f"'method_options.{method}': unknown method; available: {[*RECIPES, *method_imports]}")
        if not isinstance(options, dict):
            raise ConfigError(f"'method_options.{method}' must be a mapping")
        _check_recipe_options(method, recipes.get(method) or RECIPES[method], options)
    if benchmark.get("streaming"):
        for method in methods:
            if getattr(recipes[method](**method_options.get(method, {})), "group_balanced", False):
                raise ConfigError(
                    f"'methods': {method} draws group-balanced batches (a sampler over rows), which a streamed "
                    f"dataset ('benchmark.streaming') cannot give; set 'method_options.{method}.group_balanced: "
                    "false' or download the dataset"
                )
    amplifier = _section(AmplifierConfig, raw.get("amplifier"), "amplifier")
    for method in methods:  # the pseudo groups a DDB recipe asks for must exist under the amplifier's rule
        grouping = method_options.get(method, {}).get("groups", getattr(recipes[method], "groups", None))
        if recipes[method].needs_amplifier and grouping is not None:
            try:
                check_grouping(grouping, amplifier.rule)
            except ValueError as err:
                raise ConfigError(f"'method_options.{method}.groups': {err}") from err
    hub = _section(HubConfig, raw.get("hub"), "hub")
    if hub.classifier is None:
        hub.classifier = next((m for m in ("ddb_ii", "ddb_i") if m in methods), methods[0])
    elif hub.classifier not in methods:
        raise ConfigError(f"'hub.classifier' is {hub.classifier!r}, which is not in 'methods' {methods}")
    training = _section(TrainingConfig, raw.get("training"), "training")
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
    if generation.num_inference_steps > diffusion.num_train_timesteps:
        raise ConfigError(
            f"'generation.num_inference_steps' is {generation.num_inference_steps}, more than the diffusion "
            f"model's {diffusion.num_train_timesteps} training timesteps ('diffusion.num_train_timesteps')"
        )
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
        method_imports=method_imports,
        recipes=recipes,
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
        if "bias_ratio" in benchmark and not 0.0 <= benchmark["bias_ratio"] <= 1.0:  # NaN fails this too
            raise ConfigError(f"'benchmark.bias_ratio' must be a share in [0, 1], got {benchmark['bias_ratio']!r}")
        if "image_size" in benchmark and not 1 <= benchmark["image_size"] <= LIMITS["resolution"]:
            raise ConfigError(
                f"'benchmark.image_size' must be in [1, {LIMITS['resolution']}], got {benchmark['image_size']!r}"
            )
        if "path" not in benchmark:
            raise ConfigError("'benchmark.path' (a Hub dataset id or local folder) is required when name is 'hub'")
        return
    if name not in BENCHMARK_OPTIONS:
        raise ConfigError(f"'benchmark.name' is {name!r}; choose one of {sorted(BENCHMARK_OPTIONS) + ['hub']}")
    options = {key: value for key, value in benchmark.items() if key != "name"}
    cls = BENCHMARK_OPTIONS[name]
    hints = typing.get_type_hints(cls)
    for key, value in options.items():
        if key not in hints:
            raise ConfigError(f"unknown key 'benchmark.{key}' for {name!r}; known: {sorted(hints)}")
        if not _matches(value, hints[key]):
            raise ConfigError(f"'benchmark.{key}' must be {_type_name(hints[key])}, got {value!r}")
    try:
        cls(**options)
    except ValueError as err:  # the option's own check, e.g. a ratio the benchmark does not have
        key = str(err).split(" ", 1)[0]
        raise ConfigError(f"'benchmark.{key}': {err}") from err


def _check_recipe_options(method: str, recipe: type[Recipe], options: dict[str, Any]) -> None:
    known = {f.name for f in dataclasses.fields(recipe)} if dataclasses.is_dataclass(recipe) else set()
    for key in options:
        if key not in known:
            raise ConfigError(f"unknown key 'method_options.{method}.{key}'; known: {sorted(known)}")
    try:
        hints = typing.get_type_hints(recipe)
    except Exception:  # a method defined outside hf-ddb whose hints do not resolve: its own checks remain
        hints = {}
    for key, value in options.items():
        if key in hints and not _matches(value, hints[key]):
            raise ConfigError(f"'method_options.{method}.{key}' must be {_type_name(hints[key])}, got {value!r}")
    try:
        recipe(**options)  # the recipe checks its own values (e.g. DDB-II's weight_floor range)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"'method_options.{method}': {err}") from err


def _kinds(hint: Any) -> list[str]:
    """A type hint as the schema's list of accepted kinds (see `hf_ddb.config_file`)."""
    origin = typing.get_origin(hint)
    if hint is Any or origin is typing.Literal:
        return ["any"]
    if origin in (typing.Union, types.UnionType):
        return [kind for arg in typing.get_args(hint) for kind in _kinds(arg)]
    if hint is type(None):
        return ["none"]
    if origin in (list, tuple, collections.abc.Sequence) or hint in (list, tuple):
        return ["list"]
    if origin in (dict, collections.abc.Mapping) or hint is dict:
        return ["dict"]
    for kind in (bool, int, float, str):
        if hint is kind:
            return [kind.__name__]
    return ["any"]


def _fields(cls: type) -> dict[str, list[str]]:
    if not dataclasses.is_dataclass(cls):  # a method without options
        return {}
    hints = typing.get_type_hints(cls)
    return {f.name: _kinds(hints[f.name]) for f in dataclasses.fields(cls) if f.init}


def config_schema() -> dict[str, Any]:
    """What `hf_ddb.config_file.config_problems` checks before torch is imported, derived from the config
    dataclasses, the built-in methods and benchmarks: `config_schema.json` is this, written out (a test keeps
    the two equal; `write_config_schema` rewrites it)."""
    from .amplifier import PSEUDO_LABEL_RULES
    from .diffusion import PRESETS
    from .generation import SCHEDULERS

    top = _fields(RunConfig)
    sections = {
        name: _fields(type(value))
        for name, value in vars(RunConfig(benchmark={})).items()
        if dataclasses.is_dataclass(value)
    }
    for name in sections:
        top.pop(name)
    top.pop("method_imports")
    top.pop("recipes")
    sections["diffusion"]["preset"] = ["str"]
    benchmarks = {name: {"name": ["str"], **_fields(cls)} for name, cls in BENCHMARK_OPTIONS.items()}
    benchmarks["hub"] = {
        key: [{bool: "bool", int: "int", float: "float", str: "str", list: "list"}[kind]]
        for key, kind in HUB_BENCHMARK_KEYS.items()
    }
    return {
        "top": top,
        "sections": sections,
        "benchmarks": benchmarks,
        "methods": {name: _fields(recipe) for name, recipe in sorted(RECIPES.items())},
        "choices": {
            "selection": ["auto", *SELECTIONS],
            "diffusion.preset": sorted(PRESETS),
            "generation.scheduler": sorted(SCHEDULERS),
            "amplifier.rule": sorted(PSEUDO_LABEL_RULES),
        },
    }


def write_config_schema() -> None:
    """Rewrite `config_schema.json` from the dataclasses (after a config field or a built-in method changes)."""
    from .config_file import SCHEMA_FILE

    SCHEMA_FILE.write_text(json.dumps(config_schema(), indent=1, sort_keys=True) + "\n")
