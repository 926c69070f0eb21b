"""Value checks shared by the config dataclasses: each raises `ValueError` naming the setting, so a bad value
fails when the object is built (before any work), never silently coerced. NaN and infinities are refused."""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

__all__ = ["LIMITS", "DatasetValidationError", "check_choice", "check_integer", "check_number"]

# Upper bounds on what a user sets, far above any real run but low enough that a typo (an extra three zeros)
# fails at validation instead of hanging or filling the disk hours later. One place, so they are stated once.
LIMITS = {
    "epochs": 10_000,
    "batch_size": 65_536,
    "steps": 10_000_000,  # optimisation steps (diffusion, BiasEnsemble's committee)
    "images_per_class": 1_000_000,  # about 2.3 h per million 8 px images on 2 CPU cores (3,000 took 25 s)
    "inference_steps": 1_000,
    "resolution": 1_024,
    "workers": 256,
    "memory_gb": 65_536,
    "models": 100,  # models trained per method (a committee)
    "channels": 4_096,  # a UNet block's width
    "layers": 64,  # a UNet's levels, layers per block
    "seed": 2**32 - 1,  # numpy's seeds
    "integer": 2**32 - 1,  # any other integer a config holds (class ids, model arguments, method options)
}


def check_number(
    name: str, value: Any, *, low: float | None = None, high: float | None = None, low_open: bool = False
) -> None:
    """A finite real number (not a bool) in [low, high] (``(low, high]`` with ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    if too_low or (high is not None and value > high):
        left = "(" if low_open else "["
        bounds = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        raise ValueError(f"{name} must be in {bounds}, got {value!r}")


def check_integer(name: str, value: Any, *, low: int | None = None, high: int | None = None, note: str = "") -> None:
    """An integer (not a bool, not a float such as 1.7) in [low, high]; ``note`` (e.g. what a value costs) is
    added to the message."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"[{low}, {'inf' if high is None else high}]"
        raise ValueError(f"{name} must be an integer in {bounds}, got {value!r}{f' ({note})' if note else ''}")


def check_choice(name: str, value: Any, choices: Collection[Any]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices, key=str)}, got {value!r}")


class ConfigError(ValueError):
    """A config is invalid; the message names the offending key."""


class DatasetValidationError(ValueError):
    """A dataset does not have the shape hf-ddb needs; the message names the problem."""
