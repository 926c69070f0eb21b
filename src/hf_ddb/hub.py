"""Model cards and the Hub: render the three artefacts' cards, push their folders, load them back.

Cards come from the Jinja templates in ``model_cards/`` (shipped as ``hf_ddb/model_cards``) through
huggingface_hub's `ModelCard.from_template`; the YAML header (tags, library, datasets, ``model-index``) is
a `ModelCardData`. `push_folder` uploads one artefact folder in a single commit and returns exactly the
paths it sent; `push_run` sends the diffusion pipeline, the amplifier and the debiased classifier.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData

__all__ = [
    "CARD_KINDS",
    "check_push_access",
    "load_artifact",
    "push_folder",
    "push_run",
    "render_model_card",
    "template_path",
]

CARD_KINDS = {"diffusion": "diffusers", "amplifier": "transformers", "classifier": "transformers"}
ARTIFACT_SUFFIXES = {"diffusion": "diffusion", "amplifier": "amplifier", "classifier": "classifier"}


def template_path(kind: str) -> Path:
    """The Jinja template of ``kind``: the packaged copy, or ``model_cards/`` of a source checkout."""
    if kind not in CARD_KINDS:
        raise ValueError(f"unknown card kind {kind!r}; choose one of {sorted(CARD_KINDS)}")
    here = Path(__file__).resolve().parent
    for folder in (here / "model_cards", here.parents[1] / "model_cards"):
        if (folder / f"{kind}.md").is_file():
            return folder / f"{kind}.md"
    raise FileNotFoundError(f"model card template {kind}.md not found next to hf_ddb or in model_cards/")


def render_model_card(
    kind: str,
    *,
    model_name: str,
    benchmark: str,
    metrics: Mapping[str, float] | None = None,
    metric_names: Mapping[str, str] | None = None,
    dataset_id: str | None = None,
    split: str = "test",
    tags: Sequence[str] = (),
    **context: Any,
) -> ModelCard:
    """A `ModelCard` for one artefact; ``metrics`` (fractions) become ``model-index`` results.

    ``context`` fills the template (tables, image paths, how-to-load snippets). ``dataset_id`` is the Hub
    dataset the model was trained on, when there is one (embedded benchmarks have none).
    """
    eval_results = [
        EvalResult(
            task_type="image-classification",
            dataset_type=dataset_id or f"hf-ddb/{benchmark}",
            dataset_name=context.get("dataset_title", benchmark),
            dataset_split=split,
            metric_type=key,
            metric_name=(metric_names or {}).get(key, key),
            metric_value=round(float(value), 4),
        )
        for key, value in (metrics or {}).items()
    ]
    data = ModelCardData(
        model_name=model_name,
        library_name=CARD_KINDS[kind],
        license="apache-2.0",
        tags=["hf-ddb", "diffusing-debias", "debiasing", f"ddb-{kind}", *tags],
        datasets=[dataset_id] if dataset_id else None,
        pipeline_tag=None if kind == "diffusion" else "image-classification",
        eval_results=eval_results or None,
    )
    return ModelCard.from_template(
        data, template_path=str(template_path(kind)), model_name=model_name, benchmark_name=benchmark, **context
    )


def _artifact_paths(folder: Path) -> list[str]:
    """Every regular file of an artefact folder, as sorted paths relative to it: without hidden files, training
    leftovers or symbolic links (a link could point outside the folder: it is never followed nor uploaded)."""
    skip = {"checkpoints", "trainer"}
    found = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in skip)
        for name in files:
            path = Path(root) / name
            if not name.startswith(".") and path.is_file() and not path.is_symlink():
                found.append(path.relative_to(folder).as_posix())
    return sorted(found)


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    api: HfApi | None = None,
    private: bool = False,
    commit_message: str = "Upload with hf-ddb",
) -> list[str]:
    """Create ``repo_id`` (if needed) and upload every file of ``folder`` in one commit.

    Returns the uploaded paths (relative, sorted). A folder without ``README.md`` is refused: every hf-ddb
    artefact carries its model card.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"nothing to push: {folder} is not a folder (run the pipeline first)")
    paths = _artifact_paths(folder)
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


def push_run(
    run_dir: str | os.PathLike,
    repo_prefix: str,
    *,
    classifier: str = "ddb_ii",
    api: HfApi | None = None,
    private: bool = False,
    dry_run: bool = False,
) -> dict[str, list[str]]:
    """Push a finished run's three artefacts to ``<repo_prefix>-diffusion|-amplifier|-classifier``; returns the
    files per repo. ``dry_run``: only list them (repo ids validated, nothing sent, no token needed)."""
    from .layout import RunLayout

    folders = RunLayout(Path(run_dir)).artefacts(classifier)
    repos = {kind: f"{repo_prefix}-{ARTIFACT_SUFFIXES[kind]}" for kind in folders}
    for kind, folder in folders.items():
        if not folder.is_dir():
            raise FileNotFoundError(f"no {kind} artefact at {folder}; run `hf-ddb run` first")
    if dry_run:
        for repo_id in repos.values():
            _check_repo_id(repo_id)
        return {repos[kind]: _artifact_paths(folder) for kind, folder in folders.items()}
    api = api or HfApi()
    check_push_access(list(repos.values()), api)  # before the first upload: all three go, or none
    return {repos[kind]: push_folder(folder, repos[kind], api=api, private=private) for kind, folder in folders.items()}


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
        from .pipeline_bias_aligned import BiasAlignedGenerationPipeline

        return BiasAlignedGenerationPipeline.from_pretrained(repo_id_or_path, **kwargs)
    if kind in ("amplifier", "classifier"):
        from transformers import AutoModelForImageClassification

        return AutoModelForImageClassification.from_pretrained(repo_id_or_path, **kwargs)
    raise ValueError(f"unknown artefact kind {kind!r}; choose one of {sorted(CARD_KINDS)}")
