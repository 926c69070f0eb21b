"""Smoke tests of analysis scripts in benchmarks/ (they read stored results or train tiny models)."""

import argparse
import json

import pytest
from bias_visibility import recognition
from generator_check import rows, summary


def test_bias_visibility_trains_on_one_part_of_an_unbiased_split_and_scores_the_rest(small_cmnist):
    """Colour is what any architecture sees first: after a short training on 600 rows the MLP recognises it
    far better than chance (10%), and better than the digit."""
    split = small_cmnist["test"].shuffle(seed=0)
    args = argparse.Namespace(train_rows=600, image_size=16, epochs=20.0, seed=0, model_args=None)
    colour, seconds = recognition("mlp", split, "bias_label", args)
    digit, _ = recognition("mlp", split, "label", args)
    assert colour > 0.5 and colour > digit and seconds >= 0


def test_generator_check_judges_every_stored_amplifier_by_the_current_rule(tmp_path):
    """A stored run's check is judged again: the one that passed the old half limit at 46% flagged warns."""
    stored = {
        "command": "python benchmarks/quality.py --benchmark corrupted_mnist",
        "results": {
            "0.01": {
                "ba_detection": [
                    {
                        "auroc": 0.82,
                        "fidelity": {"synthetic_heldout_accuracy": 0.55, "real_train_accuracy": 0.538, "warnings": []},
                    },
                    {
                        "auroc": 0.99,
                        "fidelity": {"synthetic_heldout_accuracy": 0.8, "real_train_accuracy": 0.986, "warnings": []},
                    },
                    {"auroc": 0.99},  # written before the check existed: skipped
                ]
            }
        },
    }
    (tmp_path / "quality_corrupted_mnist_0.01.json").write_text(json.dumps(stored))
    found = rows(tmp_path)
    assert [(r["seed"], r["warnings_when_run"], r["warnings_now"]) for r in found] == [(0, 0, 1), (1, 0, 0)]
    result = summary(found)
    assert (result["missed"], result["missed_warned"], result["carried"], result["carried_warned"]) == (1, 1, 1, 0)


def test_choose_defaults_ranks_by_the_label_free_score_and_only_reports_the_confirmation(tmp_path):
    """The candidate with the higher label-free dev score is chosen even where its confirmation test is lower:
    test numbers are shown, never read by the choice; a candidate without a score leaves the choice open."""
    from choose_defaults import choose

    def run(score, test):
        return {"by_selection": {"valid_mean_pseudo_group": {"label_free_score": score, "unbiased_accuracy": test}}}

    def write(name, methods):
        path = tmp_path / name
        path.write_text(json.dumps({"results": {"0.01": {"methods": methods}}}))
        return str(path)

    dev = write("dev.json", {"a": [run(0.9, 0.1), run(0.8, 0.1)], "b": [run(0.7, 0.99)], "c": [{"by_selection": {}}]})
    confirm = write("confirm.json", {"a": [run(0.5, 0.6)], "b": [run(0.5, 0.9)]})
    outcome = choose([dev], [confirm], {"weighting": ["a", "b"], "open": ["a", "c"]})
    assert outcome["weighting"]["chosen"] == "a"
    assert outcome["weighting"]["candidates"]["a"]["dev_label_free_score"] == pytest.approx(0.85)
    assert outcome["weighting"]["candidates"]["b"]["confirm_test_auto"] == (0.9, 0.0)
    assert outcome["open"]["chosen"] is None


def test_a_perfect_amplifier_flags_exactly_the_bias_conflicting_rows(small_cmnist):
    """benchmarks/perfect_amplifier.py: the ceiling analysis' signals read off the bias labels."""
    import numpy as np
    from perfect_amplifier import perfect_signals

    from hf_ddb.amplifier import BiasSignals, pseudo_bias_labels

    rows = len(small_cmnist["train"])
    scored = BiasSignals({"train": {"loss": np.zeros(rows)}}, {"train": np.zeros(rows, bool)})
    signals = perfect_signals(scored, small_cmnist)
    conflicting = np.asarray(small_cmnist["train"]["bias_label"]) != np.asarray(small_cmnist["train"]["label"])
    assert conflicting.any() and (signals.flags["train"] == conflicting).all()
    assert (pseudo_bias_labels(dict(signals.splits["train"]), "misclassified") == conflicting).all()
