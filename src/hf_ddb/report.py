"""The run report: results.json, results.md, three PNGs, and the model card of every artefact.

Bias labels appear here for evaluation only: per-group test accuracy and the amplifier's losses split by
true bias-aligned / bias-conflicting samples.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from .layout import RunLayout
from .settings import hub_licence_id
from .utils import atomic_file, atomic_write_text

if TYPE_CHECKING:
    from datasets import Dataset

    from .config import RunConfig

__all__ = ["RunSummary", "format_results_table", "write_report"]


@dataclass
class RunSummary:
    """Everything the report reads, gathered by `hf_ddb.runner.Run.report` once every stage has run (the
    report never runs a stage). The amplifier fields are None when the run trained no amplifier;
    ``train_conflicting`` (true bias labels, evaluation only) when the data has none."""

    config: RunConfig
    root: Path
    results: dict[str, dict[str, Any]]
    class_names: list[str]
    amplifier_train_losses: np.ndarray | None = None
    amplifier_train_flags: np.ndarray | None = None
    amplifier_train_predictions: np.ndarray | None = None  # its predicted class: each row's inferred bias
    train: Dataset | None = None  # the real training split (for the grid of what the amplifier flags)
    synthetic: Dataset | None = None
    train_conflicting: np.ndarray | None = None
    # what each finished stage recorded (`Run.stage_record`), by stage or method name: seconds, cache key and
    # the amplifier's detection and generator check
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    image_mode: str = "RGB"  # a training image's PIL mode and (width, height): the cards' example input
    image_size: tuple[int, int] = (28, 28)
    source_license: str | None = None  # the training data's licence, as its dataset info states it


TABLE_COLUMNS = [
    ("accuracy", "avg acc"),
    ("unbiased_accuracy", "unbiased acc"),
    ("worst_group_accuracy", "worst-group acc"),
    ("aligned_accuracy", "aligned acc"),
    ("conflicting_accuracy", "conflicting acc"),
]
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
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110)
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
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def _training_rows(settings: dict[str, Any], keys: list[str]) -> list[tuple[str, Any]]:
    return [(key, settings[key]) for key in keys if key in settings]


def _bias_text(config: RunConfig) -> str:
    ratio = config.bias_ratio
    return "bias ratio not stated" if ratio is None else f"{100 * ratio:g}% bias-aligned training samples"


class _Cards:
    """Renders each artefact's card into its folder and keeps what it was rendered from in ``cards.json``, so that
    `hf-ddb push` can render it again for the repo it goes to (`hf_ddb.hub.rerender_card`) without the run's
    data. What a push recorded there (``published``: the repos) is kept for as long as the artefact is the one
    pushed (the same stage key), so a later report renders the card as pushed."""

    def __init__(self, layout: RunLayout) -> None:
        from .hub import unlinked

        self.layout, self.entries = layout, {}
        self.before: dict[str, Any] = {}
        if layout.cards.is_file():
            try:
                self.before = json.loads(unlinked(layout.cards, layout.root).read_text())
            except (ValueError, OSError):  # unreadable or a link: rendered as never pushed
                self.before = {}

    def write(self, kind: str, folder: Path, images: dict[str, Path], key: str | None, **arguments: Any) -> None:
        """``key``: the stage key the card's content depends on (the method's, or the amplifier's for the
        amplifier and the diffusion pipeline, whose card reports the generator check)."""
        from .hub import render_card_entry

        for name, source in images.items():
            if source.is_file():
                with atomic_file(folder / name) as tmp:  # a link planted at the name is replaced, not written
                    shutil.copyfile(source, tmp)
        name = folder.relative_to(self.layout.root).as_posix()
        arguments = json.loads(json.dumps(arguments, default=_json_number))  # as push will read it back
        entry: dict[str, Any] = {"kind": kind, "key": key, "arguments": arguments}
        published = (self.before.get(name) or {}).get("published")
        if published and key is not None and published.get("key") == key:
            entry["published"] = published
        with atomic_file(folder / "README.md") as tmp:
            render_card_entry(entry).save(tmp)
        self.entries[name] = entry

    def save(self) -> None:
        atomic_write_text(self.layout.cards, json.dumps(self.entries, indent=2))


def _json_number(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _fidelity_rows(fidelity: dict[str, Any]) -> list[tuple[str, str]]:
    """The generator check (amplifier accuracy on held-out synthetic and on real training images) as card rows."""
    if not fidelity:
        return []
    return [
        ("amplifier accuracy, held-out synthetic images", _pct(fidelity["synthetic_heldout_accuracy"])),
        ("amplifier accuracy, real training images", _pct(fidelity["real_train_accuracy"])),
        ("real training images flagged bias-conflicting", _pct(fidelity["flagged_share"])),
    ]


# results.json key -> (model-index type, name); see `hf_ddb.hub.METRIC_RULE`
CLASSIFIER_METRICS = {
    "accuracy": ("accuracy", "Accuracy"),
    "unbiased_accuracy": ("unbiased_accuracy", "Unbiased accuracy (mean of the (class, bias) group accuracies)"),
    "worst_group_accuracy": ("worst_group_accuracy", "Worst-group accuracy (lowest (class, bias) group accuracy)"),
    "aligned_accuracy": ("aligned_accuracy", "Accuracy on the bias-aligned samples"),
    "conflicting_accuracy": ("conflicting_accuracy", "Accuracy on the bias-conflicting samples"),
}
DETECTION_TASK = {"task": "Bias-conflicting sample detection", "task_type": "bias-conflicting-detection"}
DETECTION_METRICS = {
    "auroc": ("roc_auc", "Bias-conflicting detection AUROC (the amplifier's loss as the score)"),
    "average_precision": ("average_precision", "Bias-conflicting detection average precision"),
    "precision": ("precision", "Precision of the bias-conflicting pseudo-labels"),
    "recall": ("recall", "Recall of the bias-conflicting pseudo-labels"),
}
GENERATION_TASK = "unconditional-image-generation"  # the diffusion card's pipeline tag (no class-conditional task)


def _result(metric: tuple[str, str], value: float, data: str, split: str, **extra: Any) -> dict[str, Any]:
    return {"type": metric[0], "name": metric[1], "value": float(value), "data": data, "split": split, **extra}


def _fidelity_results(fidelity: dict[str, Any], *, card: str) -> list[dict[str, Any]]:
    """The generator check as ``model-index`` results: on the amplifier's card its accuracy on the real training
    images is plain accuracy; on the diffusion card every value is named as a check of the generator."""
    if not fidelity:
        return []
    if card == "amplifier":  # no task name: the Hub groups results by task type and data, with the detection's
        return [
            _result(
                ("accuracy", "Accuracy on the real training images (never seen in training)"),
                fidelity["real_train_accuracy"],
                "benchmark",
                "train",
            ),
            _result(
                ("synthetic_heldout_accuracy", "Accuracy on held-out synthetic images (not trained on)"),
                fidelity["synthetic_heldout_accuracy"],
                "synthetic",
                "train",
            ),
        ]
    task = {"task": "Class-conditional generation, checked by the bias amplifier", "task_type": GENERATION_TASK}
    return [
        _result(
            (
                "synthetic_heldout_accuracy",
                "Generator check: the bias amplifier's accuracy on held-out generated images (class fidelity)",
            ),
            fidelity["synthetic_heldout_accuracy"],
            "synthetic",
            "train",
            **task,
        ),
        _result(
            ("real_train_accuracy", "Generator check: the bias amplifier's accuracy on the real training images"),
            fidelity["real_train_accuracy"],
            "benchmark",
            "train",
            **task,
        ),
        _result(
            ("flagged_share", "Generator check: share of the real training images flagged bias-conflicting"),
            fidelity["flagged_share"],
            "benchmark",
            "train",
            **task,
        ),
    ]


def card_datasets(config: RunConfig) -> tuple[str, dict[str, dict[str, Any]]]:
    """How the cards name the data (never a machine path) and the datasets they refer to: ``benchmark``, the
    real data (a Hub dataset's repo id; for an embedded benchmark its source, ``ylecun/mnist``, with the
    benchmark and its options as ``args``; a local folder by its name and no id), and ``synthetic``, the run's
    generated images (no id until a push names their dataset repo)."""
    from .settings import BENCHMARK_OPTIONS, MNIST_DATASET_ID

    if config.benchmark_name == "hub":
        path = config.benchmark["path"]
        folder = Path(path).expanduser()
        local = folder.is_absolute() or path.startswith((".", "~")) or folder.exists()
        dataset_id = folder.resolve().name if local else path
        benchmark = {
            "id": None if local else dataset_id,
            "name": f"{dataset_id} (a local dataset folder)" if local else dataset_id,
        }
        for key, field in (("config_name", "config"), ("revision", "revision")):
            if config.benchmark.get(key):
                benchmark[field] = config.benchmark[key]
    else:
        dataset_id = config.benchmark_name
        options = dataclasses.asdict(BENCHMARK_OPTIONS[dataset_id](**config.benchmark_options))
        benchmark = {
            "id": MNIST_DATASET_ID,
            "name": f"{dataset_id}, {_bias_text(config)}, generated by hf-ddb from MNIST",
            "args": {"benchmark": dataset_id, **options},
        }
    synthetic = {"id": None, "name": f"synthetic bias-aligned images generated by this run from {dataset_id}"}
    return dataset_id, {"benchmark": benchmark, "synthetic": synthetic}


def groups_found(
    labels: np.ndarray, flags: np.ndarray, predictions: np.ndarray, class_names: list[str], top: int = 3
) -> list[dict[str, Any]]:
    """Per class, what the amplifier found in the training set without bias labels: its rows, how many it
    flags, and the inferred bias of the flagged ones (the classes they look like to the amplifier, most
    frequent first)."""
    labels, flags, predictions = np.asarray(labels), np.asarray(flags, dtype=bool), np.asarray(predictions)
    rows = []
    for index, name in enumerate(class_names):
        mine = labels == index
        looks = predictions[mine & flags]
        values, counts = np.unique(looks, return_counts=True)
        order = np.argsort(-counts, kind="stable")[:top]
        rows.append(
            {
                "class": name,
                "rows": int(mine.sum()),
                "flagged": int((mine & flags).sum()),
                "looks_like": {class_names[int(values[i])]: int(counts[i]) for i in order},
            }
        )
    return rows


def _groups_found_lines(found: list[dict[str, Any]], results: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "## The groups the amplifier found (no bias labels)",
        "",
        "Each training row's inferred bias is the class the amplifier (trained on synthetic bias-aligned images "
        "only) predicts for it; a row is flagged when that is not its own class.",
        "",
        "| class | training rows | flagged | flagged rows look like (amplifier's class: rows) |",
        "|---|---|---|---|",
    ]
    for row in found:
        looks = ", ".join(f"{name}: {count}" for name, count in row["looks_like"].items()) or "-"
        lines.append(f"| {row['class']} | {row['rows']} | {row['flagged']} | {looks} |")
    measured = [(m, r) for m, r in results.items() if "pseudo_groups" in r.get("test", {})]
    if measured:
        lines += [
            "",
            "Accuracy on these groups, (class, inferred bias), in %: the mean over groups and the worst group "
            "(what a run can measure without bias labels; with them, the unbiased and worst-group columns above "
            "are the real measure).",
            "",
            "| method | valid mean | valid worst | test mean | test worst |",
            "|---|---|---|---|---|",
        ]
        for method, result in measured:
            cells = [
                _pct(result[split]["pseudo_groups"][key])
                for split in ("valid", "test")
                for key in ("mean_accuracy", "worst_accuracy")
            ]
            lines.append(f"| {method} | {' | '.join(cells)} |")
    return lines


def write_report(summary: RunSummary) -> dict[str, Any]:
    """Write the report of a run (its figures, results.json and results.md, and the model card of every
    artefact); returns what results.json holds."""
    summary.root.mkdir(parents=True, exist_ok=True)
    report = _results(summary)
    figures = _figures(summary, report)
    atomic_write_text(summary.root / "results.json", json.dumps(report, indent=2, default=str))
    atomic_write_text(summary.root / "results.md", _results_markdown(summary, report, figures))
    _write_cards(summary, report, figures)
    return report


def _display(config: RunConfig) -> tuple[str, str | None]:
    """How the report names the data, and its Hub dataset id (None for an embedded benchmark)."""
    dataset_id = config.benchmark.get("path") if config.benchmark_name == "hub" else None
    return dataset_id or config.benchmark_name, dataset_id


def _results(summary: RunSummary) -> dict[str, Any]:
    """What results.json holds: the benchmark, every method's metrics, the stage times, the config and, with an
    amplifier, its detection, generator check and the groups it found."""
    config, results = summary.config, summary.results
    with_amplifier = summary.synthetic is not None
    stage_seconds = {name: record["seconds"] for name, record in summary.stages.items()}
    report: dict[str, Any] = {
        "benchmark": config.benchmark,
        "methods": results,
        "stage_seconds": stage_seconds,
        "config": config.to_dict(),
    }
    if with_amplifier:
        stage = summary.stages.get("amplifier", {})
        report["amplifier"] = {
            "detection": stage.get("detection"),
            "fidelity": stage.get("fidelity"),
            "num_synthetic": stage.get("num_synthetic"),
            "memorisation": _rejudged(stage.get("memorisation")),
        }
        if summary.train is not None and summary.amplifier_train_predictions is not None:
            report["amplifier"]["groups_found"] = groups_found(
                summary.train["label"],
                summary.amplifier_train_flags,
                summary.amplifier_train_predictions,
                summary.class_names,
            )
    return report


def _rejudged(memorisation: dict[str, Any] | None) -> dict[str, Any] | None:
    """A stored memorisation check with its verdict read again by the current rule (as the generator check)."""
    from .amplifier import memorisation_verdict

    if not memorisation:
        return memorisation
    return {**memorisation, "verdict": memorisation_verdict(memorisation["history"])}


def labelled(picture: Any, rows: Sequence[str], title: str, headers: Sequence[tuple[str, float]] = ()) -> Any:
    """``picture`` (a grid with one row per entry of ``rows``) on a white margin with its ``title``, each row's
    name on the left and ``headers`` (text, position as a fraction of the grid's width) above the columns."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = 8 + int(max(measure.textlength(name, font=font) for name in rows))
    top = 20 + (16 if headers else 0)
    width = max(left + picture.width + 4, 8 + int(measure.textlength(title, font=font)))
    canvas = Image.new("RGB", (width, top + picture.height + 4), "white")
    canvas.paste(picture, (left, top))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), title, fill="black", font=font)
    for text, fraction in headers:
        draw.text((left + int(fraction * picture.width), 22), text, fill="black", font=font)
    row_height = picture.height / len(rows)
    for index, name in enumerate(rows):
        draw.text((4, top + int((index + 0.5) * row_height) - 6), name, fill="black", font=font)
    return canvas


