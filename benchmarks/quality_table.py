"""One markdown table from the per-ratio JSON files of ``benchmarks/quality.py`` (the README's quality table).

    python benchmarks/quality_table.py benchmarks/results/quality_colored_mnist_0.01.json ...

Mean ± std over seeds, test split, %. The second table compares selection rules on the same runs
(each rule picks an epoch from validation numbers; the test numbers are read afterwards).
"""

from __future__ import annotations

import argparse
import json
import re

import numpy as np

METHOD_NAMES = {
    "erm": "ERM",
    "jtt": "JTT",
    "lff": "LfF",
    "disent": "DFA (DisEnt)",
    "bias_ensemble": "BiasEnsemble (+ LfF)",
    "fg_ccdb": "FG-CCDB (real-data bias model)",
    "ddb_i_real": "DDB-I recipe, real-data bias model (no diffusion)",
    "ddb_ii_real": "DDB-II recipe, real-data bias model (no diffusion)",
    "ddb_i": "**DDB-I**",
    "ddb_ii": "**DDB-II**",
    "ddb_i_paper": "DDB-I as published ((class, flagged) GroupDRO)",
    "ddb_ii_paper": "DDB-II as published (LfF's weights, frozen amplifier)",
    "ddb_i_flag": "DDB-I, (class, flagged) groups",
    "ddb_i_flag_uniform": "DDB-I as in 0.4.0: (class, flagged) groups, uniform batches, C = 0",
    "ddb_i_balanced": "DDB-I, group-balanced batches (0.4.0's groups)",
    "ddb_ii_lff": "DDB-II, LfF's weights (the paper's)",
    "ddb_ii_floor": "DDB-II, floor = flagged share",
    "ddb_ii_class": "DDB-II, class-normalised weights",
    "ddb_ii_group": "DDB-II, pseudo-group-balanced weights",
    "ddb_ii_group_floor": "DDB-II, floor, then pseudo-group-balanced (0.4.0's default)",
    "ddb_ii_cell": "DDB-II, cell weights",
    "ddb_ii_confidence": "DDB-II, confidence weights (AFR)",
    "groupdro_oracle_tuned": "GroupDRO oracle (bias labels), at its 1% tuned setting",
    "groupdro_oracle": "GroupDRO oracle (bias labels)",
    "groupdro_oracle_uniform": "GroupDRO oracle, uniform batches, untuned (as before 0.2.0)",
}
RULES = ("valid_accuracy", "valid_worst_pseudo_group", "valid_mean_pseudo_group", "last")
DETECTION = ("auroc", "precision", "recall")  # of the real bias-conflicting training samples


def cell(values: list[float], scale: float = 100, digits: int = 1) -> str:
    """Mean ± sample standard deviation over seeds; accuracies as %, detection metrics as fractions (scale 1)."""
    array = scale * np.asarray(values, dtype=float)
    if len(array) > 1:
        return f"{array.mean():.{digits}f} ± {array.std(ddof=1):.{digits}f}"  # sample std over seeds
    return f"{array.mean():.{digits}f}"


def ratio_label(benchmark: str, ratio: str) -> str:
    """``0.01`` -> ``1%`` (colored_mnist: bias-conflicting share); background_mnist: ``99% aligned``; other
    benchmarks are named: ``corrupted_mnist 1%``."""
    percent = f"{100 * float(ratio):g}%"
    if benchmark == "background_mnist":
        return f"{benchmark} {percent} aligned"
    return percent if benchmark == "colored_mnist" else f"{benchmark} {percent}"


def test_metrics(run: dict, rule: str) -> dict:
    """The run's test metrics at the epoch ``rule`` picks (``selected``: what the run itself selected)."""
    return run["by_selection"][rule] if rule != "selected" else run["test"]


def metric_cell(runs: list[dict], rule: str, key: str) -> str:
    values = [test_metrics(r, rule).get(key) for r in runs]
    return cell(values) if None not in values else "–"  # older runs did not record every metric per epoch


def print_tables(blocks: list[tuple[str, dict]], rule: str = "last") -> None:
    """The quality table (test metrics at the epoch ``rule`` picks) and the selection-rule table."""
    print(f"Test metrics at the epoch chosen by `{rule}`:\n")
    print(
        "| ratio | method | unbiased acc | worst-group acc | aligned acc | conflicting acc "
        "| detector AUROC / precision / recall | seeds |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for ratio, block in blocks:
        for method, runs in block["methods"].items():
            metrics = [
                metric_cell(runs, rule, k)
                for k in ("unbiased_accuracy", "worst_group_accuracy", "aligned_accuracy", "conflicting_accuracy")
            ]
            if method.startswith("ddb"):  # the bias amplifier's detection (one BA per seed)
                detections = block["ba_detection"]
            else:  # LfF's co-trained bias model, BiasEnsemble's committee
                detections = [r["bias_model_detection"] for r in runs if "bias_model_detection" in r]
            shown = " / ".join(cell([d[k] for d in detections], 1, 3) for k in DETECTION) if detections else "–"
            name = METHOD_NAMES.get(method, method)
            print(f"| {ratio} | {name} | " + " | ".join(metrics) + f" | {shown} | {len(runs)} |")
    print("\nUnbiased test accuracy by selection rule (same runs; the test numbers are read after selection):\n")
    print("| ratio | method | " + " | ".join(RULES) + " |\n|---|---|" + "---|" * len(RULES))
    for ratio, block in blocks:
        for method, runs in block["methods"].items():
            if runs and all("by_selection" in r for r in runs):
                cells = [
                    cell([r["by_selection"][rule]["unbiased_accuracy"] for r in runs])
                    if all(rule in r["by_selection"] for r in runs)
                    else "–"
                    for rule in RULES
                ]
                print(f"| {ratio} | {METHOD_NAMES.get(method, method)} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+")
    parser.add_argument(
        "--rule",
        default="last",
        choices=["selected", *RULES],
        help="the epoch whose test metrics the first table shows (selected: the run's own selection rule)",
    )
    args = parser.parse_args()
    infos = [json.loads(open(path).read()) for path in args.files]
    blocks = []
    for info in infos:
        benchmark = re.search(r"--benchmark (\S+)", info["command"]).group(1)
        blocks += [(ratio_label(benchmark, ratio), block) for ratio, block in info["results"].items()]
    print_tables(blocks, args.rule)
    print()
    for info in infos:
        print(f"- `{info['command']}`: {info['wall_seconds']} s, {info['machine']}")


if __name__ == "__main__":
    main()
