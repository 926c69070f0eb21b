"""Compare two run folders stage by stage: cache keys, weights, synthetic images, signals and metrics.

    python scripts/compare_runs.py RUN_A RUN_B

For refactors that must not change results: run the same config into two folders (before and after the
change) and compare. Prints one row per stage and method; seconds are ignored, and what only B holds (new
signals or metrics) is listed, the rest compared.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file

from hf_ddb.generation import load_synthetic_dataset


def _weights(folder: Path) -> dict[str, np.ndarray]:
    return {
        f"{path.relative_to(folder)}:{name}": value
        for path in sorted(folder.rglob("*.safetensors"))
        for name, value in load_file(path).items()
    }


def _same_weights(a: Path, b: Path) -> str:
    wa, wb = _weights(a), _weights(b)
    same = wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)
    return f"weights identical: {same} ({len(wa)} tensors)"


def _key(folder: Path) -> str | None:
    path = folder / "stage.json"
    return json.loads(path.read_text())["key"] if path.is_file() else None


def _without_seconds(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_seconds(v) for k, v in value.items() if k != "seconds"}
    return value


def _shared(a: Any, b: Any) -> tuple[bool, list[str]]:
    """Whether ``a`` and ``b`` agree on every key both hold (recursively), and the keys only ``b`` has."""
    if isinstance(a, dict) and isinstance(b, dict):
        same, added = True, sorted(set(b) - set(a))
        for key in set(a) & set(b):
            inner_same, inner_added = _shared(a[key], b[key])
            same &= inner_same
            added += [f"{key}.{k}" for k in inner_added]
        return same and set(a) <= set(b), added
    return a == b, []


def _images_digest(folder: Path) -> str:
    dataset = load_synthetic_dataset(folder)  # Parquet in the Hub's layout, or an older save_to_disk folder
    return hashlib.sha256(b"".join(image.tobytes() for image in dataset["image"])).hexdigest()


def compare(a: Path, b: Path) -> list[tuple[str, bool, str]]:
    """(stage, same key, what matched) for every stage both folders hold."""
    rows = []
    for stage in ("diffusion", "amplifier"):
        if (a / stage).is_dir() and (b / stage).is_dir():
            rows.append((stage, _key(a / stage) == _key(b / stage), _same_weights(a / stage, b / stage)))
    if (a / "synthetic" / "dataset").is_dir() and (b / "synthetic" / "dataset").is_dir():
        same = _images_digest(a / "synthetic" / "dataset") == _images_digest(b / "synthetic" / "dataset")
        rows.append(("generation", _key(a / "synthetic") == _key(b / "synthetic"), f"images identical: {same}"))
    if (a / "amplifier" / "signals.npz").is_file() and (b / "amplifier" / "signals.npz").is_file():
        with np.load(a / "amplifier" / "signals.npz") as sa, np.load(b / "amplifier" / "signals.npz") as sb:
            same = set(sa.files) <= set(sb.files) and all(np.array_equal(sa[k], sb[k]) for k in sa.files)
            added = sorted(set(sb.files) - set(sa.files))
        rows.append(("signals", True, f"identical: {same}" + (f"; added {added}" if added else "")))
    methods = sorted({p.name for p in (a / "methods").iterdir()} & {p.name for p in (b / "methods").iterdir()})
    for method in methods:
        fa, fb = a / "methods" / method, b / "methods" / method
        ma = _without_seconds(json.loads((fa / "metrics.json").read_text()))
        mb = _without_seconds(json.loads((fb / "metrics.json").read_text()))
        same, added = _shared(ma, mb)
        detail = f"{_same_weights(fa / 'model', fb / 'model')}, metrics identical: {same}"
        detail += f" (B adds {', '.join(sorted(added))})" if added else ""
        rows.append((method, _key(fa) == _key(fb), detail))
    return rows


def main() -> None:
    a, b = (Path(p) for p in sys.argv[1:3])
    print("| stage | same cache key | outputs |\n|---|---|---|")
    for stage, same_key, detail in compare(a, b):
        print(f"| {stage} | {same_key} | {detail} |")


if __name__ == "__main__":
    main()
