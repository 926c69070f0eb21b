"""Model cards and the Hub: render the three artefacts' cards, push their folders, load them back.

Cards come from the Jinja templates in ``model_cards/`` (shipped as ``hf_ddb/model_cards``) through
huggingface_hub's `ModelCard.from_template`; the YAML header (tags, library, datasets, ``model-index``) is
a `ModelCardData`. `push_folder` uploads one artefact folder in a single commit and returns exactly the
paths it sent; `push_run` sends the diffusion pipeline, the amplifier and the debiased classifier, each card
rendered again for the repo it goes to, and the synthetic images as a dataset repo with its dataset card.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from huggingface_hub import DatasetCard, DatasetCardData, EvalResult, HfApi, ModelCard, ModelCardData

if TYPE_CHECKING:
    from .layout import RunLayout

__all__ = [
    "CARD_KINDS",
    "METRIC_RULE",
    "check_push_access",
    "citation_bibtex",
    "load_artifact",
    "push_folder",
    "push_run",
    "render_card_entry",
    "render_dataset_card",
    "write_space",
    "render_model_card",
    "rerender_card",
    "synthetic_dataset_files",
    "template_path",
]

CARD_KINDS = {"diffusion": "diffusers", "amplifier": "transformers", "classifier": "transformers"}
ARTIFACT_SUFFIXES = {"diffusion": "diffusion", "amplifier": "amplifier", "classifier": "classifier"}
DATASET_SUFFIX = "synthetic"
SPACE_SUFFIX = "demo"
PIPELINE_TAGS = {
    # class-conditional generation is no Hub task; the nearest that takes no text or image input
    "diffusion": "unconditional-image-generation",
    "amplifier": "image-classification",
    "classifier": "image-classification",
}


def template_path(kind: str) -> Path:
    """The Jinja template of ``kind``: the packaged copy, or ``model_cards/`` of a source checkout."""
    if kind not in (*CARD_KINDS, "dataset"):
        raise ValueError(f"unknown card kind {kind!r}; choose one of {sorted(CARD_KINDS)}")
    here = Path(__file__).resolve().parent
    for folder in (here / "model_cards", here.parents[1] / "model_cards"):
        if (folder / f"{kind}.md").is_file():
            return folder / f"{kind}.md"
    raise FileNotFoundError(f"model card template {kind}.md not found next to hf_ddb or in model_cards/")


# How the cards name their metrics in `model-index` (one rule, stated in every card as `METRIC_RULE`): a result's
# ``type`` is a Hub metric id (https://hf.co/metrics) only where the value is that metric over every row of the
# split it names; a value over a subset of the rows or over groups keeps hf-ddb's own id (its key in results.json)
# and a ``name`` that says what it is.
HUB_METRIC_IDS = ("accuracy", "roc_auc", "precision", "recall")
OWN_METRIC_IDS = (
    "unbiased_accuracy",
    "worst_group_accuracy",
    "aligned_accuracy",
    "conflicting_accuracy",
    "average_precision",
    "synthetic_heldout_accuracy",
    "real_train_accuracy",
    "flagged_share",
)
METRIC_RULE = (
    "In this card's metadata (`model-index`), a result's `type` is a Hub metric id (`accuracy`, `roc_auc`, "
    "`precision`, `recall`) only where the value is that metric over every row of the split it names; a value "
    "over a subset of the rows or over groups (unbiased = mean of the (class, bias) group accuracies, worst-group, "
    "bias-aligned, bias-conflicting accuracy, the generator check) keeps hf-ddb's own id, its key in the run's "
    "`results.json`, with a `name` that says what it is. Data is named by its Hub dataset id only: an embedded "
    "benchmark by its source, `ylecun/mnist`, with the benchmark and its options as the dataset's arguments; a "
    "local folder and the synthetic images before they are pushed by no id (their results are in the tables "
    "only). Bias-conflicting detection is filed under its own task, `bias-conflicting-detection`."
)
INSTALL = {
    "diffusion": "pip install diffusers transformers torch",
    "amplifier": "pip install transformers torch pillow",
    "classifier": "pip install transformers torch pillow",
}
PAPER_BIBTEX = """@inproceedings{ciranni2025diffusing,
  title = {Diffusing DeBias: Synthetic Bias Amplification for Model Debiasing},
  author = {Ciranni, M. and Pastore, V. P. and Di Via, R. and Tartaglione, E. and Odone, F. and Murino, V.},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year = {2025},
  eprint = {2502.09564},
  archivePrefix = {arXiv},
  url = {https://arxiv.org/abs/2502.09564}
}"""


# The papers whose ideas a method reuses, by the keys a `Recipe` lists in ``references``.
REFERENCE_BIBTEX = {
    "fg_ccdb": """@inproceedings{zhao2026fgccdb,
  title = {Fine-Grained Class-Conditional Distribution Balancing for Debiased Learning},
  author = {Zhao, Miaoyun and Zhang, Qiang},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year = {2026},
  eprint = {2505.06831},
  archivePrefix = {arXiv},
  url = {https://openreview.net/forum?id=NEFldJX4zb}
}""",
    "ccdb": """@misc{zhao2025ccdb,
  title = {Class-Conditional Distribution Balancing for Group Robust Classification},
  author = {Zhao, Miaoyun and others},
  year = {2025},
  eprint = {2504.17314},
  archivePrefix = {arXiv},
  url = {https://arxiv.org/abs/2504.17314}
}""",
    "lff": """@inproceedings{nam2020learning,
  title = {Learning from Failure: De-biasing Classifier from Biased Classifier},
  author = {Nam, Junhyun and Cha, Hyuntak and Ahn, Sungsoo and Lee, Jaeho and Shin, Jinwoo},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year = {2020},
  eprint = {2007.02561},
  archivePrefix = {arXiv},
  url = {https://arxiv.org/abs/2007.02561}
}""",
}


def citation_bibtex(references: Sequence[str] = ()) -> str:
    """The BibTeX every card ends with: the DDB paper, the papers of ``references`` (keys of
    `REFERENCE_BIBTEX`: what a method reuses, its recipe's ``references``) and hf-ddb itself (this version)."""
    from . import __version__

    unknown = sorted(set(references) - set(REFERENCE_BIBTEX))
    if unknown:
        raise ValueError(f"no BibTeX for reference(s) {unknown}; known: {sorted(REFERENCE_BIBTEX)}")

    software = (
        "@software{hf_ddb,\n"
        "  title = {hf-ddb: Diffusing DeBias for the Hugging Face ecosystem},\n"
        "  author = {{The hf-ddb authors}},\n"
        f"  version = {{{__version__}}},\n"
        "  year = {2026},\n"
        "  license = {Apache-2.0},\n"
        "  note = {Python library; implements Ciranni et al., NeurIPS 2025}\n"
        "}"
    )
    cited = [REFERENCE_BIBTEX[key] for key in dict.fromkeys(references)]
    return "\n\n".join([PAPER_BIBTEX, *cited, software])


def hub_dataset_id(dataset: Mapping[str, Any] | None) -> str | None:
    """The Hub id a card may name for ``dataset`` (a `card_datasets` entry); None for data that is not on the Hub
    (a local folder, the synthetic images before a push, or an entry of an older run marked ``local``)."""
    if not dataset or dataset.get("local"):
        return None
    return dataset.get("id")


def _eval_result(result: Mapping[str, Any], data: Mapping[str, Mapping[str, Any]]) -> EvalResult:
    """One ``model-index`` result: ``result`` names its metric (``type``, ``name``, ``value`` as a fraction),
    the data it was measured on (``data``: a key of ``data``, which has a Hub id) and the ``split``."""
    dataset = data[result["data"]]
    return EvalResult(
        task_type=result.get("task_type", "image-classification"),
        task_name=result.get("task"),
        dataset_type=hub_dataset_id(dataset),
        dataset_name=dataset["name"],
        dataset_config=dataset.get("config"),
        dataset_revision=dataset.get("revision"),
        dataset_args=dataset.get("args"),
        dataset_split=result["split"],
        metric_type=result["type"],
        metric_name=result["name"],
        metric_value=round(float(result["value"]), 4),
    )


def render_model_card(
    kind: str,
    *,
    model_name: str,
    benchmark: str,
    results: Sequence[Mapping[str, Any]] = (),
    data: Mapping[str, Mapping[str, Any]] | None = None,
    trained_on: Sequence[str] = (),
    tags: Sequence[str] = (),
    base_model: str | None = None,
    references: Sequence[str] = (),
    license: str = "other",
    lineage: Sequence[Mapping[str, Any]] = (),
    **context: Any,
) -> ModelCard:
    """A `ModelCard` for one artefact.

    ``data`` names the datasets the card refers to (key -> ``{"id", "name"}`` and optionally ``config``,
    ``revision`` and ``args``; ``id`` None for data not on the Hub); ``results`` become its ``model-index`` (each
    with ``type``, ``name``, ``value`` as a fraction, ``data``: a key of ``data``, and ``split``; see
    `METRIC_RULE`), those on data with a Hub id; ``trained_on`` (keys of ``data``) its ``datasets``;
    ``base_model`` the Hub id of pretrained weights it started from; ``references`` the papers the card's method
    reuses (`citation_bibtex`); ``license`` a Hub licence id (the run's ``hub.license``); ``lineage`` the run's
    other artefacts and data (`lineage_lines`). ``context`` fills the template (tables, images, load snippets).
    """
    data = data or {}
    eval_results = [_eval_result(result, data) for result in results if hub_dataset_id(data.get(result["data"]))]
    for result in eval_results:
        if result.metric_type not in (*HUB_METRIC_IDS, *OWN_METRIC_IDS):
            raise ValueError(f"metric type {result.metric_type!r} is neither a Hub metric id nor one of hf-ddb's")
    datasets = [hub_dataset_id(data[key]) for key in trained_on if hub_dataset_id(data.get(key))]
    card_data = ModelCardData(
        model_name=model_name,
        library_name=CARD_KINDS[kind],
        license=license,
        tags=["hf-ddb", "diffusing-debias", "debiasing", f"ddb-{kind}", *tags],
        datasets=datasets or None,
        base_model=base_model,
        pipeline_tag=PIPELINE_TAGS[kind],
        eval_results=eval_results or None,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path(kind)),
        model_name=model_name,
        benchmark_name=benchmark,
        metric_rule=METRIC_RULE,
        citation=citation_bibtex(references),
        install=INSTALL[kind],
        lineage_lines=lineage_lines(lineage),
        license_id=license,
        version=_version(),
        **context,
    )


def _version() -> str:
    from . import __version__

    return __version__


def lineage_lines(lineage: Sequence[Mapping[str, Any]]) -> list[str]:
    """The run's artefacts and data a card links to, one line each: ``role`` and where it is, a Hub repo
    (``repo``, with ``type`` model or dataset) as a link, otherwise its folder in the run (``path``) or its name."""
    lines = []
    for item in lineage:
        repo = item.get("repo")
        if repo:
            url = f"https://huggingface.co/{'datasets/' if item.get('type') == 'dataset' else ''}{repo}"
            where = f"[`{repo}`]({url})"
        else:
            where = f"`{item['path']}` in the run folder" if item.get("path") else item.get("name", "")
        lines.append(f"- {item['role']}: {where}")
    return lines


def published_arguments(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The render arguments of a `cards.json` entry with what a push recorded in it (``published``: the repo the
    artefact went to, the synthetic dataset repo, the generator's repo) in place of the local values."""
    arguments = dict(entry["arguments"])
    if "metrics" in arguments or "results" not in arguments:
        raise ValueError(
            "this run's cards.json was written by an older hf-ddb; run `hf-ddb evaluate CONFIG` to render the "
            "cards again, then push"
        )
    published = entry.get("published") or {}
    if published.get("repo_id"):
        arguments["repo_or_path"] = published["repo_id"]
    if published.get("generator_repo"):
        arguments["generator"] = published["generator_repo"]
    if published.get("synthetic_repo") and "synthetic" in arguments.get("data", {}):
        arguments["data"] = {
            **arguments["data"],
            "synthetic": {**arguments["data"]["synthetic"], "id": published["synthetic_repo"], "local": False},
        }
    repos = published.get("lineage") or {}
    if "lineage" in arguments:
        arguments["lineage"] = [
            {**item, "repo": repos.get(item.get("path")) or item.get("repo")} for item in arguments["lineage"]
        ]
    return arguments


def render_card_entry(entry: Mapping[str, Any]) -> ModelCard:
    """The model card of one `cards.json` entry (``kind``, ``arguments`` and, once pushed, ``published``)."""
    return render_model_card(entry["kind"], **published_arguments(entry))


class LinkRefusedError(OSError):
    """Push met a symbolic link where it would read: it never follows one (a link could point anywhere)."""


def unlinked(path: str | os.PathLike, root: str | os.PathLike) -> Path:
    """``path`` when neither it nor any folder between ``root`` and it is a symbolic link; every file push reads
    (artefact folders, the synthetic dataset, its sample grid and settings, the card arguments) goes through
    here, so a link planted in a run folder is never followed into a public repo."""
    path, root = Path(path), Path(root)
    current = root
    for part in path.relative_to(root).parts:
        current = current / part
        if current.is_symlink():
            raise LinkRefusedError(
                f"refusing to push: {current} is a symbolic link, and push never follows links (remove it)"
            )
    return path


def _artifact_paths(folder: Path, root: Path | None = None) -> list[str]:
    """Every regular file of an artefact folder, as sorted paths relative to it, without hidden files and
    training leftovers; a symbolic link in it (or between ``root`` and it) is refused (`unlinked`)."""
    unlinked(folder, root or folder)
    skip = {"checkpoints", "trainer"}
    found = []
    for here, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            unlinked(Path(here) / name, folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in skip)
        found += [(Path(here) / name).relative_to(folder).as_posix() for name in files if not name.startswith(".")]
    return sorted(found)


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    api: HfApi | None = None,
    private: bool = False,
    commit_message: str = "Upload with hf-ddb",
    root: str | os.PathLike | None = None,
) -> list[str]:
    """Create ``repo_id`` (if needed) and upload every file of ``folder`` in one commit.

    Returns the uploaded paths (relative, sorted). A folder without ``README.md`` is refused: every hf-ddb
    artefact carries its model card; so is a symbolic link in it, or between ``root`` (e.g. the run folder)
    and it.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"nothing to push: {folder} is not a folder (run the pipeline first)")
    paths = _artifact_paths(folder, Path(root) if root is not None else None)
    if "README.md" not in paths:
        raise FileNotFoundError(f"{folder} has no README.md model card; run `hf-ddb evaluate` to write it")
    api = api or HfApi()
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    # exactly the listed files: upload_folder's own walk would follow links and take leftovers
    api.upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        allow_patterns=[glob.escape(path) for path in paths],
        commit_message=commit_message,
        repo_type="model",
    )
    return paths


def rerender_card(
    run_dir: str | os.PathLike,
    folder: str | os.PathLike,
    repo_id: str,
    *,
    synthetic_repo: str | None = None,
    generator_repo: str | None = None,
    lineage: Mapping[str, str] | None = None,
) -> bool:
    """Render ``folder``'s model card again for ``repo_id`` (its load snippets name the repo; ``synthetic_repo``,
    the dataset repo of the synthetic images, and ``generator_repo``, the diffusion repo, where it refers to
    them; ``lineage``: the repo of each run folder pushed with it, by the folder's path in the run), from the
    arguments the report kept in ``cards.json``, and record them there under ``published``, so that a later
    report renders the card with them too. False when the run has no card for ``folder``."""
    from .layout import RunLayout
    from .utils import atomic_file, atomic_write_text

    layout, folder = RunLayout(Path(run_dir)), Path(folder)
    cards = _read_cards(layout)
    name = folder.resolve().relative_to(layout.root.resolve()).as_posix()
    entry = cards.get(name)
    if entry is None:
        return False
    previous = entry.get("published") or {}
    if previous.get("key") != entry.get("key"):
        previous = {}
    published = {"repo_id": repo_id, "key": entry.get("key")}
    for field, value in (("synthetic_repo", synthetic_repo), ("generator_repo", generator_repo)):
        if value or previous.get(field):  # a push without the dataset keeps the one pushed before
            published[field] = value or previous[field]
    if lineage or previous.get("lineage"):
        published["lineage"] = {**(previous.get("lineage") or {}), **(lineage or {})}
    entry["published"] = published
    cards_to_render = {name: entry}
    for other, other_entry in cards.items():  # another folder pushed to that repo before (hub.classifier changed)
        if other != name and (other_entry.get("published") or {}).get("repo_id") == repo_id:
            other_entry.pop("published")
            cards_to_render[other] = other_entry
    for card_folder, card_entry in cards_to_render.items():
        target = unlinked(layout.root / card_folder, layout.root)
        if target.is_dir():
            card = render_card_entry(card_entry)
            with atomic_file(target / "README.md") as tmp:
                card.save(tmp)
    atomic_write_text(layout.cards, json.dumps(cards, indent=2))
    return True


def synthetic_dataset_files(num_rows: int, with_samples: bool = True) -> list[str]:
    """The files of the synthetic dataset's repo: its card, the sample grid (when the run made one) and the
    Parquet shards, named as ``datasets`` finds them (``data/train-*``: the train split)."""
    from .generation import parquet_file_names

    samples = ["synthetic_samples.png"] if with_samples else []
    return sorted(["README.md", *samples, *parquet_file_names(num_rows)])


def render_dataset_card(
    run_dir: str | os.PathLike, *, repo_id: str | None = None, generator_repo: str | None = None
) -> DatasetCard:
    """The synthetic dataset's card: what generated it (``generator_repo``, else the run's diffusion folder),
    from which real data and bias, its classes and generation settings. ``repo_id``: where it is pushed; before a
    push (None) its snippet loads the run's folder. The licence and the real data come from the generator's
    entry in ``cards.json``."""
    from .generation import load_synthetic_dataset
    from .layout import RunLayout

    layout = RunLayout(Path(run_dir))
    dataset = load_synthetic_dataset(layout.synthetic_dataset)
    settings_file = layout.synthetic / "generation_settings.json"
    settings = json.loads(unlinked(settings_file, layout.root).read_text()) if settings_file.is_file() else {}
    names = dataset.features["label"].names
    counts = dict(zip(*np.unique(dataset["label"], return_counts=True), strict=True)) if dataset.num_rows else {}
    cards = _read_cards(layout)
    generator = layout.diffusion_pipeline
    arguments = (cards.get(generator.relative_to(layout.root).as_posix()) or {}).get("arguments", {})
    real = (arguments.get("data") or {}).get("benchmark")
    data = DatasetCardData(
        license=arguments.get("license", "other"),  # the generator's: the run's hub.license
        task_categories=["image-classification"],
        tags=["hf-ddb", "diffusing-debias", "synthetic", "bias-aligned"],
        pretty_name=f"{(repo_id or arguments.get('benchmark', 'hf-ddb')).split('/')[-1]} (hf-ddb synthetic "
        "bias-aligned images)",
        size_categories=[_size_category(dataset.num_rows)],
        source_datasets=[hub_dataset_id(real)] if hub_dataset_id(real) else None,
    )
    made_by = {"role": "generator", "path": layout.local_name(generator), "repo": generator_repo, "type": "model"}
    return DatasetCard.from_template(
        data,
        template_path=str(template_path("dataset")),
        load_path=repo_id or layout.local_name(layout.synthetic_dataset),
        local=repo_id is None,
        generator_line=lineage_lines([made_by])[0].removeprefix("- generator: "),
        source_text=_with_bias(real["name"] if real else "", arguments.get("bias_text", "")),
        num_rows=dataset.num_rows,
        class_rows=[(i, name, int(counts.get(i, 0))) for i, name in enumerate(names)],
        settings_rows=sorted((k, v) for k, v in settings.items() if not isinstance(v, dict | list)),
        samples_image="synthetic_samples.png" if layout.samples_image.is_file() else "",
        citation=citation_bibtex(),
    )


def _with_bias(name: str, bias_text: str) -> str:
    """The real data's name, with its bias when the name does not state it already."""
    return f"{name} ({bias_text})" if name and bias_text and bias_text not in name else name


def _stage_synthetic_dataset(run_dir: Path, repo_id: str, generator_repo: str, staging: Path) -> list[str]:
    """Write the synthetic dataset as a Hub dataset folder under ``staging``: Parquet shards (their schema
    keeps the class names, so ``load_dataset(repo)`` gives them back), the dataset card and the sample grid."""
    from .generation import load_synthetic_dataset, parquet_parts
    from .layout import RunLayout

    layout = RunLayout(run_dir)
    _artifact_paths(layout.synthetic_dataset, layout.root)  # no link in the saved dataset either
    dataset = load_synthetic_dataset(layout.synthetic_dataset)
    files = synthetic_dataset_files(dataset.num_rows, layout.samples_image.is_file())
    (staging / "data").mkdir(parents=True)
    for name, part in parquet_parts(dataset):
        part.to_parquet(str(staging / name))
    if layout.samples_image.is_file():
        staging.joinpath("synthetic_samples.png").write_bytes(unlinked(layout.samples_image, layout.root).read_bytes())
    render_dataset_card(layout.root, repo_id=repo_id, generator_repo=generator_repo).save(str(staging / "README.md"))
    return files


def _read_cards(layout: RunLayout) -> dict[str, Any]:
    """The run's ``cards.json`` (what each card was rendered from, and where push sent it); empty before any
    report. A link at its name is refused (`unlinked`)."""
    return json.loads(unlinked(layout.cards, layout.root).read_text()) if layout.cards.is_file() else {}


def _size_category(rows: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if rows < limit:
            return name
    return "n>1M"


def check_pushable(
    run_dir: str | os.PathLike, *, classifier: str = "ddb_ii", dataset: bool = True
) -> dict[str, list[str]]:
    """Every artefact `push_run` sends present, and no symbolic link anywhere it would read (checked before
    anything is sent or locked: all repos go, or none); returns each artefact's files."""
    from .layout import RunLayout

    layout = RunLayout(Path(run_dir))
    folders = layout.artefacts(classifier)
    for kind, folder in folders.items():
        if not folder.is_dir():
            raise FileNotFoundError(f"no {kind} artefact at {folder}; run `hf-ddb run` first")
    if dataset and not layout.synthetic_dataset.is_dir():
        raise FileNotFoundError(f"no synthetic dataset at {layout.synthetic_dataset}; run `hf-ddb run` first")
    files = {kind: _artifact_paths(folder, layout.root) for kind, folder in folders.items()}
    unlinked(layout.cards, layout.root)
    if dataset:
        _artifact_paths(layout.synthetic_dataset, layout.root)
        for path in (layout.samples_image, layout.synthetic / "generation_settings.json"):
            unlinked(path, layout.root)
    return files


def push_run(
    run_dir: str | os.PathLike,
    repo_prefix: str,
    *,
    classifier: str = "ddb_ii",
    api: HfApi | None = None,
    private: bool = False,
    dry_run: bool = False,
    dataset: bool = True,
    space: bool = True,
) -> dict[str, list[str]]:
    """Push a finished run's three artefacts to ``<repo_prefix>-diffusion|-amplifier|-classifier``, (with
    ``dataset``) its synthetic images to the dataset repo ``<repo_prefix>-synthetic`` and (with ``space``) its
    demo to the Gradio Space ``<repo_prefix>-demo`` (`hf_ddb.demo.space_files`); returns the files per repo. Each
    card is rendered again for its repo id first (the local card too: it now names where the artefact is
    published). The Space's folder is written to ``run_dir/space`` first, also by a ``dry_run``, which otherwise
    only lists the files (repo ids validated, nothing else written, nothing sent)."""
    from .generation import load_synthetic_dataset
    from .layout import RunLayout

    layout = RunLayout(Path(run_dir))
    folders = layout.artefacts(classifier)
    repos = {kind: f"{repo_prefix}-{ARTIFACT_SUFFIXES[kind]}" for kind in folders}
    dataset_repo = f"{repo_prefix}-{DATASET_SUFFIX}" if dataset else None
    space_repo = f"{repo_prefix}-{SPACE_SUFFIX}" if space else None
    every_repo = [*repos.values(), *([dataset_repo] if dataset_repo else []), *([space_repo] if space_repo else [])]
    files = check_pushable(run_dir, classifier=classifier, dataset=dataset)
    listed = {repos[kind]: files[kind] for kind in folders}
    if dry_run:
        for repo_id in every_repo:
            _check_repo_id(repo_id)
        sent = dict(listed)
        if dataset_repo:
            rows = load_synthetic_dataset(layout.synthetic_dataset).num_rows
            sent[dataset_repo] = synthetic_dataset_files(rows, layout.samples_image.is_file())
        if space_repo:
            sent[space_repo] = write_space(layout.root, space_repo, {**repos, "synthetic": dataset_repo})
        return sent
    api = api or HfApi()
    check_push_access(every_repo, api)  # before the first upload: all go, or none
    lineage = {layout.local_name(folder): repos[kind] for kind, folder in folders.items()}
    if dataset_repo:
        lineage[layout.local_name(layout.synthetic_dataset)] = dataset_repo
    for kind, folder in folders.items():
        rerender_card(
            layout.root,
            folder,
            repos[kind],
            synthetic_repo=dataset_repo,
            generator_repo=repos["diffusion"] if kind == "amplifier" else None,
            lineage=lineage,
        )
    sent = {}
    if dataset_repo:
        with tempfile.TemporaryDirectory(prefix="hf-ddb-dataset-") as staging:
            files = _stage_synthetic_dataset(layout.root, dataset_repo, repos["diffusion"], Path(staging))
            api.create_repo(dataset_repo, repo_type="dataset", private=private, exist_ok=True)
            api.upload_folder(
                repo_id=dataset_repo,
                folder_path=staging,
                allow_patterns=[glob.escape(path) for path in files],
                commit_message="Upload the synthetic bias-aligned images with hf-ddb",
                repo_type="dataset",
            )
            sent[dataset_repo] = files
    for kind, folder in folders.items():
        sent[repos[kind]] = push_folder(folder, repos[kind], api=api, private=private, root=layout.root)
    if space_repo:
        files = write_space(layout.root, space_repo, {**repos, "synthetic": dataset_repo})
        api.create_repo(space_repo, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        api.upload_folder(
            repo_id=space_repo,
            folder_path=str(layout.root / "space"),
            allow_patterns=[glob.escape(path) for path in files],
            commit_message="Upload the run's demo with hf-ddb",
            repo_type="space",
        )
        sent[space_repo] = files
    return sent


def write_space(run_dir: str | os.PathLike, space_id: str, repos: Mapping[str, str | None]) -> list[str]:
    """Write the run's demo Space (`hf_ddb.demo.space_files` over the pushed ``repos``) to ``run_dir/space``, in
    one rename; returns its files. Its licence is the cards' (``other`` where they differ)."""
    from .demo import space_files
    from .layout import RunLayout
    from .utils import atomic_directory

    layout = RunLayout(Path(run_dir))
    cards = _read_cards(layout)
    licenses = {entry.get("arguments", {}).get("license") for entry in cards.values()} - {None}
    files = space_files(
        layout.root,
        {kind: repo for kind, repo in repos.items() if repo},
        space_id=space_id,
        license=licenses.pop() if len(licenses) == 1 else "other",
    )
    with atomic_directory(unlinked(layout.root / "space", layout.root)) as folder:
        for name, content in files.items():
            (folder / name).write_bytes(content)
    return sorted(files)


def _check_repo_id(repo_id: str) -> None:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise HFValidationError(f"invalid Hub repo id {repo_id!r} (from the repo prefix): {err}") from err
    if "/" not in repo_id:
        raise HFValidationError(f"repo id {repo_id!r} needs a namespace: '<user or org>/<name>'")


def check_push_access(repo_ids: Sequence[str], api: HfApi) -> str:
    """Checks, before any upload, that each repo id is valid, that the Hub is reachable (not offline mode)
    and that the token is accepted (``whoami``); returns the user name. Each failure is one clear error."""
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    for repo_id in repo_ids:
        _check_repo_id(repo_id)
    if constants.HF_HUB_OFFLINE:
        raise ConnectionError("the Hub is in offline mode (HF_HUB_OFFLINE=1): pushing needs the network")
    try:
        return api.whoami()["name"]
    except HfHubHTTPError as err:
        status = getattr(err.response, "status_code", None)
        if status == 401:
            raise PermissionError("the Hub token was refused: log in with `hf auth login` or set HF_TOKEN") from err
        raise
    except LocalTokenNotFoundError as err:
        raise PermissionError("no Hub token: log in with `hf auth login`, set HF_TOKEN or pass --token") from err
    except Exception as err:  # DNS, refused connection, timeout (the HTTP client's own exception types)
        raise ConnectionError(f"cannot reach the Hub at {api.endpoint}: {type(err).__name__}: {err}") from err


def load_artifact(kind: str, repo_id_or_path: str | os.PathLike, **kwargs: Any) -> Any:
    """``from_pretrained`` for a hf-ddb artefact: the diffusion pipeline, the amplifier or a classifier."""
    if kind == "diffusion":
        from .pipeline_generation import BiasAlignedGenerationPipeline

        return BiasAlignedGenerationPipeline.from_pretrained(repo_id_or_path, **kwargs)
    if kind in ("amplifier", "classifier"):
        from transformers import AutoModelForImageClassification

        return AutoModelForImageClassification.from_pretrained(repo_id_or_path, **kwargs)
    raise ValueError(f"unknown artefact kind {kind!r}; choose one of {sorted(CARD_KINDS)}")
