"""Choosing the bias amplifier's defaults by measurement: architecture, loss, synthetic count, pseudo-label rule.

    python benchmarks/amplifier_ablation.py \
        --synthetic 16px-5000=runs/quality/colored_mnist-0.01/synthetic/dataset \
        --synthetic 8px-2000=runs/colored_mnist/synthetic/dataset

The synthetic sets come from ``benchmarks/quality.py --ratios 0.01`` (16 px ``cpu`` generator, 5,000 steps)
and ``hf-ddb train-amplifier pipelines/colored_mnist.yaml`` (8 px ``demo`` generator, 2,000 steps), both
with 300 images per class (DPM-Solver++-20, w = 1) on colored_mnist at 1%.

Detection: for every synthetic set, per-class count, BA architecture and loss, a BA is trained (seeds
``--seeds``, the library's step B, `hf_ddb.amplifier.train_bias_amplifier`) and scored on the REAL training
set: AUROC, average precision and precision@k of its loss, and precision/recall of each pseudo-label rule
(bias labels used for this report only). Debiasing with an amplifier setting is a run of the pipeline, so it
is measured by ``benchmarks/quality.py`` (``--methods ddb_i ddb_ii --rule R --ba-arch A --ba-loss L``), which
drives `hf_ddb.Run`. Every row is cached under ``--workdir``. Prints tables and writes ``--output``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from results_io import cached, write_results

from hf_ddb import load_benchmark
from hf_ddb.amplifier import (
    AmplifierConfig,
    bias_signals,
    detection_report,
    pseudo_bias_labels,
    train_bias_amplifier,
)
from hf_ddb.generation import load_synthetic_dataset

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
        full = load_synthetic_dataset(path)
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
        if not rows:
            continue
        cells = [
            f"{np.mean([r[rule]['precision'] for r in rows]):.2f} / {np.mean([r[rule]['recall'] for r in rows]):.2f}"
            f" / {np.mean([r[rule]['num_flagged'] for r in rows]):.0f}"
            for rule in RULES
        ]
        print(f"| {source} | " + " | ".join(cells) + " |")
    command = (
        "python benchmarks/amplifier_ablation.py "
        + " ".join(f"--synthetic {k}={v}" for k, v in sources.items())
        + f" --counts {' '.join(map(str, args.counts))} --variants {' '.join(args.variants)}"
        + f" --seeds {' '.join(map(str, args.seeds))} --threads {args.threads} --workdir {args.workdir}"
        + f" --output {args.output}"
    )
    write_results(args.output, "amplifier_ablation.py", args, start, command=command, detection=detection)


if __name__ == "__main__":
    main()