def _figures(summary: RunSummary, report: dict[str, Any]) -> dict[str, Path]:
    """Draws the run's figures; returns their paths by name (``groups``, and with an amplifier ``losses`` when
    the data has bias labels, ``samples`` and ``findings``)."""
    from .data import findings_grid, sample_grid

    root, layout = summary.root, RunLayout(summary.root)
    figures = {"groups": root / "group_accuracy.png"}
    _group_accuracy_plot(summary.results, figures["groups"])
    if summary.synthetic is not None:
        if summary.train_conflicting is not None:
            figures["losses"] = root / "amplifier_losses.png"
            _loss_histogram(summary.amplifier_train_losses, summary.train_conflicting, figures["losses"])
        figures["samples"] = layout.samples_image
        grid = sample_grid(summary.synthetic, per_class=10, scale=3)
        names = [summary.class_names[int(c)] for c in np.unique(summary.synthetic["label"])]
        with atomic_file(figures["samples"]) as tmp:
            labelled(grid, names, "Synthetic bias-aligned images (10 per class)").save(tmp)
        if summary.train is not None and summary.amplifier_train_flags is not None:
            figures["findings"] = root / "amplifier_findings.png"
            grid = findings_grid(summary.train, summary.amplifier_train_losses, summary.amplifier_train_flags)
            names = [summary.class_names[int(c)] for c in np.unique(summary.train["label"])]
            headers = (("flagged (highest loss first)", 0.0), ("most bias-aligned", 6 / 11))
            title = "Real training images: what the bias amplifier flags, per class (no bias labels)"
            with atomic_file(figures["findings"]) as tmp:
                labelled(grid, names, title, headers).save(tmp)
    return figures


