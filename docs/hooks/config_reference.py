"""MkDocs hook: the configuration reference is generated from the config dataclasses at build time, so it
cannot drift from the code. A page's ``<!-- config-reference -->`` marker becomes one table per section."""

from __future__ import annotations

import dataclasses
import typing

MARKER = "<!-- config-reference -->"


def _type_name(annotation: typing.Any) -> str:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    return text.replace("typing.", "").replace("|", "\\|")


def _default(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return "required"
    if dataclasses.is_dataclass(value):
        return "see its section"
    return f"`{value!r}`".replace("|", "\\|")


def config_reference() -> str:
    from hf_ddb.config import RunConfig

    sections, lines = [], []
    for field in dataclasses.fields(RunConfig):
        if field.name == "method_imports":  # derived from `methods`, not a key
            continue
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            sections.append((field.name, type(default)))
        elif field.name == "selection":  # the dataclass holds the resolved rule; a config's default is `auto`
            lines.append(f"| `{field.name}` | {_type_name(field.type)} | `'auto'` |")
        else:
            lines.append(f"| `{field.name}` | {_type_name(field.type)} | {_default(field)} |")
    out = ["### Top level", "", "| key | type | default |", "|---|---|---|", *lines, ""]
    for name, cls in sections:
        out += [f"### `{name}` ({cls.__module__}.{cls.__name__})", "", "| key | type | default |", "|---|---|---|"]
        for field in dataclasses.fields(cls):
            if field.name.startswith("_"):
                continue
            out.append(f"| `{name}.{field.name}` | {_type_name(field.type)} | {_default(field)} |")
        out.append("")
    return "\n".join(out)


def on_page_markdown(markdown: str, **_: typing.Any) -> str:
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, config_reference())
    return markdown
