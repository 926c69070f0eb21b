"""The generator check (`hf_ddb.amplifier.generator_fidelity`) judged by the current rule on every amplifier of
the stored quality runs: does it warn where the amplifier did not find the bias-conflicting rows, and stay
silent where it did?

    python benchmarks/generator_check.py [--results DIR] [--output FILE]

The check reads no bias label (held-out synthetic accuracy, real-train accuracy, flagged share); the detection
AUROC (bias labels) is read here only to say which amplifiers carried the bias (AUROC >= 0.85, the bar the
results page uses). Prints one row per run and a summary; writes the rows and the summary as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import date
from pathlib import Path

from hf_ddb.amplifier import FIDELITY_GAP, FIDELITY_MAX_FLAGGED, generator_fidelity

CARRIED_AUROC = 0.85
NUM_CLASSES = 10  # every embedded benchmark


def judged(measured: dict) -> dict:
    """A stored generator check (a quality JSON's ``fidelity``) judged again by the current rule."""
    return generator_fidelity(measured["synthetic_heldout_accuracy"], measured["real_train_accuracy"], NUM_CLASSES)


def warns(measured: dict) -> bool:
    """Whether a stored generator check warns by the current rule."""
    return bool(judged(measured)["warnings"])


def rows(folder: Path) -> list[dict]:
    """One row per amplifier (benchmark, ratio, seed) of every ``quality_*.json`` under ``folder``."""
    found = []
    for path in sorted(folder.rglob("quality_*.json")):
        stored = json.loads(path.read_text())
        for ratio, block in stored["results"].items():
            for seed, amplifier in enumerate(block.get("ba_detection", [])):  # seeds 0, 1, 2 in order
                measured = amplifier.get("fidelity")
                if measured is None:  # written before the check existed
                    continue
                now = judged(measured)
                found.append(
                    {
                        "file": path.relative_to(folder).as_posix(),
                        "ratio": float(ratio),
                        "seed": seed,
                        "synthetic_heldout_accuracy": measured["synthetic_heldout_accuracy"],
                        "real_train_accuracy": measured["real_train_accuracy"],
                        "flagged_share": now["flagged_share"],
                        "auroc": amplifier["auroc"],
                        "warnings_when_run": len(measured.get("warnings", [])),
                        "warnings_now": len(now["warnings"]),
                    }
                )
    return found


def summary(found: list[dict]) -> dict:
    """How many amplifiers carried the bias (AUROC >= `CARRIED_AUROC`) and missed it, and how many of each the
    check warns about."""
    carried = [r for r in found if r["auroc"] >= CARRIED_AUROC]
    missed = [r for r in found if r["auroc"] < CARRIED_AUROC]
    return {
        "carried": len(carried),
        "carried_warned": sum(r["warnings_now"] > 0 for r in carried),
        "carried_max_flagged_share": max((r["flagged_share"] for r in carried), default=None),
        "missed": len(missed),
        "missed_warned": sum(r["warnings_now"] > 0 for r in missed),
        "missed_warned_when_run": sum(r["warnings_when_run"] > 0 for r in missed),
        "missed_min_flagged_share": min((r["flagged_share"] for r in missed), default=None),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/generator_check.json"))
    args = parser.parse_args()
    found = rows(args.results)
    print("| file | ratio | seed | held-out synthetic | real train | flagged | AUROC | warnings then | now |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in found:
        print(
            f"| {r['file']} | {r['ratio']:g} | {r['seed']} | {100 * r['synthetic_heldout_accuracy']:.1f} | "
            f"{100 * r['real_train_accuracy']:.1f} | {100 * r['flagged_share']:.1f} | {r['auroc']:.3f} | "
            f"{r['warnings_when_run']} | {r['warnings_now']} |"
        )
    result = summary(found)
    print(json.dumps(result, indent=2))
    record = {
        "command": "python benchmarks/generator_check.py",
        "date": date.today().isoformat(),
        "machine": platform.machine(),
        "rule": {"fidelity_gap": FIDELITY_GAP, "max_flagged_share": FIDELITY_MAX_FLAGGED},
        "carried_auroc": CARRIED_AUROC,
        "summary": result,
        "rows": found,
    }
    args.output.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