def _warnings(report: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    fidelity = (report.get("amplifier") or {}).get("fidelity") or {}
    return fidelity, fidelity.get("warnings", [])


def _results_markdown(summary: RunSummary, report: dict[str, Any], figures: dict[str, Path]) -> str:
    """results.md: the results table, the generator check, the amplifier's detection and findings, figures."""
    config, results = summary.config, summary.results
    display, _ = _display(config)
    fidelity, warnings = _warnings(report)
    lines = [f"# hf-ddb results: {display} ({_bias_text(config)})", ""]
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
    memorisation = (report.get("amplifier") or {}).get("memorisation")
    if memorisation:
        lines += ["", *_memorisation_lines(memorisation)]
    if "groups_found" in report.get("amplifier", {}):
        lines += _groups_found_lines(report["amplifier"]["groups_found"], results)
    if summary.train_conflicting is None:  # no bias labels in this dataset
        lines += [
            "",
            "This dataset has no bias labels, so unbiased, worst-group, aligned and conflicting accuracy cannot be "
            "measured; the accuracies on the groups the amplifier found stand in for them.",
        ]
    if "findings" in figures:
        lines += [
            "",
            "`amplifier_findings.png`, one row per class: left, the real training images the amplifier flags as "
            "bias-conflicting (highest loss first: the minority it discovered); right, the ones it finds most "
            "bias-aligned. No bias labels are used for it.",
        ]
    lines += ["", *[f"![{name}]({path.name})" for name, path in figures.items()], ""]
    return "\n".join(lines)


def _memorisation_lines(memorisation: dict[str, Any]) -> list[str]:
    """results.md's memorisation check: the verdict and, per epoch, how much of the amplifier's flags and of the
    other rows a real-data model of the amplifier's settings fits (no bias labels)."""
    lines = [
        f"Does the diffusion stage pay here? {memorisation['verdict'][0].upper()}{memorisation['verdict'][1:]}. "
        f"Per epoch, the training accuracy of that real-data model on the {memorisation['flagged']} rows the "
        "amplifier flags and on the others (no bias labels):",
        "",
        "| epoch | on the amplifier's flags | on the other rows |",
        "|---|---|---|",
    ]
    for row in memorisation["history"]:
        lines.append(f"| {row['epoch']:g} | {_pct(row['flagged_fit'])} | {_pct(row['unflagged_fit'])} |")
    return lines


def _memorisation_rows(memorisation: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not memorisation:
        return []
    return [
        ("real-data model of these settings: fit of the flagged rows", _pct(memorisation["flagged_fit"])),
        ("real-data model of these settings: fit of the other rows", _pct(memorisation["unflagged_fit"])),
    ]


def _measured_text(has_bias_labels: bool, uses_bias_labels: bool) -> str:
    """What a classifier card's results could measure: with bias labels every group metric; without them the
    average accuracy and the accuracy on the amplifier's inferred groups, and it says what cannot be measured."""
    if not has_bias_labels:
        return (
            "This dataset has no bias labels: the average accuracy and the accuracy on the groups the bias "
            "amplifier inferred, (class, the class it predicts), were measured; unbiased, worst-group, "
            "bias-aligned and bias-conflicting accuracy cannot be measured without bias labels."
        )
    use = " and, by this oracle method, in training" if uses_bias_labels else " only"
    return f"Groups are (class, bias attribute); bias labels were used for evaluation{use}."


def _pseudo_group_rows(pseudo: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not pseudo:
        return []
    return [
        ("inferred groups, mean acc (no bias labels)", _pct(pseudo["mean_accuracy"])),
        ("inferred groups, worst acc (no bias labels)", _pct(pseudo["worst_accuracy"])),
    ]


def _write_cards(summary: RunSummary, report: dict[str, Any], figures: dict[str, Path]) -> None:
    """The model card of every method's classifier and, with an amplifier, of the amplifier and the diffusion
    pipeline (cards.json keeps what each was rendered from, for push). No card names a machine path: a folder
    is named relative to the run folder until the artefact is pushed."""
    config, results = summary.config, summary.results
    display, data = card_datasets(config)
    layout = RunLayout(summary.root)
    fidelity, warnings = _warnings(report)
    detection = (report.get("amplifier") or {}).get("detection")
    with_amplifier = summary.synthetic is not None
    has_bias_labels = summary.train_conflicting is not None  # evaluation only
    measured_columns = [(k, t) for k, t in TABLE_COLUMNS if has_bias_labels or k == "accuracy"]
    cards = _Cards(layout)
    base_model = _hub_model_id(config.classifier.pretrained)
    training = config.training.to_dict()
    train_keys = ["epochs", "batch_size", "learning_rate", "weight_decay", "seed"]
    prefix = config.hub.repo_prefix
    common = {
        "benchmark": display,
        "data": data,
        "bias_text": _bias_text(config),
        "image_mode": summary.image_mode,
        "image_size": list(summary.image_size),
        "license": config.hub.license or hub_licence_id(summary.source_license) or "other",
        "class_count": len(summary.class_names),
    }

    def where(folder: Path, suffix: str, pushed_there: bool = True) -> dict[str, str]:
        path = layout.local_name(folder)
        return {"repo_or_path": f"{prefix}-{suffix}" if prefix and pushed_there else path, "local_folder": path}

    def lineage(*roles: str, method: str | None = None) -> list[dict[str, Any]]:
        """The run's other artefacts and data, as the card of one of them links to them."""
        real = data["benchmark"]
        name = layout.local_name
        items = {
            "real": {"role": "real training data", "name": real["name"], "repo": real["id"], "type": "dataset"},
            "diffusion": {"role": "generator (diffusion pipeline)", "path": name(layout.diffusion_pipeline)},
            "synthetic": {"role": "synthetic bias-aligned images", "path": name(layout.synthetic_dataset)},
            "amplifier": {"role": "bias amplifier", "path": name(layout.amplifier_model)},
            "classifier": {"role": "debiased classifier", "path": name(layout.method_model(method or ""))},
        }
        kinds = {"diffusion": "model", "amplifier": "model", "classifier": "model", "synthetic": "dataset"}
        return [{"type": kinds.get(role, "dataset"), **items[role]} for role in roles]

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
        folder = layout.method_model(method)
        recipe = config.recipe(method)
        with_findings = "findings" in figures and recipe.needs_amplifier  # DDB trained on those flags
        title, text = recipe.display_name, recipe.summary
        shown = [figures["groups"], *([figures["findings"]] if with_findings else [])]
        cards.write(
            "classifier",
            folder,
            {path.name: path for path in shown},
            summary.stages.get(method, {}).get("key"),
            model_name=f"{display} {title} classifier (hf-ddb)",
            results=[
                _result(CLASSIFIER_METRICS[k], result["test"][k], "benchmark", "test")
                for k, _ in TABLE_COLUMNS
                if result["test"].get(k) is not None
            ],
            trained_on=["benchmark"],
            tags=[method],
            references=list(recipe.references),
            method_title=title,
            method_text=text,
            selection=result["info"].get("selection", config.selection),
            measured_text=_measured_text(has_bias_labels, result["info"].get("uses_bias_labels", False)),
            metric_rows=[(t, _pct(result["test"].get(k))) for k, t in measured_columns]
            + _pseudo_group_rows(result["test"].get("pseudo_groups")),
            comparison_rows=comparison if len(results) > 1 else [],
            groups_image=figures["groups"].name,
            **where(folder, "classifier", method == config.hub.classifier),
            training_rows=_training_rows(training, train_keys)
            + [("architecture", config.classifier.architecture), ("selection", config.selection)],
            warnings=warnings if recipe.needs_amplifier else [],
            findings_image=figures["findings"].name if with_findings else "",
            base_model=base_model,
            lineage=lineage("real", *(("amplifier", "synthetic", "diffusion") if recipe.needs_amplifier else ())),
            model_type=f"image classifier ({config.classifier.architecture})",
            **common,
        )
    if with_amplifier:
        settings = config.to_dict()["amplifier"]
        amplifier_key = summary.stages.get("amplifier", {}).get("key")
        names = summary.class_names
        cards.write(
            "amplifier",
            layout.amplifier_model,
            {p.name: p for k, p in figures.items() if k == "losses"},
            amplifier_key,
            model_name=f"{display} bias amplifier (hf-ddb)",
            results=[
                _result(DETECTION_METRICS[k], detection[k], "benchmark", "train", **DETECTION_TASK)
                for k in (DETECTION_METRICS if detection else ())
            ]
            + _fidelity_results(fidelity, card="amplifier"),
            trained_on=["synthetic"],  # synthetic images only
            metric_rows=[(t, f"{detection[k]:.3f}") for k, t in DETECTION_KEYS.items()] if detection else [],
            detection_text="Bias labels are used here for evaluation only."
            if has_bias_labels
            else "This dataset has no bias labels, so how well the amplifier finds the bias-conflicting rows cannot "
            "be measured here; the generator check below needs none, and the run's report shows the groups it found.",
            losses_image=figures["losses"].name if "losses" in figures else "",
            **where(layout.amplifier_model, "amplifier"),
            generator=where(layout.diffusion_pipeline, "diffusion")["repo_or_path"],
            example_label=names[0],
            training_rows=list(settings.items()) + [("synthetic images", report["amplifier"]["num_synthetic"])],
            fidelity_rows=_fidelity_rows(fidelity) + _memorisation_rows(report["amplifier"].get("memorisation")),
            memorisation_text=(report["amplifier"].get("memorisation") or {}).get("verdict", ""),
            warnings=warnings,
            lineage=lineage("synthetic", "diffusion", "real") + lineage("classifier", method=config.hub.classifier),
            model_type=f"bias amplifier: an image classifier ({config.amplifier.architecture}) trained on synthetic "
            "images only",
            **common,
        )
        diffusion, generation = config.diffusion, config.generation
        cards.write(
            "diffusion",
            layout.diffusion_pipeline,
            {figures["samples"].name: figures["samples"]},
            amplifier_key,
            model_name=f"{display} bias-aligned diffusion model (hf-ddb)",
            results=_fidelity_results(fidelity, card="diffusion"),
            trained_on=["benchmark"],
            samples_image=figures["samples"].name,
            **where(layout.diffusion_pipeline, "diffusion"),
            example_labels=", ".join(str(i) for i in range(min(4, len(names)))),
            guidance_scale=generation.guidance_scale,
            num_inference_steps=generation.num_inference_steps,
            scheduler=generation.scheduler,
            class_names=", ".join(f"{i}: {n}" for i, n in enumerate(names)),
            null_class_id=len(names),
            resolution=diffusion.resolution,
            training_rows=_training_rows(
                diffusion.__dict__,
                ["preset", "resolution", "block_out_channels", "max_train_steps", "train_batch_size", "learning_rate"],
            )
            + [("generation", f"{generation.scheduler}, {generation.num_inference_steps} steps")],
            config_yaml=yaml.safe_dump(diffusion.__dict__, sort_keys=False).strip(),
            fidelity_rows=_fidelity_rows(fidelity),
            warnings=warnings,
            lineage=lineage("real", "synthetic", "amplifier") + lineage("classifier", method=config.hub.classifier),
            model_type=f"class-conditional diffusion model (UNet2DModel, {diffusion.resolution} px, classifier-free "
            "guidance)",
            **common,
        )
    cards.save()
    if with_amplifier and layout.synthetic_dataset.is_dir():  # the synthetic images' own card, beside them
        from .hub import render_dataset_card

        if layout.samples_image.is_file():  # the card shows them, as on the Hub
            with atomic_file(layout.synthetic_dataset / layout.samples_image.name) as tmp:
                shutil.copyfile(layout.samples_image, tmp)
        with atomic_file(layout.synthetic_dataset / "README.md") as tmp:
            render_dataset_card(layout.root).save(tmp)


def _hub_model_id(pretrained: str | None) -> str | None:
    """The Hub id of the classifier's pretrained weights (the card's ``base_model``); None for a local folder."""
    if not pretrained or Path(pretrained).exists():
        return None
    return pretrained
