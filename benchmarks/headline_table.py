"""The README's headline table from the quality benchmark's JSON files: unbiased test accuracy (last epoch,
mean ± sample standard deviation over seeds) of ERM, LfF, the best other unsupervised baseline, the best
method without diffusion that runs DDB's recipes on a real-data bias model, DDB-I, DDB-II and the GroupDRO
oracle, one row per benchmark and ratio.

    python benchmarks/headline_table.py benchmarks/results/quality_*_0.*.json \
        --fill-from benchmarks/results/v0.4/quality_background_mnist_0.99_baselines.json ...
    python benchmarks/headline_table.py --full benchmarks/results/quality_colored_mnist_0.0*.json

``--full``: every method of each file, one row each: unbiased accuracy at the last epoch and at the epoch
the run selected (``selection: auto``), and worst-group, aligned and conflicting accuracy at the last epoch.

A method missing from a file is taken from a ``--fill-from`` file of the same benchmark and ratio, and marked
with a dagger: only for methods whose last-epoch numbers do not depend on the generator (the baselines, the
real-data competitors, the oracle), which is why the quality benchmark did not re-run them there. Where the
run's generator check (`hf_ddb.amplifier.generator_fidelity`, judged by the current rule) warned in any seed,
the run reports DDB's rows as not a debiasing result, and the headline shows no number for them (a double
dagger; the full table keeps them).
"""

from __future__ import annotations

import argparse
import json
import re

import numpy as np
from generator_check import warns
from quality_table import METHOD_NAMES, cell, ratio_label, test_metrics

OTHERS = ("jtt", "disent", "bias_ensemble")
REAL_DATA = ("fg_ccdb", "ddb_ii_real", "ddb_i_real")  # DDB's recipes on a real-data bias model: no diffusion
ORACLES = ("groupdro_oracle_tuned", "groupdro_oracle")
GENERATOR_FREE = ("erm", "lff", *OTHERS, *REAL_DATA, *ORACLES)  # methods a --fill-from file may supply
SHORT_NAMES = {
    "jtt": "JTT",
    "disent": "DFA",
    "bias_ensemble": "BiasEnsemble",
    "fg_ccdb": "FG-CCDB",
    "ddb_ii_real": "DDB-II recipe",
    "ddb_i_real": "DDB-I recipe",
}


def blocks(path: str) -> dict[tuple[str, str], dict]:
    """A quality JSON's blocks by (benchmark, ratio): each with its ``methods`` and ``ba_detection``."""
    info = json.loads(open(path).read())
    benchmark = re.search(r"--benchmark (\S+)", info["command"]).group(1)
    return {(benchmark, ratio): block for ratio, block in info["results"].items()}


def generator_warned(block: dict) -> bool:
    """Whether the generator check warns, by the current rule, for any seed's amplifier of ``block``."""
    return any(warns(a["fidelity"]) for a in block.get("ba_detection", []) if "fidelity" in a)


def unbiased(runs: list[dict]) -> list[float]:
    return [test_metrics(run, "last")["unbiased_accuracy"] for run in runs]


def print_full(files: list[str]) -> None:
    print(
        "| ratio | method | unbiased, last epoch | unbiased, `auto` selection | worst-group, last | aligned, last "
        "| conflicting, last |\n|---|---|---|---|---|---|---|"
    )
    for path in files:
        for (benchmark, ratio), block in blocks(path).items():
            label = ratio_label(benchmark, ratio)
            for method, runs in block["methods"].items():
                cells = [cell(unbiased(runs)), cell([run["test"]["unbiased_accuracy"] for run in runs])]
                cells += [
                    cell([test_metrics(run, "last")[key] for run in runs])
                    for key in ("worst_group_accuracy", "aligned_accuracy", "conflicting_accuracy")
                ]
                print(f"| {label} | {METHOD_NAMES.get(method, method)} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+")
    parser.add_argument("--fill-from", nargs="*", default=[], help="older JSONs for generator-free methods")
    parser.add_argument("--full", action="store_true", help="every method, five metrics (the results page)")
    args = parser.parse_args()
    if args.full:
        print_full(args.files)
        return
    fills: dict[tuple[str, str], dict] = {}
    for path in args.fill_from:
        for key, block in blocks(path).items():
            fills.setdefault(key, {}).update(block["methods"])
    print(
        "| benchmark | ERM | LfF | best other baseline | best real-data bias model, no diffusion | **DDB-I** "
        "| **DDB-II** | GroupDRO oracle (bias labels) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for path in args.files:
        for (benchmark, ratio), block in blocks(path).items():
            ddb_mark = " ‡" if generator_warned(block) else ""
            filled = {m: (runs, ddb_mark if m in ("ddb_i", "ddb_ii") else "") for m, runs in block["methods"].items()}
            for method, runs in fills.get((benchmark, ratio), {}).items():
                if method in GENERATOR_FREE and method not in filled:
                    filled[method] = (runs, " †")

            def shown(method: str, filled: dict = filled) -> str:
                if method not in filled:
                    return "–"
                runs, mark = filled[method]
                return "– ‡" if mark == " ‡" else cell(unbiased(runs)) + mark

            def best_of(methods: tuple[str, ...], filled: dict = filled) -> str:
                present = [m for m in methods if m in filled]
                best = max(present, key=lambda m: np.mean(unbiased(filled[m][0])), default=None)
                return f"{shown(best)} ({SHORT_NAMES[best]})" if best else "–"

            oracle = next((m for m in ORACLES if m in filled), None)
            row = [shown("erm"), shown("lff"), best_of(OTHERS), best_of(REAL_DATA)]
            row += [shown("ddb_i"), shown("ddb_ii"), shown(oracle or "")]
            label = (
                f"{100 * float(ratio):g}% aligned"
                if benchmark == "background_mnist"
                else ratio_label("colored_mnist", ratio)
            )
            print(f"| {benchmark} {label} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
