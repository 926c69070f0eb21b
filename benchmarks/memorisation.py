"""Memorisation analysis, the paper's central claim: synthetic-trained vs real-trained bias models.

    python benchmarks/memorisation.py --ratio 0.01          # after benchmarks/quality.py made the synthetic set
    python benchmarks/memorisation.py --ratio 0.05 --train-size 3000 --arch resnet18 --epochs 30 \
        --ba-loss gce --workdir runs/q32                    # the small-data regime

The same architecture is trained (a) on the synthetic bias-aligned images (the bias amplifier), (b) on the
real biased training set with CE and (c) with GCE; after every epoch the detection quality of its per-sample
loss on the REAL training set is measured (AUROC, precision@k, accuracy on aligned / conflicting samples).
Uses the synthetic set cached by ``benchmarks/quality.py`` under ``--workdir``. Prints a table and writes
``benchmarks/results/memorisation_<ratio>.json``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from results_io import write_results
from transformers import PreTrainedModel, TrainerCallback, TrainingArguments

from hf_ddb import TrainingConfig, build_classifier, load_benchmark
from hf_ddb.amplifier import (
    BiasAmplifierTrainer,
    at_model_size,
    bias_signals,
    detection_report,
    pseudo_bias_labels,
)
from hf_ddb.generation import load_synthetic_dataset
from hf_ddb.objectives import ERMObjective
from hf_ddb.trainer import DebiasTrainer


class _DetectionEachEpoch(TrainerCallback):
    def __init__(self, real_train: Dataset) -> None:
        self.real_train, self.history = real_train, []

    def on_epoch_end(self, args: TrainingArguments, state: Any, control: Any, model: Any = None, **kw: Any):
        model = model.target  # the Trainer's model is a DebiasModel
        signals = bias_signals(model, self.real_train)
        report = detection_report(signals, pseudo_bias_labels(signals), self.real_train)
        self.history.append({"epoch": round(state.epoch), **report})
        model.train()


def memorisation_analysis(
    real_train: Dataset,
    synthetic: Dataset,
    make_model: Callable[[], PreTrainedModel],
    args: TrainingArguments,
    *,
    gce_q: float = 0.7,
    synthetic_loss: str = "ce",
) -> dict[str, list[dict[str, Any]]]:
    """The paper's central claim, measured: does a model trained on real biased data memorise the conflicting samples?

    Trains the same architecture (``make_model``) three ways and, after every epoch, reports how well its
    per-sample loss finds the bias-conflicting samples of the REAL training set (AUROC, precision@k, and
    its accuracy on aligned vs conflicting samples): (a) ``synthetic_<synthetic_loss>``, the bias amplifier
    on synthetic images; (b) ``real_ce`` and (c) ``real_gce`` on the real biased set itself. A model that
    memorises the conflicting samples fits them, so its detection quality falls as training goes on. Uses
    bias labels for the report only.
    """
    real_at_size = at_model_size(make_model(), real_train)  # the same resolution as the synthetic images
    runs = {
        f"synthetic_{synthetic_loss}": (synthetic, synthetic_loss),
        "real_ce": (real_at_size, "ce"),
        "real_gce": (real_at_size, "gce"),
    }
    results = {}
    for name, (data, loss) in runs.items():
        tracker = _DetectionEachEpoch(real_at_size)
        if data is synthetic:
            trainer = BiasAmplifierTrainer(make_model(), args, data, loss=loss, gce_q=gce_q, callbacks=[tracker])
        else:  # the real set: what the amplifier must never see, trained here only to measure memorisation
            objective = ERMObjective(loss_type=loss, gce_q=gce_q)
            trainer = DebiasTrainer(make_model(), args, data, objective, callbacks=[tracker])
        trainer.train()
        results[name] = tracker.history
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratio", type=float, default=0.01)
    parser.add_argument("--train-size", type=int, default=None, help="as benchmarks/quality.py's (small data)")
    parser.add_argument("--ba-loss", default="ce", choices=["ce", "gce"], help="the synthetic-trained model's loss")
    parser.add_argument("--arch", default="mlp")
    parser.add_argument("--epochs", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", default="runs/quality-run", help="quality.py's (the committed JSON: runs/quality)")
    args = parser.parse_args()
    start = time.time()
    torch.set_num_threads(args.threads)
    small = f"-n{args.train_size}" if args.train_size else ""
    cell = Path(args.workdir) / f"colored_mnist-{args.ratio:g}{small}"
    candidates = [cell / "synthetic" / "dataset", cell / "seed0" / "synthetic" / "dataset"]  # before / with Run
    synthetic_dir = next((folder for folder in candidates if folder.is_dir()), None)
    if synthetic_dir is None:
        raise SystemExit(f"no synthetic set in {cell}; run benchmarks/quality.py --ratios {args.ratio:g} first")
    synthetic = load_synthetic_dataset(synthetic_dir)
    options = {"train_size": args.train_size} if args.train_size else {}
    real = load_benchmark("colored_mnist", conflict_ratio=args.ratio, **options)["train"]
    names = dict(enumerate(real.features["label"].names))
    size = synthetic[0]["image"].width  # the amplifier's resolution

    def make() -> PreTrainedModel:
        return build_classifier(args.arch, names, image_size=size, seed=args.seed)[0]

    training = TrainingConfig(epochs=args.epochs, batch_size=128, learning_rate=1e-3, seed=args.seed)
    trainer_args = training.to_training_arguments("runs/memorisation", disable_tqdm=True, logging_strategy="no")
    results = memorisation_analysis(real, synthetic, make, trainer_args, synthetic_loss=args.ba_loss)
    print("\n| model | epoch | AUROC | precision@k | acc aligned | acc conflicting |\n|---|---|---|---|---|---|")
    for name, history in results.items():
        for row in history:
            print(
                f"| {name} | {row['epoch']} | {row['auroc']:.3f} | {row['precision_at_k']:.3f} | "
                f"{100 * row['ba_accuracy_aligned']:.1f} | {100 * row['ba_accuracy_conflicting']:.1f} |"
            )
    write_results(
        f"benchmarks/results/memorisation_{args.ratio:g}{small}.json", "memorisation.py", args, start, results=results
    )


if __name__ == "__main__":
    main()
