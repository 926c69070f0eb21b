"""Run configs (YAML files in ``pipelines/``): read (safe, bounded YAML; ``--set`` overrides; built-in configs by
name) and checked in one pass, `parse_config`, that reports every problem at once, one line each naming its
key: unknown keys (with a "did you mean"), wrong types, values out of range and settings that contradict each
other. Nothing here imports torch: a config with mistakes fails in well under a second. The data a config
names is loaded and checked afterwards, by `hf_ddb.validation`."""

from __future__ import annotations

import collections.abc
import copy
import dataclasses
import difflib
import math
import os
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .checks import LIMITS, ConfigError
from .pseudo_labels import PSEUDO_GROUPINGS, check_grouping
from .recipes import RECIPES, Recipe, resolve_recipe
from .selection import SELECTION_RULES, default_selection, selection_rule
from .settings import (
    BENCHMARK_OPTIONS,
    PRESETS,
    AmplifierConfig,
    ClassifierConfig,
    DiffusionConfig,
    GenerationConfig,
    HubConfig,
    TrainingConfig,
)

__all__ = [
    "AmplifierConfig",
    "ClassifierConfig",
    "ConfigError",
    "HubConfig",
    "RunConfig",
    "apply_overrides",
    "config_path",
    "load_config",
    "parse_config",
    "read_config",
    "shipped_configs",
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


@dataclass
class RunConfig:
    benchmark: dict[str, Any]
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    methods: list[str] = field(default_factory=lambda: ["erm"])
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    amplifier: AmplifierConfig = field(default_factory=AmplifierConfig)
    selection: str = "valid_accuracy"  # `hf_ddb.selection`; parse_config resolves "auto" (`default_selection`)
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
        return self.recipe(method).needs_amplifier or selection_rule(self.selection).needs_amplifier

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


MAX_CONFIG_BYTES = 1_000_000  # a run config is a few hundred bytes; anything this large is not one
MAX_YAML_ALIASES = 100  # YAML aliases can nest into exponentially large documents ("billion laughs")
MAX_CONFIG_VALUES = 100_000  # values once aliases are expanded (a real config has under a hundred)


def _too_large(value: Any, budget: int = MAX_CONFIG_VALUES) -> bool:
    """Whether ``value`` holds more than ``budget`` values with aliases expanded; stops as soon as it does."""
    stack, seen = [value], 0
    while stack:
        item = stack.pop()
        seen += 1
        if seen > budget:
            return True
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


class _BoundedLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` (no Python tags) that refuses documents with more than `MAX_YAML_ALIASES` aliases."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases_seen = getattr(self, "aliases_seen", 0) + 1
            if self.aliases_seen > MAX_YAML_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_YAML_ALIASES} aliases (*name); write the values out")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        """Refuses a key written twice in one mapping (YAML would keep the last one silently: a second
        ``training:`` section would replace the first whole)."""
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
            try:
                first = seen.get(key)
                seen[key] = line
            except TypeError:  # an unhashable key: the constructor names it
                continue
            if first is not None:
                where = f"lines {first} and {line}" if first != line else f"line {line}"
                problem = f"key {key!r} written twice ({where}); keep one"
                raise yaml.constructor.ConstructorError(None, None, problem, key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``raw`` with each ``"a.b.c=value"`` set (the value read as YAML, so ``2``, ``0.5``, ``[erm, lff]`` and
    ``null`` mean what they do in the file); the result is validated like the file itself."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. training.epochs=2")
        try:
            value = yaml.load(text, Loader=_BoundedLoader)  # noqa: S506  (a SafeLoader subclass)
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML") from err
        *parents, leaf = key.strip().split(".")
        node = raw
        for index, part in enumerate(parents):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: '{'.'.join(parents[: index + 1])}' is not a mapping")
        node[leaf] = value
    return raw


SHIPPED_CONFIGS = Path(__file__).resolve().parent / "pipelines"  # the repository's pipelines/, in the wheel too


def shipped_configs() -> list[str]:
    """The names of the built-in run configs (``hf-ddb run colored_mnist``)."""
    return sorted(path.stem for path in SHIPPED_CONFIGS.glob("*.yaml"))


def config_path(path: str | os.PathLike) -> Path:
    """``path`` itself when it exists; else a built-in config's file when ``path`` is its bare name
    (``colored_mnist`` or ``colored_mnist.yaml``), so a pip-installed hf-ddb runs them without the repository."""
    given = Path(path)
    if given.exists() or given.parent != Path(".") or given.suffix not in ("", ".yaml"):
        return given
    shipped = SHIPPED_CONFIGS / f"{given.stem}.yaml"
    return shipped if shipped.is_file() else given


def read_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The mapping a YAML run config holds (safe, size- and alias-bounded YAML), with ``--set`` overrides.
    ``path`` is a file, or the name of a built-in config (`shipped_configs`)."""
    path = config_path(path)
    if path.is_dir():
        raise ConfigError(
            f"{str(path)!r} is a folder; give a YAML config file in it (e.g. pipelines/colored_mnist.yaml)"
        )
    if not path.is_file():
        raise ConfigError(
            f"config file {str(path)!r} not found; or name a built-in config: {', '.join(shipped_configs())}"
        )
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {str(path)!r} is over {MAX_CONFIG_BYTES:,} bytes; not a run config")
    try:
        with path.open(encoding="utf-8") as handle:
            raw = yaml.load(handle, Loader=_BoundedLoader)  # noqa: S506  (a SafeLoader subclass)
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"config file {str(path)!r} is not valid YAML{line}: {problem}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text") from err
    if _too_large(raw):
        raise ConfigError(f"config file {str(path)!r} expands to over {MAX_CONFIG_VALUES:,} values (nested aliases?)")
    raw = raw if raw is not None else {}
    if overrides:
        if not isinstance(raw, dict):
            raise ConfigError("a config must be a mapping of keys to values")
        raw = apply_overrides(raw, overrides)
    return raw


# the config's sections with their dataclass (``diffusion`` is built over its preset: `_diffusion`)
SECTIONS = {
    "classifier": ClassifierConfig,
    "training": TrainingConfig,
    "amplifier": AmplifierConfig,
    "generation": GenerationConfig,
    "hub": HubConfig,
}


def load_config(path: str | os.PathLike, overrides: Sequence[str] = (), *, trust_code: bool = False) -> RunConfig:
    """Read and check a run config file (or a built-in config by name) with ``--set``-style ``overrides``:
    `read_config`, then `parse_config` (methods named by import path only with ``trust_code``; a relative file
    path is read from the config's folder)."""
    raw = read_config(path, overrides)
    return parse_config(raw, trust_code=trust_code, base_dir=config_path(path).parent)


# ------------------------------------------------------------------------------------------ checking
def _did_you_mean(value: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(value, [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown_key(key: Any, where: str, known: Sequence[str], of: str = "") -> str:
    close = difflib.get_close_matches(str(key), list(known), n=1)
    hint = f" (did you mean '{where}{close[0]}'?)" if close else f"; known: {sorted(known)}"
    return f"unknown key '{where}{key}'{f' {of}' if of else ''}{hint}"


def _settings_units(keys: Sequence[str], linked: Sequence[Sequence[str]]) -> Iterator[tuple[str, ...]]:
    """The given ``keys`` in the groups they are checked in: each alone, except settings checked against each
    other (a class's ``LINKED`` groups), which are checked together."""
    done: set[str] = set()
    for key in keys:
        if key in done:
            continue
        group = next((tuple(k for k in g if k in keys) for g in linked if key in g), (key,))
        done.update(group)
        yield group


def _named(where: str, unit: Sequence[str], err: Exception) -> str:
    """``err`` as a problem line naming the setting it is about (its first word, when that is a setting)."""
    first = str(err).split(" ", 1)[0]
    key = first if first in unit else unit[0] if len(unit) == 1 else None
    return f"'{where}.{key}': {err}" if key else f"'{where}': {err}"


def _section(cls: type, values: Any, where: str, problems: list[str], *, base: dict[str, Any] | None = None) -> Any:
    """``cls`` built from a config section's ``values`` (over ``base``, e.g. a preset), or None with every
    problem added to ``problems``: unknown keys, wrong types, then each setting's own checks (a setting with a
    bad value fails alone; settings checked against each other, ``cls.LINKED``, are tried together)."""
    base = dict(base or {})
    if values is None:
        values = {}
    if not isinstance(values, dict):
        problems.append(f"'{where}' must be a mapping, got {type(values).__name__}")
        return None
    known = [f.name for f in dataclasses.fields(cls) if f.init] if dataclasses.is_dataclass(cls) else []
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # a method defined outside hf-ddb whose hints do not resolve: its own checks remain
        hints = {}
    typed, clean = {}, True
    for key, value in values.items():
        if key not in known:
            problems.append(_unknown_key(key, f"{where}.", known))
            clean = False
        elif key in hints and not _matches(value, hints[key]):
            problems.append(f"'{where}.{key}' must be {_type_name(hints[key])}, got {value!r}")
            clean = False
        else:
            typed[key] = value
    try:
        built = cls(**{**base, **typed})
    except (TypeError, ValueError) as err:
        whole = err
    else:
        return built if clean else None
    before = len(problems)
    for unit in _settings_units(list(typed), getattr(cls, "LINKED", ())):
        try:
            cls(**{**base, **{key: typed[key] for key in unit}})
        except (TypeError, ValueError) as err:
            problems.append(_named(where, unit, err))
    if len(problems) == before:  # only the settings together fail
        problems.append(_named(where, list(typed), whole))
    return None


def parse_config(
    raw: dict[str, Any], *, trust_code: bool = False, base_dir: str | os.PathLike | None = None
) -> RunConfig:
    """Check a config mapping and build its `RunConfig`; raises one `ConfigError` listing every problem, one
    line each naming its key.

    Methods named by import path (``file.py:Class``, ``package.module:Class``) run code when imported: only
    with ``trust_code`` (or ``HF_DDB_TRUST_CODE=1``), a file's relative path read from ``base_dir`` (the config
    file's folder; default the current one)."""
    if not isinstance(raw, dict):
        raise ConfigError("a config must be a mapping of keys to values")
    problems: list[str] = []
    known = [f.name for f in dataclasses.fields(RunConfig) if f.name not in ("method_imports", "recipes")]
    for key in raw:
        if key not in known:
            problems.append(_unknown_key(key, "", known))

    benchmark = raw.get("benchmark")
    if not isinstance(benchmark, dict) or "name" not in benchmark:
        problems.append("'benchmark' must be a mapping with a 'name'")
        benchmark = None
    else:
        _check_benchmark(benchmark, problems)

    entries = raw.get("methods", ["erm"])
    recipes, method_imports = _methods(entries, problems, trust_code, base_dir)
    failed_imports = isinstance(entries, list) and sum(":" in str(e) for e in entries) > len(method_imports)
    methods = list(recipes)
    selection = raw.get("selection", "auto")
    if selection != "auto" and selection not in SELECTION_RULES:
        choices = ["auto", *SELECTION_RULES]
        problems.append(
            f"'selection' is {selection!r}{_did_you_mean(str(selection), choices)}; choose one of {choices}"
        )
        selection = "auto"
    if selection == "auto":
        selection = default_selection(list(recipes.values()))

    built = {name: _section(cls, raw.get(name), name, problems) for name, cls in SECTIONS.items()}
    built["diffusion"] = _diffusion(raw.get("diffusion"), problems)  # over its preset

    method_options = raw.get("method_options") or {}
    if not isinstance(method_options, dict):
        problems.append("'method_options' must be a mapping of method name to keyword arguments")
        method_options = {}
    options_ok = {}
    for method, options in method_options.items():
        recipe = recipes.get(method) or RECIPES.get(method)
        if recipe is None:
            if not failed_imports:  # else it may be the method whose import failed (reported above)
                problems.append(_unknown_key(method, "method_options.", [*RECIPES, *method_imports]))
            continue
        options_ok[method] = _section(recipe, options, f"method_options.{method}", problems) is not None

    amplifier = built["amplifier"]
    for method, recipe in recipes.items():  # the pseudo groups a DDB recipe asks for must exist under the rule
        options = method_options.get(method) if isinstance(method_options.get(method), dict) else {}
        grouping = options.get("groups", getattr(recipe, "groups", None))
        if recipe.needs_amplifier and amplifier is not None and grouping in PSEUDO_GROUPINGS:
            try:
                check_grouping(grouping, amplifier.rule)
            except ValueError as err:
                problems.append(f"'method_options.{method}.groups': {err}")
        if benchmark is not None and benchmark.get("streaming") and options_ok.get(method, True):
            if getattr(recipe(**options), "group_balanced", False):
                problems.append(
                    f"'methods': {method} draws group-balanced batches (a sampler over rows), which a streamed "
                    f"dataset ('benchmark.streaming') cannot give; set 'method_options.{method}.group_balanced: "
                    "false' or download the dataset"
                )
    hub, pushed = built["hub"], (raw.get("hub") if isinstance(raw.get("hub"), dict) else {}).get("classifier")
    if isinstance(pushed, str) and methods and pushed not in methods:
        problems.append(f"'hub.classifier' is {pushed!r}, which is not in 'methods' {methods}")
    elif hub is not None and hub.classifier is None and methods:
        hub.classifier = next((m for m in ("ddb_ii", "ddb_i") if m in methods), methods[0])
    generation, diffusion = built["generation"], built["diffusion"]
    if generation is not None and diffusion is not None:
        if generation.num_inference_steps > diffusion.num_train_timesteps:
            problems.append(
                f"'generation.num_inference_steps' is {generation.num_inference_steps}, more than the diffusion "
                f"model's {diffusion.num_train_timesteps} training timesteps ('diffusion.num_train_timesteps')"
            )
    output_dir = raw.get("output_dir", "runs/default")
    if not isinstance(output_dir, str):
        problems.append(f"'output_dir' must be a string, got {output_dir!r}")
    named = tuple(line.split("'")[1] for line in problems if line.startswith("'"))
    for line in _huge_integers(raw):  # the catch-all, for integers no other check has named
        key = line.split("'")[1]
        if not any(key == done or key.startswith((f"{done}.", f"{done}[")) for done in named):
            problems.append(line)
    if problems:
        raise ConfigError("\n".join(problems))  # one line per problem
    return RunConfig(
        benchmark=dict(benchmark),
        classifier=built["classifier"],
        training=built["training"],
        methods=methods,
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


def _methods(
    entries: Any, problems: list[str], trust_code: bool, base_dir: str | os.PathLike | None
) -> tuple[dict[str, type[Recipe]], dict[str, str]]:
    """Each method's `Recipe` class (built in, or imported from its path with ``trust_code``) and the import
    paths of those defined outside hf-ddb."""
    recipes: dict[str, type[Recipe]] = {}
    method_imports: dict[str, str] = {}
    if not isinstance(entries, list) or not entries:
        problems.append("'methods' must be a non-empty list")
        return recipes, method_imports
    for entry in entries:
        if not isinstance(entry, str):
            problems.append(f"'methods' holds {entry!r}; give method names or 'package.module:ClassName'")
            continue
        if ":" not in entry and entry not in RECIPES:
            problems.append(
                f"'methods': unknown method {entry!r}{_did_you_mean(entry, list(RECIPES))}; built in: "
                f"{sorted(RECIPES)}, or a method of your own as 'module:Class'"
            )
            continue
        try:
            recipe = resolve_recipe(entry, trust_code=trust_code, base_dir=base_dir)
        except ValueError as err:
            problems.append(f"'methods': {err}")
            continue
        if recipe.name in recipes:
            problems.append(f"'methods' names {recipe.name!r} twice")
            continue
        if entry not in RECIPES:
            if recipe.name in RECIPES:
                problems.append(f"'methods': {entry} is named {recipe.name!r}, a built-in method; rename it")
                continue
            method_imports[recipe.name] = entry
        recipes[recipe.name] = recipe
    return recipes, method_imports


def _diffusion(values: Any, problems: list[str]) -> DiffusionConfig | None:
    """The diffusion section over its ``preset`` (default ``cpu``)."""
    if values is not None and not isinstance(values, dict):
        problems.append(f"'diffusion' must be a mapping, got {type(values).__name__}")
        return None
    values = dict(values or {})
    preset = values.get("preset", "cpu")
    if preset not in PRESETS:
        hint = _did_you_mean(str(preset), list(PRESETS))
        problems.append(f"'diffusion.preset' is {preset!r}{hint}; choose one of {sorted(PRESETS)}")
        values.pop("preset")
        _section(DiffusionConfig, values, "diffusion", problems)
        return None
    return _section(DiffusionConfig, values, "diffusion", problems, base={"preset": preset, **PRESETS[preset]})


def _check_benchmark(benchmark: dict[str, Any], problems: list[str]) -> None:
    name = benchmark["name"]
    if name != "hub":
        if name not in BENCHMARK_OPTIONS:
            choices = [*sorted(BENCHMARK_OPTIONS), "hub"]
            problems.append(f"'benchmark.name' is {name!r}{_did_you_mean(str(name), choices)}; choose one of {choices}")
            return
        options = {key: value for key, value in benchmark.items() if key != "name"}
        _section(BENCHMARK_OPTIONS[name], options, "benchmark", problems)
        return
    for key, value in benchmark.items():
        if key not in HUB_BENCHMARK_KEYS:
            problems.append(_unknown_key(key, "benchmark.", list(HUB_BENCHMARK_KEYS), "of a Hub dataset"))
            continue
        expected = HUB_BENCHMARK_KEYS[key]
        if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
            if not (expected is float and isinstance(value, int) and not isinstance(value, bool)):
                problems.append(f"'benchmark.{key}' must be {expected.__name__}, got {value!r}")
                continue
        if key == "bias_ratio" and not 0.0 <= value <= 1.0:  # NaN fails this too
            problems.append(f"'benchmark.bias_ratio' must be a share in [0, 1], got {value!r}")
        if key == "image_size" and not 1 <= value <= LIMITS["resolution"]:
            problems.append(f"'benchmark.image_size' must be in [1, {LIMITS['resolution']}], got {value!r}")
    if "path" not in benchmark:
        problems.append("'benchmark.path' (a Hub dataset id or local folder) is required when name is 'hub'")


def _huge_integers(value: Any, where: str = "") -> list[str]:
    """Every integer anywhere in the config beyond `LIMITS` ``integer`` (no setting takes one: it would fail
    or exhaust memory hours later), each naming its key."""
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _huge_integers(item, f"{where}{key}.")]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _huge_integers(item, f"{where.rstrip('.')}[{i}].")]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > LIMITS["integer"]:
        return [f"'{where.rstrip('.')}' is {value:,}; no setting takes an integer beyond {LIMITS['integer']:,}"]
    return []
