"""What every benchmark script shares: the command line that reproduces it, the machine, per-item JSON caches
and the result file (``benchmarks/results/*.json``), written atomically."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from hf_ddb.utils import atomic_write_text


def command_line(script: str, args: argparse.Namespace) -> str:
    """``python benchmarks/<script> --key value ...`` from the parsed arguments (lists space-separated,
    flags only when set), so a result file says how to reproduce it."""
    parts = []
    for key, value in vars(args).items():
        if value is None or value is False:
            continue
        flag = f"--{key.replace('_', '-')}"
        if value is True:
            parts.append(flag)
        elif isinstance(value, list | tuple):
            parts.append(f"{flag} {' '.join(map(str, value))}")
        else:
            parts.append(f"{flag} {value}")
    return " ".join([f"python benchmarks/{script}", *parts])


def machine(threads: int | None = None) -> str:
    threads = torch.get_num_threads() if threads is None else threads
    return f"{platform.machine()}, {threads} threads, torch {torch.__version__}"


def cached(path: Path, compute: Callable[[], Any]) -> Any:
    """The JSON at ``path`` if a previous run wrote it, else ``compute()`` written there (atomically)."""
    if path.is_file():
        return json.loads(path.read_text())
    value = compute()
    atomic_write_text(path, json.dumps(value))
    return value


def write_results(
    path: str | Path, script: str, args: argparse.Namespace, started: float, command: str | None = None, **content: Any
) -> dict:
    """The result file: command (``command_line`` unless given), machine, wall seconds and ``content``."""
    info = {
        "command": command or command_line(script, args),
        "machine": machine(getattr(args, "threads", None)),
        "wall_seconds": round(time.time() - started, 1),
        **content,
    }
    atomic_write_text(Path(path), json.dumps(info, indent=2))
    print(f"\nwrote {path} ({info['wall_seconds']} s)", file=sys.stdout)
    return info
