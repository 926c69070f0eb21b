"""A Gradio demo of a finished run (``hf-ddb demo RUN_DIR``, or the Space `hf-ddb push` writes): the results
table and figures, and an uploaded image scored by the bias amplifier (how bias-aligned it is for a label, the
``bias-alignment`` pipeline) and classified by the debiased classifier (``image-classification``).

`build_demo` takes a folder holding the run's ``results.md`` and figures, and where the two models are: folders
of the run by default, Hub repo ids in a Space. This file needs only Gradio and transformers (the models carry
their own code), so a Space runs it as it is: `space_files` copies it there as ``app.py``. Gradio is an optional
dependency of hf-ddb: ``pip install "hf-ddb[demo]"``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["FIGURES", "build_demo", "demo_sources", "score_image", "space_files"]

# the report's figures the demo shows, with their captions
FIGURES = {
    "group_accuracy.png": "Test accuracy per (class, bias) group, every method",
    "amplifier_findings.png": "What the bias amplifier flags in the real training set (no bias labels)",
    "synthetic_samples.png": "Synthetic bias-aligned images the amplifier was trained on",
    "amplifier_losses.png": "The amplifier's loss on bias-aligned and bias-conflicting real images",
}
DEMO_INSTALL = 'pip install "hf-ddb[demo]"'


def demo_sources(run_dir: str | os.PathLike) -> dict[str, str]:
    """Where a finished run keeps what the demo shows: its folder, the amplifier's and the pushed classifier's
    model folders (``hub.classifier`` of the run's config, as `hf-ddb push` picks it)."""
    from .layout import RunLayout

    layout = RunLayout(Path(run_dir))
    results = layout.root / "results.json"
    if not results.is_file():
        raise FileNotFoundError(f"{layout.root} holds no results.json: give a finished run's folder (hf-ddb run first)")
    config = json.loads(results.read_text()).get("config", {})
    classifier = (config.get("hub") or {}).get("classifier") or next(iter(config.get("methods") or ["erm"]))
    sources = {"folder": str(layout.root), "classifier": str(layout.method_model(classifier))}
    if layout.amplifier_model.is_dir():
        sources["amplifier"] = str(layout.amplifier_model)
    return sources


def score_image(image: Any, label: str | None, classifier: Any, amplifier: Any | None) -> tuple[dict, dict]:
    """The classifier's class probabilities for ``image`` and, with an amplifier and a ``label``, how
    bias-aligned the image is for that label (the amplifier's probability of it, its loss and whether the
    amplifier sees it as bias-conflicting)."""
    if image is None:
        return {}, {}
    predicted = {row["label"]: float(row["score"]) for row in classifier(image, top_k=None)}
    alignment: dict[str, Any] = {}
    if amplifier is not None and label:
        alignment = amplifier({"image": image, "label": label})
    return predicted, alignment


def _markdown(folder: Path) -> str:
    """results.md without its image lines (the gallery shows the figures)."""
    path = folder / "results.md"
    text = path.read_text() if path.is_file() else "No results.md in this folder."
    return re.sub(r"^!\[[^\]]*\]\([^)]*\)\s*$", "", text, flags=re.MULTILINE)


def build_demo(folder: str | os.PathLike, *, classifier: str, amplifier: str | None = None) -> Any:
    """The demo as a `gradio.Blocks`: ``folder``'s results and figures, ``classifier`` and ``amplifier`` (model
    folders or Hub repo ids, loaded with their own code: ``trust_remote_code``) scoring uploaded images."""
    try:
        import gradio as gr
    except ImportError as err:
        raise ImportError(f"the demo needs Gradio: {DEMO_INSTALL}") from err
    from transformers import pipeline

    folder = Path(folder)
    classify = pipeline("image-classification", model=classifier, trust_remote_code=True)
    # the amplifier's folder brings the bias-alignment task's code (custom_pipelines): no hf-ddb needed
    score = pipeline("bias-alignment", model=amplifier, trust_remote_code=True) if amplifier else None
    labels = [classify.model.config.id2label[i] for i in sorted(classify.model.config.id2label)]
    figures = [(str(folder / name), caption) for name, caption in FIGURES.items() if (folder / name).is_file()]

    def answer(image: Any, label: str | None) -> tuple[dict, dict]:
        return score_image(image, label, classify, score)

    with gr.Blocks(title="hf-ddb: Diffusing DeBias") as demo:
        gr.Markdown(
            "# Diffusing DeBias with hf-ddb\nA classifier debiased with a bias amplifier trained only on "
            "synthetic, bias-aligned images ([paper](https://arxiv.org/abs/2502.09564))."
        )
        with gr.Tab("Try an image"):
            with gr.Row():
                with gr.Column():
                    image = gr.Image(type="pil", label="image")
                    label = gr.Dropdown(labels, value=labels[0], label="its label (for the bias amplifier)")
                    button = gr.Button("Score", variant="primary")
                with gr.Column():
                    predicted = gr.Label(num_top_classes=5, label="debiased classifier")
                    alignment = gr.JSON(label="bias amplifier: how bias-aligned the image is for its label")
            button.click(answer, inputs=[image, label], outputs=[predicted, alignment], api_name="score")
        with gr.Tab("Results"):
            gr.Markdown(_markdown(folder))
        if figures:
            with gr.Tab("Figures"):
                gr.Gallery(figures, columns=1, label="the run's figures", object_fit="contain")
    return demo


SPACE_MAIN = """

if __name__ == "__main__":  # the Space: the run's results here, the models from the repos pushed with them
    build_demo(".", classifier={classifier!r}, amplifier={amplifier!r}).launch()
"""
SPACE_REQUIREMENTS = "gradio>=5\ntransformers>=5.0\ntorch\npillow\n"


def space_files(
    run_dir: str | os.PathLike, repos: Mapping[str, str], *, space_id: str, license: str = "other"
) -> dict[str, bytes]:
    """The files of the run's demo Space: ``app.py`` (this module, launching `build_demo` over the pushed
    ``repos["classifier"]`` and ``repos["amplifier"]``), ``requirements.txt``, the Space card (``README.md``), the
    run's results and figures."""
    from .hub import citation_bibtex

    folder = Path(run_dir)
    app = Path(__file__).read_text() + SPACE_MAIN.format(
        classifier=repos["classifier"], amplifier=repos.get("amplifier")
    )
    card = "\n".join(
        [
            "---",
            f"title: {space_id.split('/')[-1]}",
            "sdk: gradio",
            "app_file: app.py",
            f"license: {license}",
            "tags:",
            "- hf-ddb",
            "- diffusing-debias",
            "models:",
            *[f"- {repos[kind]}" for kind in ("classifier", "amplifier", "diffusion") if repos.get(kind)],
            *(["datasets:", f"- {repos['synthetic']}"] if repos.get("synthetic") else []),
            "---",
            "",
            f"# {space_id.split('/')[-1]}",
            "",
            "The demo of an [hf-ddb](https://arxiv.org/abs/2502.09564) run (Diffusing DeBias): its results and "
            f"figures, and the debiased classifier [`{repos['classifier']}`](https://huggingface.co/"
            f"{repos['classifier']}) and the bias amplifier scoring an image you upload. Run it locally with "
            "`hf-ddb demo RUN_DIR`.",
            "",
            "## Citation",
            "",
            "```bibtex",
            citation_bibtex(),
            "```",
            "",
        ]
    )
    files = {
        "app.py": app.encode(),
        "requirements.txt": SPACE_REQUIREMENTS.encode(),
        "README.md": card.encode(),
    }
    for name in ("results.md", "results.json", *FIGURES):
        if (folder / name).is_file():
            files[name] = (folder / name).read_bytes()
    return files
