"""Reading a run config file, and the checks that need no deep-learning library: the YAML (safe, bounded),
``--set`` overrides, built-in configs by name, and every unknown key, wrong type and unknown name at once
(with a "did you mean"), against `config_schema.json`, which `hf_ddb.config.config_schema` derives from the
config dataclasses (a test keeps the two equal). A config that passes is then parsed in full by
`hf_ddb.config.parse_config`, which imports torch; one that fails is reported in well under a second."""

from __future__ import annotations

import copy
import difflib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .checks import LIMITS, ConfigError

if TYPE_CHECKING:
    from .config import RunConfig

__all__ = [
    "apply_overrides",
    "config_path",
    "config_problems",
    "load_config",
    "read_checked_config",
    "read_config",
    "shipped_configs",
]

SCHEMA_FILE = Path(__file__).resolve().parent / "config_schema.json"

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


def read_checked_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """`read_config`, then every problem the schema can see raised at once (one `ConfigError`), before torch
    is imported."""
    raw = read_config(path, overrides)
    problems = config_problems(raw)
    if problems:
        raise ConfigError("\n".join(problems))  # one line per problem
    return raw


def load_config(path: str | os.PathLike, overrides: Sequence[str] = (), *, trust_code: bool = False) -> RunConfig:
    """Read and validate a run config: `read_checked_config`, then the full checks of
    `hf_ddb.config.parse_config` (methods named by import path only with ``trust_code``; a relative file path
    is read from the config's folder)."""
    from .config import parse_config

    raw = read_checked_config(path, overrides)
    return parse_config(raw, trust_code=trust_code, base_dir=config_path(path).parent)


def _fits(value: Any, kinds: list[str]) -> bool:
    """Whether a YAML value fits a schema type (no coercion; ints accepted for floats; NaN refused)."""
    for kind in kinds:
        if kind == "any":
            return True
        if kind == "none" and value is None:
            return True
        if kind == "bool" and isinstance(value, bool):
            return True
        if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if kind == "float" and isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return True
        if (kind == "str" and isinstance(value, str)) or (kind == "list" and isinstance(value, list)):
            return True
        if kind == "dict" and isinstance(value, dict):
            return True
    return False


def _kind_text(kinds: list[str]) -> str:
    return " or ".join(
        {"float": "float (finite)", "none": "None", "list": "a list", "dict": "a mapping"}.get(k, k) for k in kinds
    )


def _unknown(key: str, where: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean '{where}{close[0]}'?)" if close else f"; known: {sorted(known)}"
    return f"unknown key '{where}{key}'{hint}"


def _check_mapping(values: Any, where: str, fields: dict[str, list[str]], problems: list[str]) -> None:
    if values is None:
        return
    if not isinstance(values, dict):
        problems.append(f"'{where.rstrip('.')}' must be a mapping, got {type(values).__name__}")
        return
    for key, value in values.items():
        if key not in fields:
            problems.append(_unknown(str(key), where, list(fields)))
        elif not _fits(value, fields[key]):
            problems.append(f"'{where}{key}' must be {_kind_text(fields[key])}, got {value!r}")


def _check_choice(value: Any, where: str, choices: list[Any], problems: list[str]) -> None:
    if value is not None and value not in choices:
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(f"'{where}' is {value!r}{hint}; choose one of {choices}")


def config_problems(raw: Any, schema: dict[str, Any] | None = None) -> list[str]:
    """Every problem in a config mapping that its schema shows (unknown keys, wrong types, unknown names),
    each naming its key; empty when there is none. Deeper checks (ranges, data, models) come after."""
    schema = schema or json.loads(SCHEMA_FILE.read_text())
    if not isinstance(raw, dict):
        return ["a config must be a mapping of keys to values"]
    problems: list[str] = []
    sections = schema["sections"]
    top = {**schema["top"], **{name: ["dict", "none"] for name in sections}}
    _check_mapping({k: v for k, v in raw.items() if k not in sections}, "", top, problems)
    for name, fields in sections.items():
        if name in raw:
            _check_mapping(raw[name], f"{name}.", fields, problems)
    for key, choices in schema["choices"].items():
        section, _, leaf = key.rpartition(".")
        holder = raw.get(section) if section else raw
        if isinstance(holder, dict):
            _check_choice(holder.get(leaf), key, choices, problems)
    benchmark = raw.get("benchmark")
    if not isinstance(benchmark, dict) or "name" not in benchmark:
        problems.append("'benchmark' must be a mapping with a 'name'")
    elif benchmark["name"] not in schema["benchmarks"]:
        _check_choice(benchmark["name"], "benchmark.name", sorted(schema["benchmarks"]), problems)
    else:
        _check_mapping(benchmark, "benchmark.", schema["benchmarks"][benchmark["name"]], problems)
    methods = raw.get("methods", ["erm"])
    imported = isinstance(methods, list) and any(isinstance(m, str) and ":" in m for m in methods)
    if isinstance(methods, list):
        for method in methods:
            if isinstance(method, str) and ":" not in method and method not in schema["methods"]:
                close = difflib.get_close_matches(method, list(schema["methods"]), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(
                    f"'methods': unknown method {method!r}{hint}; built in: {sorted(schema['methods'])}, "
                    "or a method of your own as 'module:Class'"
                )
    options = raw.get("method_options")
    if isinstance(options, dict):
        for method, values in options.items():
            if method in schema["methods"]:
                _check_mapping(values, f"method_options.{method}.", schema["methods"][method], problems)
            elif not imported:
                problems.append(_unknown(str(method), "method_options.", list(schema["methods"])))
    problems += _huge_integers(raw)
    return problems


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
