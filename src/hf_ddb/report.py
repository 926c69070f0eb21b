"""The run report: results.json, results.md, three PNGs, and the model card of every artefact.

Bias labels appear here for evaluation only: per-group test accuracy and the amplifier's losses split by
true bias-aligned / bias-conflicting samples.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

if TYPE_CHECKING:
    from .runner import Run

__all__ = ["format_results_table", "write_report"]

TABLE_COLUMNS = [
    ("accuracy", "avg acc"),
    ("unbiased_accuracy", "unbiased acc"),
    ("worst_group_accuracy", "worst-group acc"),
    ("aligned_accuracy", "aligned acc"),
    ("conflicting_accuracy", "conflicting acc"),
]
METHOD_TITLES = {
    "erm": ("ERM", "Plain empirical risk minimisation: the biased baseline."),
    "jtt": ("JTT", "Just Train Twice: an ERM model's training errors are upweighted and the model retrained."),
    "lff": ("LfF", "Learning from Failure: a GCE bias model co-trained on the real data reweights samples."),
    "disent": (
        "DFA (DisEnt)",
        "Learning Debiased Representation via Disentangled Feature Augmentation: intrinsic and bias encoders, "
        "LfF's weights and bias features swapped across the batch.",
    ),
    "bias_ensemble": (
        "BiasEnsemble",
        "BiasEnsemble + LfF: a committee of GCE models flags bias-aligned samples; LfF's bias model learns only them.",
    ),
    "groupdro_oracle": (
        "GroupDRO (oracle)",
        "GroupDRO on the TRUE (class, bias) groups with group-balanced batches, tuned on valid mean-group "
        "accuracy: it uses bias labels in training and selection, an upper reference.",
    ),
    "ddb_i": (
        "DDB Recipe I",
        "Diffusing DeBias, two-step: the bias amplifier's pseudo groups (class x aligned/conflicting) and GroupDRO.",
    ),
    "ddb_ii": (
        "DDB Recipe II",
        "Diffusing DeBias, end to end: LfF-style weights L_B / (L_B + L_D) with the frozen bias amplifier's loss.",
    ),
}
DETECTION_KEYS = {
    "auroc": "bias-conflicting detection AUROC",
    "average_precision": "bias-conflicting detection average precision",
    "precision": "precision of the pseudo labels",
    "recall": "recall of the pseudo labels",
}


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def format_results_table(results: dict[str, dict[str, Any]], split: str = "test") -> str:
    """Markdown table, one row per method, accuracies in percent on ``split``."""
    header = "| method | uses bias labels | " + " | ".join(title for _, title in TABLE_COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(TABLE_COLUMNS) + 2)]
    for method, result in results.items():
        metrics = result[split]
        cells = [_pct(metrics.get(key)) for key, _ in TABLE_COLUMNS]
        oracle = "yes (oracle)" if result["info"].get("uses_bias_labels") else "no"
        lines.append(f"| {method} | {oracle} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _group_accuracy_plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(results)
    per_group = {m: results[m]["test"].get("per_group", {}) for m in methods}
    groups = sorted(per_group[methods[0]], key=lambda g: tuple(int(x) for x in g.split(",")))
    if 0 < len(groups) <= 16:
        labels = [f"y={g.split(',')[0]}, b={g.split(',')[1]}" for g in groups]
        values = {m: [per_group[m][g]["accuracy"] for g in groups] for m in methods}
        title = "test accuracy per (class y, bias b) group"
    else:
        labels = ["aligned", "conflicting", "worst group"]
        keys = ("aligned_accuracy", "conflicting_accuracy", "worst_group_accuracy")
        values = {m: [results[m]["test"].get(k) or 0.0 for k in keys] for m in methods}
        title = f"test accuracy ({len(groups)} groups: aligned / conflicting / worst)"
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(labels) * max(1, len(methods) / 3)), 3.6))
    width = 0.8 / len(methods)
    x = np.arange(len(labels))
    for i, method in enumerate(methods):
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, 100 * np.asarray(values[method]), width, label=method)
    ax.set_xticks(x, labels, rotation=30 if len(labels) > 4 else 0, ha="right" if len(labels) > 4 else "center")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=min(len(methods), 3))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _loss_histogram(losses: np.ndarray, conflicting: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    bins = np.linspace(0, float(np.quantile(losses, 0.999)) + 1e-6, 50)
    for mask, label in ((~conflicting, "bias-aligned"), (conflicting, "bias-conflicting")):
        ax.hist(np.clip(losses[mask], 0, bins[-1]), bins=bins, alpha=0.6, density=True, label=f"{label} ({mask.sum()})")
    ax.set_xlabel("bias amplifier loss on real training samples")
    ax.set_ylabel("density")
    ax.set_title("BA loss: bias labels used for this plot only")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _training_rows(settings: dict[str, Any], keys: list[str]) -> list[tuple[str, Any]]:
    return [(key, settings[key]) for key in keys if key in settings]


def _bias_text(run: Run) -> str:
    ratio = run.config.bias_ratio
    return "bias ratio not stated" if ratio is None else f"{100 * ratio:g}% bias-aligned training samples"


def _write_card(card: Any, folder: Path, images: dict[str, Path]) -> None:
    for name, source in images.items():
        if source.is_file():
            shutil.copyfile(source, folder / name)
    tmp = folder / ".README.md.tmp"
    card.save(tmp)
    os.replace(tmp, folder / "README.md")


def _fidelity_rows(fidelity: dict[str, Any]) -> list[tuple[str, str]]:
    """The generator check (amplifier accuracy on held-out synthetic and on real training images) as card rows."""
    if not fidelity:
        return []
    return [
        ("amplifier accuracy, held-out synthetic images", _pct(fidelity["synthetic_heldout_accuracy"])),
        ("amplifier accuracy, real training images", _pct(fidelity["real_train_accuracy"])),
        ("real training images flagged bias-conflicting", _pct(fidelity["flagged_share"])),
    ]


def write_report(run: Run, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Write the report files and model cards of a run; returns what results.json holds."""
    from .config import DDB_METHODS
    from .data import sample_grid
    from .hub import render_model_card
    from .metrics import is_conflicting

    config, root = run.config, run.root
    benchmark = config.benchmark_name
    dataset_id = config.benchmark.get("path") if benchmark == "hub" else None
    display = dataset_id or benchmark
    root.mkdir(parents=True, exist_ok=True)
    with_amplifier = run.needs_amplifier
    if with_amplifier:
        run.amplifier()  # resolved (and cached) before reading its folder
    stage_folders = {"diffusion": root / "diffusion", "generation": root / "synthetic", "amplifier": root / "amplifier"}
    stage_folders.update({m: root / "methods" / m for m in results})
    stage_seconds = {
        name: json.loads((folder / "stage.json").read_text())["seconds"]
        for name, folder in stage_folders.items()
        if (folder / "stage.json").is_file() and (name in results or with_amplifier)
    }
    report: dict[str, Any] = {
        "benchmark": config.benchmark,
        "methods": results,
        "stage_seconds": stage_seconds,
        "config": config.to_dict(),
    }
    figures = {"groups": root / "group_accuracy.png"}
    _group_accuracy_plot(results, figures["groups"])
    amplifier_dir = root / "amplifier"
    if with_amplifier:
        stage = json.loads((amplifier_dir / "stage.json").read_text())
        report["amplifier"] = {
            "detection": stage.get("detection"),
            "fidelity": stage.get("fidelity"),
            "num_synthetic": stage.get("num_synthetic"),
        }
        signals = run.amplifier_signals()
        train = run.data["train"]
        if "bias_label" in train.column_names:
            conflicting = is_conflicting(train["label"], train["bias_label"], config.aligned_bias)
            figures["losses"] = root / "amplifier_losses.png"
            _loss_histogram(signals["train_loss"], conflicting, figures["losses"])
        figures["samples"] = root / "synthetic_samples.png"
        sample_grid(run.generation(), per_class=10, scale=3).save(figures["samples"])
    # ---- results.json / results.md
    tmp = root / ".results.json.tmp"
    tmp.write_text(json.dumps(report, indent=2, default=str))
    os.replace(tmp, root / "results.json")
    fidelity = (report.get("amplifier") or {}).get("fidelity") or {}
    warnings = fidelity.get("warnings", [])
    lines = [f"# hf-ddb results: {display} ({_bias_text(run)})", ""]
    if warnings:
        lines += [
            "**Warning: the bias amplifier did not learn a bias, so the DDB rows below are not a debiasing result.**",
            *[f"- {w}." for w in warnings],
            "",
        ]
    lines += ["Test split, accuracies in %.", "", format_results_table(results)]
    if fidelity:
        lines += [
            "",
            f"Generator check (no bias labels): the amplifier is right on "
            f"{fidelity['synthetic_heldout_accuracy']:.1%} of held-out synthetic images and "
            f"{fidelity['real_train_accuracy']:.1%} of the real training images; it flags "
            f"{fidelity['flagged_share']:.1%} of them.",
        ]
    detection = (report.get("amplifier") or {}).get("detection")
    if detection:
        lines += [
            "",
            f"Bias amplifier ({report['amplifier']['num_synthetic']} synthetic images, never a real one): "
            f"bias-conflicting detection AUROC {detection['auroc']:.3f}, pseudo-label precision "
            f"{detection['precision']:.2f}, recall {detection['recall']:.2f} (bias labels used for this line only).",
        ]
    lines += ["", *[f"![{name}]({path.name})" for name, path in figures.items()], ""]
    (root / "results.md").write_text("\n".join(lines))
    # ---- model cards
    training = config.training.to_dict()
    train_keys = ["epochs", "batch_size", "learning_rate", "weight_decay", "seed"]
    comparison = [
        [
            m,
            *(
                _pct(results[m]["test"].get(k))
                for k in ("unbiased_accuracy", "worst_group_accuracy", "conflicting_accuracy")
            ),
        ]
        for m in results
    ]
    for method, result in results.items():
        folder = root / "methods" / method / "model"
        title, text = METHOD_TITLES.get(method, (method, ""))
        metrics = {k: result["test"][k] for k, _ in TABLE_COLUMNS if result["test"].get(k) is not None}
        card = render_model_card(
            "classifier",
            model_name=f"{display} {title} classifier (hf-ddb)",
            benchmark=display,
            dataset_id=dataset_id,
            metrics=metrics,
            metric_names={k: t for k, t in TABLE_COLUMNS},
            tags=[method],
            bias_text=_bias_text(run),
            method_title=title,
            method_text=text,
            selection=result["info"].get("selection", config.selection),
            bias_label_use=" and, by this oracle method, in training"
            if result["info"].get("uses_bias_labels")
            else " only",
            metric_rows=[(t, _pct(result["test"].get(k))) for k, t in TABLE_COLUMNS],
            comparison_rows=comparison if len(results) > 1 else [],
            groups_image=figures["groups"].name,
            repo_or_path=(
                f"{config.hub.repo_prefix}-classifier"
                if config.hub.repo_prefix and method == config.hub.classifier
                else str(folder)
            ),
            training_rows=_training_rows(training, train_keys)
            + [("architecture", config.classifier.architecture), ("selection", config.selection)],
            warnings=warnings if method in DDB_METHODS else [],
        )
        _write_card(card, folder, {figures["groups"].name: figures["groups"]})
    if with_amplifier:
        settings = config.to_dict()["amplifier"]
        amp_card = render_model_card(
            "amplifier",
            model_name=f"{display} bias amplifier (hf-ddb)",
            benchmark=display,
            dataset_id=dataset_id,
            split="train",
            metrics={k: detection[k] for k in DETECTION_KEYS} if detection else None,
            metric_names=DETECTION_KEYS,
            bias_text=_bias_text(run),
            metric_rows=[(t, f"{detection[k]:.3f}") for k, t in DETECTION_KEYS.items()] if detection else [],
            losses_image=figures["losses"].name if "losses" in figures else "",
            repo_or_path=f"{config.hub.repo_prefix}-amplifier"
            if config.hub.repo_prefix
            else str(amplifier_dir / "model"),
            training_rows=list(settings.items()) + [("synthetic images", report["amplifier"]["num_synthetic"])],
            fidelity_rows=_fidelity_rows(fidelity),
            warnings=warnings,
        )
        _write_card(amp_card, amplifier_dir / "model", {p.name: p for k, p in figures.items() if k == "losses"})
        diffusion = config.diffusion
        names = run.class_names
        diff_card = render_model_card(
            "diffusion",
            model_name=f"{display} bias-aligned diffusion model (hf-ddb)",
            benchmark=display,
            dataset_id=dataset_id,
            bias_text=_bias_text(run),
            samples_image=figures["samples"].name,
            repo_or_path=f"{config.hub.repo_prefix}-diffusion"
            if config.hub.repo_prefix
            else str(root / "diffusion" / "pipeline"),
            example_labels=", ".join(str(i) for i in range(min(4, len(names)))),
            guidance_scale=config.generation.guidance_scale,
            class_names=", ".join(f"{i}: {n}" for i, n in enumerate(names)),
            null_class_id=len(names),
            resolution=diffusion.resolution,
            training_rows=_training_rows(
                diffusion.__dict__,
                ["preset", "resolution", "block_out_channels", "max_train_steps", "train_batch_size", "learning_rate"],
            )
            + [("generation", f"{config.generation.scheduler}, {config.generation.num_inference_steps} steps")],
            config_yaml=yaml.safe_dump(diffusion.__dict__, sort_keys=False).strip(),
            fidelity_rows=_fidelity_rows(fidelity),
            warnings=warnings,
        )
        _write_card(diff_card, root / "diffusion" / "pipeline", {figures["samples"].name: figures["samples"]})
    return report
