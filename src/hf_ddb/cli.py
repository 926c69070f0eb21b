"""The ``hf-ddb`` command line: ``hf-ddb run CONFIG`` runs a benchmark from a YAML config."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import ConfigError, RunConfig, load_config

__all__ = ["format_table", "main", "run"]

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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hf-ddb", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="run a benchmark from a YAML config in pipelines/")
    run_parser.add_argument("config", help="path of the YAML config, e.g. pipelines/colored_mnist.yaml")
    run_parser.add_argument("--output-dir", help="override the config's output_dir")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(f"hf-ddb: invalid config {args.config}: {err}", file=sys.stderr)
        return 2
    if args.output_dir:
        config.output_dir = args.output_dir
    report = run(config)
    print(f"\n{config.benchmark_name} {config.benchmark_options} — {report['wall_time_s']} s")
    print(format_table(report["results"]))
    print(f"\nresults: {Path(config.output_dir) / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
