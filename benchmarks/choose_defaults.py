"""Defaults chosen without reading test: candidates ranked by a label-free score on valid, confirmed once.

    python benchmarks/choose_defaults.py \\
        --dev benchmarks/results/quality_colored_mnist_competitors.json \\
        --confirm benchmarks/results/quality_colored_mnist_small.json \\
        --choice weighting=ddb_ii,ddb_ii_paper --choice groups=ddb_i,ddb_i_paper

The protocol (docs/results, "How defaults are chosen"). A *choice* is one default and its candidates, each a
method row of `benchmarks/quality.py` (``ddb_ii`` is ``weighting: cell`` with (class, predicted class) groups,
``ddb_ii_paper`` LfF's weights with (class, flagged) groups). A candidate's score is its **label-free score**
(mean accuracy over the run's own pseudo groups on ``valid``, the amplifier's (class, predicted class) groups,
the same for every method of a run) at the epoch ``selection: auto`` keeps, averaged over the seeds, ratios
and runs of the development benchmarks (``--dev``). No bias label and no test number enters the ranking. The
best-scoring candidate is the default. Then, once, the test numbers of every candidate on the confirmation
benchmark (``--confirm``, a benchmark never used for choosing) are shown beside the choice. Prints a table and
writes ``benchmarks/results/choose_defaults.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from quality import LABEL_FREE_SCORE  # benchmarks/ is on sys.path when this script runs
from results_io import write_results

AUTO = "valid_mean_pseudo_group"  # the rule `selection: auto` means in a run with an amplifier


def _runs(paths: list[str], method: str) -> list[dict]:
    """Every (ratio, seed) run of ``method`` in the quality JSONs at ``paths``."""
    runs = []
    for path in paths:
        for block in json.loads(Path(path).read_text())["results"].values():
            runs += block["methods"].get(method, [])
    return runs


def label_free_score(runs: list[dict]) -> float | None:
    """Mean label-free score at the epoch `auto` keeps; None when a run did not record it."""
    scores = [run["by_selection"][AUTO].get(LABEL_FREE_SCORE) for run in runs if AUTO in run["by_selection"]]
    if not scores or any(score is None for score in scores) or len(scores) < len(runs):
        return None
    return float(np.mean(scores))


def test_accuracy(runs: list[dict], rule: str) -> tuple[float, float] | None:
    values = [run["by_selection"][rule]["unbiased_accuracy"] for run in runs if rule in run["by_selection"]]
    if not values:
        return None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def choose(dev: list[str], confirm: list[str], choices: dict[str, list[str]]) -> dict[str, dict]:
    """Each choice's candidates with their label-free dev score, the chosen one, and the confirmation's test."""
    outcome = {}
    for name, candidates in choices.items():
        rows = {}
        for method in candidates:
            dev_runs, confirm_runs = _runs(dev, method), _runs(confirm, method)
            rows[method] = {
                "dev_runs": len(dev_runs),
                "dev_label_free_score": label_free_score(dev_runs),
                "confirm_runs": len(confirm_runs),
                "confirm_test_auto": test_accuracy(confirm_runs, AUTO),
                "confirm_test_last": test_accuracy(confirm_runs, "last"),
            }
        scored = {m: row["dev_label_free_score"] for m, row in rows.items() if row["dev_label_free_score"] is not None}
        chosen = max(scored, key=scored.get) if len(scored) == len(candidates) else None
        outcome[name] = {"candidates": rows, "chosen": chosen}
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dev", nargs="+", required=True, help="quality JSONs of the development benchmarks")
    parser.add_argument("--confirm", nargs="*", default=[], help="quality JSONs of the confirmation benchmark")
    parser.add_argument(
        "--choice", action="append", required=True, help="NAME=method,method,...: one default's candidates"
    )
    parser.add_argument("--output", default="benchmarks/results/choose_defaults.json")
    args = parser.parse_args()
    start = time.time()
    choices = {}
    for text in args.choice:
        name, _, methods = text.partition("=")
        if not methods:
            raise SystemExit(f"--choice {text!r}: write NAME=method,method")
        choices[name] = methods.split(",")
    outcome = choose(args.dev, args.confirm, choices)

    def pct(value: tuple[float, float] | None) -> str:
        return f"{100 * value[0]:.1f} ± {100 * value[1]:.1f}" if value else "–"

    print("| choice | candidate | dev label-free score (runs) | chosen | confirmation test, `auto` | last epoch |")
    print("|---|---|---|---|---|---|")
    for name, block in outcome.items():
        for method, row in block["candidates"].items():
            score = row["dev_label_free_score"]
            shown = f"{100 * score:.1f} ({row['dev_runs']})" if score is not None else f"– ({row['dev_runs']})"
            mark = "**yes**" if block["chosen"] == method else ""
            print(
                f"| {name} | {method} | {shown} | {mark} | {pct(row['confirm_test_auto'])} | "
                f"{pct(row['confirm_test_last'])} |"
            )
    write_results(args.output, "choose_defaults.py", args, start, results=outcome)


if __name__ == "__main__":
    main()
