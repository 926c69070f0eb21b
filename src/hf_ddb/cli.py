"""The ``hf-ddb`` command line: ``hf-ddb run CONFIG`` runs a benchmark from a YAML config.

Stage subcommands (``train-diffusion``, ``generate``) run one stage and also work on several processes:
``accelerate launch -m hf_ddb.cli train-diffusion CONFIG`` (or ``torchrun --nproc-per-node N -m hf_ddb.cli``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import ConfigError, RunConfig, load_config

__all__ = ["format_table", "generate_stage", "main", "run", "train_diffusion_stage"]

TABLE_COLUMNS = [
    ("accuracy", "avg acc"),
    ("unbiased_accuracy", "unbiased acc"),
    ("worst_group_accuracy", "worst-group acc"),
    ("aligned_accuracy", "aligned acc"),
    ("conflicting_accuracy", "conflicting acc"),
]


def format_table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Markdown table, one row per (method, split), accuracies in percent."""
    header = "| method | split | " + " | ".join(title for _, title in TABLE_COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(TABLE_COLUMNS) + 2)]
    for method, splits in results.items():
        for split, metrics in splits.items():
            cells = ["–" if metrics.get(key) is None else f"{100 * metrics[key]:.1f}" for key, _ in TABLE_COLUMNS]
            lines.append(f"| {method} | {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(config: RunConfig) -> dict[str, Any]:
    """Train every configured method on the benchmark and evaluate it on ``valid`` and ``test``.

    Writes ``results.json`` and each trained model (loadable with ``pipeline("image-classification")``)
    into ``config.output_dir``.
    """
    from .data import load_benchmark
    from .models import build_classifier, save_classifier
    from .training import evaluate_groups, train_erm

    start = time.time()
    output_dir = Path(config.output_dir)
    dataset = load_benchmark(config.benchmark_name, **config.benchmark_options)
    names = dataset["train"].features["label"].names
    image_size = dataset["train"][0]["image"].width
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for method in config.methods:
        model, processor = build_classifier(
            config.classifier.architecture,
            dict(enumerate(names)),
            image_size=image_size,
            image_mean=config.classifier.image_mean,
            image_std=config.classifier.image_std,
            model_args=config.classifier.model_args,
            seed=config.training.seed,
        )
        args = config.training.to_training_arguments(output_dir / method / "trainer")
        train_erm(model, dataset["train"], args)
        save_classifier(model, processor, output_dir / method / "model")
        results[method] = {split: evaluate_groups(model, dataset[split]) for split in ("valid", "test")}
    report = {"config": config.to_dict(), "results": results, "wall_time_s": round(time.time() - start, 1)}
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").write_text(json.dumps(report, indent=2))
    return report


def train_diffusion_stage(config: RunConfig) -> Path:
    """Train (or resume) the class-conditional diffusion model on the benchmark's training split."""
    from accelerate import PartialState

    from .data import load_benchmark
    from .diffusion import train_diffusion
    from .utils import force_cpu_processes

    with PartialState(
        cpu=force_cpu_processes()
    ).main_process_first():  # one process builds the benchmark cache, the others read it
        dataset = load_benchmark(config.benchmark_name, **config.benchmark_options)
    folder = Path(config.output_dir) / "diffusion"
    train_diffusion(dataset["train"], config.diffusion, folder)
    return folder / "pipeline"


def generate_stage(config: RunConfig) -> Path:
    """Generate the synthetic bias-aligned dataset from the trained diffusion pipeline."""
    from .generation import generate_synthetic_dataset
    from .pipeline_bias_aligned import BiasAlignedGenerationPipeline

    source = Path(config.output_dir) / "diffusion" / "pipeline"
    if not (source / "model_index.json").is_file():
        raise FileNotFoundError(f"no trained diffusion pipeline in {source}; run `hf-ddb train-diffusion` first")
    pipeline = BiasAlignedGenerationPipeline.from_pretrained(source)
    folder = Path(config.output_dir) / "synthetic"
    generate_synthetic_dataset(pipeline, folder, config.generation)
    return folder / "dataset"


STAGES = {
    "train-diffusion": (train_diffusion_stage, "train the class-conditional diffusion model (resumable)"),
    "generate": (generate_stage, "generate the synthetic bias-aligned dataset (resumable, shardable)"),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hf-ddb", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    helps = {"run": "run a benchmark from a YAML config in pipelines/", **{k: v[1] for k, v in STAGES.items()}}
    for name, text in helps.items():
        sub = commands.add_parser(name, help=text)
        sub.add_argument("config", help="path of the YAML config, e.g. pipelines/colored_mnist.yaml")
        sub.add_argument("--output-dir", help="override the config's output_dir")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(f"hf-ddb: invalid config {args.config}: {err}", file=sys.stderr)
        return 2
    if args.output_dir:
        config.output_dir = args.output_dir
    if args.command in STAGES:
        print(f"{args.command}: {STAGES[args.command][0](config)}")
        return 0
    report = run(config)
    print(f"\n{config.benchmark_name} {config.benchmark_options} — {report['wall_time_s']} s")
    print(format_table(report["results"]))
    print(f"\nresults: {Path(config.output_dir) / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
