"""Choosing the bias amplifier's defaults by measurement: architecture, loss, synthetic count, pseudo-label rule.

    python benchmarks/amplifier_ablation.py \
        --synthetic 16px-5000=runs/quality/colored_mnist-0.01/synthetic/dataset \
        --synthetic 8px-2000=runs/colored_mnist/synthetic/dataset

The synthetic sets come from ``benchmarks/quality.py --ratios 0.01`` (16 px ``cpu`` generator, 5,000 steps)
and ``hf-ddb train-amplifier pipelines/colored_mnist.yaml`` (8 px ``demo`` generator, 2,000 steps), both
with 300 images per class (DPM-Solver++-20, w = 1) on colored_mnist at 1%.

Part 1, detection (cheap): for every synthetic set, per-class count, BA architecture and loss, a BA is trained
(seeds ``--seeds``) and scored on the REAL training set: AUROC, average precision and precision@k of its loss,
and precision/recall of each pseudo-label rule (bias labels used for this report only).
Part 2, debiasing (``--debias``): DDB-I with each rule and DDB-II with each BA variant on the default set,
seed 0, LfF's MLP, 10 epochs, selection by validation accuracy; unbiased test accuracy.
Every row is cached under ``--workdir``. Prints tables and writes ``--output``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from results_io import cached, write_results

from hf_ddb import TrainingConfig, build_classifier, evaluate_groups, load_benchmark
from hf_ddb.amplifier import (
    AmplifierConfig,
    bias_signals,
    detection_report,
    pseudo_bias_labels,
    train_bias_amplifier,
)
from hf_ddb.recipes import DDBEndToEnd, DDBTwoStep, train_with_recipe

RULES = ("misclassified", "loss_mixture", "top_fraction")
VARIANTS = {"mlp-ce": ("mlp", "ce"), "mlp-gce": ("mlp", "gce"), "resnet-ce": ("test_resnet", "ce")}


def per_class_subset(dataset: Dataset, count: int) -> Dataset:
    """The first ``count`` images of every class (generation order, so nested subsets)."""
    labels = np.asarray(dataset["label"])
    keep = np.concatenate([np.flatnonzero(labels == c)[:count] for c in np.unique(labels)])
    return dataset.select(np.sort(keep))


def train_amplifier(synthetic: Dataset, names: dict, variant: str, seed: int, workdir: Path):
    arch, loss = VARIANTS[variant]
    settings = AmplifierConfig(architecture=arch, loss=loss, epochs=10.0, seed=seed)
    class_names = [names[i] for i in range(len(names))]
    return train_bias_amplifier(synthetic, class_names, settings, workdir / "ba", fidelity=False, progress_bar=False)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic", action="append", required=True, help="NAME=PATH of a synthetic dataset")
    parser.add_argument("--counts", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--debias", action="store_true", help="also part 2 (about 10 min per seed)")
    parser.add_argument("--debias-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--debias-variants", nargs="+", default=None, help="BA variants for DDB-II")
    parser.add_argument("--rules", nargs="+", default=list(RULES), help="pseudo-label rules for DDB-I")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", default="runs/amplifier_ablation")
    parser.add_argument("--output", default="benchmarks/results/amplifier_ablation_0.01.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start, workdir = time.time(), Path(args.workdir)
    data = load_benchmark("colored_mnist", conflict_ratio=0.01)
    names = dict(enumerate(data["train"].features["label"].names))
    sources = dict(item.split("=", 1) for item in args.synthetic)
    detection: dict[str, list[dict]] = {}
    for source, path in sources.items():
        full = Dataset.load_from_disk(path)
        for count in args.counts:
            subset = per_class_subset(full, count)
            for variant in args.variants:
                key = f"{source}/{count}/{variant}"
                rows = []
                for seed in args.seeds:

                    def measure(subset=subset, variant=variant, seed=seed, key=key) -> dict:
                        amplifier = train_amplifier(subset, names, variant, seed, workdir / key)
                        signals = bias_signals(amplifier, data["train"])
                        report = {"seed": seed}
                        for rule in RULES:
                            flags = pseudo_bias_labels(signals, rule)
                            report[rule] = detection_report(signals, flags, data["train"])
                        return report

                    rows.append(cached(workdir / key / f"detection_seed{seed}.json", measure))
                detection[key] = rows
                auroc = [r["misclassified"]["auroc"] for r in rows]
                print(f"{key}: AUROC {np.mean(auroc):.3f} ± {np.std(auroc):.3f}", flush=True)

    def mean_std(values: list[float], scale: float = 1.0, digits: int = 3) -> str:
        array = scale * np.asarray(values, dtype=float)
        return f"{array.mean():.{digits}f} ± {array.std():.{digits}f}"

    print("\n| synthetic set | images/class | BA | AUROC | AP | precision@k | BA acc aligned | BA acc conflicting |")
    print("|---|---|---|---|---|---|---|---|")
    for key, rows in detection.items():
        source, count, variant = key.split("/")
        m = [r["misclassified"] for r in rows]
        print(
            f"| {source} | {count} | {variant} | {mean_std([x['auroc'] for x in m])} | "
            f"{mean_std([x['average_precision'] for x in m])} | {mean_std([x['precision_at_k'] for x in m])} | "
            f"{mean_std([x['ba_accuracy_aligned'] for x in m], 100, 1)} | "
            f"{mean_std([x['ba_accuracy_conflicting'] for x in m], 100, 1)} |"
        )
    print("\nPseudo-label rules (precision / recall / flagged), per synthetic set, 300 images/class, mlp-ce BA:\n")
    print("| synthetic set | " + " | ".join(RULES) + " |\n|---|" + "---|" * len(RULES))
    for source in sources:
        rows = detection.get(f"{source}/300/mlp-ce", [])
        cells = [
            f"{np.mean([r[rule]['precision'] for r in rows]):.2f} / {np.mean([r[rule]['recall'] for r in rows]):.2f}"
            f" / {np.mean([r[rule]['num_flagged'] for r in rows]):.0f}"
            for rule in RULES
        ]
        if rows:
            print(f"| {source} | " + " | ".join(cells) + " |")
    debias: dict[str, dict] = {}
    if args.debias:
        source = next(iter(sources))
        synthetic = per_class_subset(Dataset.load_from_disk(sources[source]), 300)
        runs = [(f"ddb_i/{rule}/mlp-ce", "ddb_i", rule, "mlp-ce") for rule in args.rules]
        runs += [
            (f"ddb_ii/misclassified/{v}", "ddb_ii", "misclassified", v) for v in args.debias_variants or args.variants
        ]
        for key, method, rule, variant in runs:
            debias[key] = []
            for seed in args.debias_seeds:

                def run(method=method, rule=rule, variant=variant, key=key, seed=seed) -> dict:
                    folder = workdir / "debias" / key / f"seed{seed}"
                    training = TrainingConfig(epochs=10, batch_size=256, learning_rate=1e-3, seed=seed)
                    amplifier = train_amplifier(synthetic, names, variant, seed, folder)
                    if method == "ddb_i":
                        recipe = DDBTwoStep(amplifier=amplifier, rule=rule)
                    else:  # LfF's weights, as this ablation measured them (before issue 15's default)
                        recipe = DDBEndToEnd(amplifier=amplifier, rule=rule, weighting="lff")
                    make = lambda: build_classifier("mlp", names, image_size=28, seed=seed)[0]  # noqa: E731
                    model, info = train_with_recipe(recipe, data, make, training, str(folder))
                    metrics = evaluate_groups(model, data["test"])
                    return {"seed": seed, "info": info, "test": {k: v for k, v in metrics.items() if k != "per_group"}}

                result = cached(workdir / "debias" / key / f"seed{seed}" / "result.json", run)
                debias[key].append(result)
                print(
                    f"{source} {key} seed {seed}: unbiased {100 * result['test']['unbiased_accuracy']:.1f}", flush=True
                )
        print(f"\nDebiasing with the {source} set, 300 images/class, seeds {args.debias_seeds} (test split, %):\n")
        print("| method | rule | BA | unbiased acc | worst-group acc |\n|---|---|---|---|---|")
        for key, results in debias.items():
            method, rule, variant = key.split("/")
            unbiased = mean_std([r["test"]["unbiased_accuracy"] for r in results], 100, 1)
            worst = mean_std([r["test"]["worst_group_accuracy"] for r in results], 100, 1)
            print(f"| {method} | {rule} | {variant} | {unbiased} | {worst} |")
    command = (
        "python benchmarks/amplifier_ablation.py "
        + " ".join(f"--synthetic {k}={v}" for k, v in sources.items())
        + f" --counts {' '.join(map(str, args.counts))} --variants {' '.join(args.variants)}"
        + f" --seeds {' '.join(map(str, args.seeds))} --threads {args.threads} --workdir {args.workdir}"
        + f" --output {args.output}"
        + (
            f" --debias --debias-seeds {' '.join(map(str, args.debias_seeds))} --rules {' '.join(args.rules)}"
            if args.debias
            else ""
        )
    )
    write_results(
        args.output, "amplifier_ablation.py", args, start, command=command, detection=detection, debias=debias
    )


if __name__ == "__main__":
    main()
