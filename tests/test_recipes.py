import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from datasets import DatasetDict
from transformers import TrainerCallback

from hf_ddb import TrainingConfig, build_classifier, evaluate_groups
from hf_ddb import inputs as inputs_module
from hf_ddb import objectives as objectives_module
from hf_ddb import trainer as trainer_module
from hf_ddb import training as training_module
from hf_ddb.amplifier import (
    BiasAmplifierTrainer,
    bias_signals,
    detection_report,
    generator_fidelity,
    heldout_synthetic_accuracy,
    pseudo_bias_labels,
)
from hf_ddb.debiasing import train_with_recipe
from hf_ddb.inputs import predict_logits
from hf_ddb.metrics import group_metrics
from hf_ddb.objectives import (
    ERMObjective,
    GroupBalancedSampler,
    GroupDROObjective,
    RelativeDifficultyObjective,
    _LossEMA,
    gce_loss,
)
from hf_ddb.recipes import (
    DDBI,
    DDBII,
    JTT,
    RECIPES,
    BiasEnsemble,
    BiasInference,
    DisEnt,
    GroupDROOracle,
    LfF,
    RecipeContext,
    committee_aligned,
)
from hf_ddb.selection import SELECTION_RULES
from hf_ddb.trainer import DebiasModel, DebiasTrainer, selection_score


def test_gce_loss_value_and_gradient():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]], requires_grad=True)
    labels = torch.tensor([0, 2])
    q = 0.7
    p = F.softmax(logits, 1)[torch.arange(2), labels]
    torch.testing.assert_close(gce_loss(logits, labels, q), (1 - p**q) / q)
    (grad_gce,) = torch.autograd.grad(gce_loss(logits, labels, q).sum(), logits)
    ce = F.cross_entropy(logits, labels, reduction="none")
    grads_ce = torch.stack([torch.autograd.grad(ce[i], logits, retain_graph=True)[0][i] for i in range(2)])
    torch.testing.assert_close(grad_gce, p.detach()[:, None] ** q * grads_ce)  # dGCE = p^q dCE
    with pytest.raises(ValueError, match="0 < q <= 1"):
        gce_loss(logits, labels, 0.0)


def test_lff_loss_ema_and_class_max_normalisation():
    ema = _LossEMA(torch.tensor([0, 0, 1]), alpha=0.7)
    ema.update(torch.tensor([0, 2]), torch.tensor([2.0, 4.0]))
    torch.testing.assert_close(ema.values, torch.tensor([2.0, 0.0, 4.0]))  # first update = the loss itself
    ema.update(torch.tensor([0, 1]), torch.tensor([1.0, 3.0]))
    torch.testing.assert_close(ema.values, torch.tensor([0.7 * 2 + 0.3 * 1, 3.0, 4.0]))
    # class 0 max is 3.0 (sample 1), class 1 max is 4.0
    torch.testing.assert_close(ema.normalised(torch.tensor([0, 1, 2])), torch.tensor([1.7 / 3.0, 1.0, 1.0]))


def test_ddb_ii_weight_floor_bounds_the_lff_weights():
    labels, index, ce = torch.tensor([0, 0, 1, 1]), torch.arange(4), torch.ones(4)
    losses = {}
    for floor in (0.0, 0.1):
        confident = np.array([1e-6, 2.0, 1e-6, 3.0])  # a confident frozen amplifier's losses
        objective = RelativeDifficultyObjective(bias_losses=confident, weight_floor=floor)
        objective.bind(labels, torch.device("cpu"))
        losses[floor] = (ce * objective.weights(ce, None, index)).mean()
    # normalised L_B = [~0, 1, ~0, 1], L_D = 1 everywhere: W = [~0, 0.5, ~0, 0.5], or [0.1, 0.5, 0.1, 0.5]
    torch.testing.assert_close(losses[0.0], torch.tensor(0.25), atol=1e-5, rtol=0)
    torch.testing.assert_close(losses[0.1], torch.tensor(0.3))
    with pytest.raises(ValueError, match="weight_floor"):
        DDBII(weight_floor=1.5)


@pytest.mark.parametrize("weighting", ["class", "group"])
def test_ddb_ii_weight_normalisations_equalise_mass(weighting):
    labels, index = torch.tensor([0, 0, 0, 0, 1, 1]), torch.arange(6)
    groups = labels * 2 + torch.tensor([0, 0, 0, 1, 0, 1])  # one flagged row per class
    frozen = np.array([1e-3, 2e-3, 1e-3, 2.0, 1e-3, 1.0])  # the frozen amplifier's losses
    objective = RelativeDifficultyObjective(
        bias_losses=frozen, weight_normalisation=weighting, group_ids=groups.numpy()
    )
    objective.bind(labels, torch.device("cpu"))
    weights = objective.weights(torch.ones(6), None, index)
    keys = labels if weighting == "class" else groups
    mass = torch.zeros(int(keys.max()) + 1).scatter_add(0, keys, weights)
    if weighting == "class":  # mean weight 1 in each class
        torch.testing.assert_close(mass / torch.bincount(keys), torch.ones(2))
    else:  # every present pseudo group the same total weight, mean weight 1 overall
        torch.testing.assert_close(mass, torch.full((4,), 6 / 4))
    assert weights[3] > weights[0]  # the flagged row still outweighs an aligned one of its class


def _amplifier_signals(dataset):
    """What a perfect colour amplifier would say: right (small loss) on aligned rows, wrong on the others."""
    aligned = np.asarray(dataset["label"]) == np.asarray(dataset["bias_label"])
    loss = np.where(aligned, 1e-3, 3.0)
    return {
        "loss": loss,
        "prob_true": np.exp(-loss),
        "correct": aligned,
        "prediction": np.asarray(dataset["bias_label"]),
    }


def test_ddb_ii_weightings_configure_the_inference(small_cmnist):
    train, valid = small_cmnist["train"], small_cmnist["valid"]
    signals = {"train": _amplifier_signals(train), "valid": _amplifier_signals(valid)}
    conflicting = ~signals["train"]["correct"]
    config = TrainingConfig()
    context = RecipeContext(train, valid, None, config, amplifier_signals=signals)
    floor = DDBII(weighting="floor").infer(context).objective
    assert floor.weight_floor == pytest.approx(conflicting.mean()) and floor.weight_normalisation == "none"
    group = DDBII(weighting="group").infer(context).objective
    expected = np.asarray(train["label"]) * 10 + (np.asarray(train["bias_label"]) - np.asarray(train["label"])) % 10
    assert group.weight_normalisation == "group" and np.array_equal(group.group_ids, expected)
    flag = DDBII(weighting="group", groups="flag").infer(context).objective
    assert np.array_equal(flag.group_ids % 2, conflicting)
    both = DDBII(weighting="group_floor").infer(context).objective
    assert both.weight_floor == pytest.approx(conflicting.mean()) and both.weight_normalisation == "group"
    assert DDBII().weighting == "cell"
    lff = DDBII(weighting="lff").infer(context).objective
    assert lff.weight_floor == 0.0 and lff.weight_normalisation == "none" and lff.group_ids is None
    with pytest.raises(ValueError, match="weighting must be one of"):
        DDBII(weighting="balanced")


def test_mean_pseudo_group_selection_scores_the_mean_over_pseudo_groups(small_cmnist, monkeypatch):
    valid = small_cmnist["valid"]
    flags = ~_amplifier_signals(valid)["correct"]  # flagged = truly conflicting here
    inference = BiasInference(valid_pseudo_bias=flags.astype(np.int64))
    colour_guess = np.eye(10)[np.asarray(valid["bias_label"])]  # a model that predicts the colour: biased
    monkeypatch.setattr(trainer_module, "predict_logits", lambda model, data: colour_guess)
    model = build_classifier("mlp", {i: str(i) for i in range(10)}, image_size=16, seed=0)[0]
    scores = {
        rule: selection_score(rule, valid, inference.valid_pseudo_bias)(model)
        for rule in list(SELECTION_RULES)[:4]
        if rule != "last"
    }
    present = {(c, f) for c, f in zip(valid["label"], flags, strict=True)}
    aligned_groups = sum(1 for _, f in present if not f)
    assert scores["valid_accuracy"] == pytest.approx(1 - flags.mean())  # the shortcut looks excellent
    assert scores["valid_worst_pseudo_group"] == 0.0
    assert scores["valid_mean_pseudo_group"] == pytest.approx(aligned_groups / len(present))


def test_generator_fidelity_warns_only_when_the_amplifier_learned_no_bias():
    assert generator_fidelity(0.97, 0.99, 10)["warnings"] == []  # right on 99% of the real rows
    weak = generator_fidelity(0.30, 0.99, 10)["warnings"]  # classes barely recognisable (chance 10%)
    assert len(weak) == 1 and "held-out synthetic" in weak[0]
    rare = generator_fidelity(1.0, 0.87, 10)["warnings"]  # corrupted_mnist's gap with the MLP: 100% vs 87%
    assert len(rare) == 1 and "did not reproduce the real bias" in rare[0]
    assert generator_fidelity(0.98, 0.99, 10)["warnings"] == []  # background_mnist: 98% synthetic, 99% real
    assert generator_fidelity(0.69, 0.938, 10)["warnings"] == []  # colored_mnist 5%: the most flagged, 6.2%
    # corrupted_mnist 1%, seed 1: held-out on the threshold (55%), real as accurate, but 46% of the set flagged
    flags_many = generator_fidelity(0.55, 0.538, 10)
    assert len(flags_many["warnings"]) == 1 and "flags 46%" in flags_many["warnings"][0]
    assert flags_many["flagged_share"] == pytest.approx(0.462)
    assert generator_fidelity(0.80, 0.76, 10)["warnings"] == []  # a quarter flagged is still a bias signal
    assert generator_fidelity(0.70, 0.99, 2)["warnings"]  # binary: 70% is under halfway from 50% to 100%


def test_heldout_synthetic_accuracy_trains_a_twin_on_the_rest(small_cmnist):
    synthetic = small_cmnist["train"].select(range(400)).remove_columns("bias_label")
    seen = []

    def train(model, images):
        seen.append(len(images))

    accuracy = heldout_synthetic_accuracy(synthetic, lambda: _constant_model(3), train, fraction=0.25, seed=0)
    assert seen == [300]
    held_out = synthetic.train_test_split(test_size=0.25, stratify_by_column="label", seed=0)["test"]
    assert accuracy == pytest.approx(np.mean(np.asarray(held_out["label"]) == 3))


def _constant_model(label):
    """An MLP that predicts ``label`` for every image (zero weights, one positive bias)."""
    model = build_classifier("mlp", {i: str(i) for i in range(10)}, image_size=16, seed=0)[0]
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.classifier.bias[label] = 1.0
    return model


def test_group_dro_weight_update_hand_case():
    sizes = np.repeat([0, 1], [100, 4])  # group 0 has 100 training rows, group 1 four
    objective = GroupDROObjective(group_ids=sizes, step_size=0.1, adjustment=0.0)
    objective.bind(torch.zeros(104, dtype=torch.long), torch.device("cpu"))
    torch.testing.assert_close(objective.group_weights, torch.tensor([0.5, 0.5]))
    ce = torch.tensor([1.0, 3.0, 4.0])  # group 0 mean loss 2, group 1 loss 4
    groups = torch.tensor([0, 0, 1])
    loss = objective.group_loss(ce, groups)
    raw = torch.tensor([0.5 * np.exp(0.1 * 2.0), 0.5 * np.exp(0.1 * 4.0)], dtype=torch.float32)
    torch.testing.assert_close(objective.group_weights, raw / raw.sum())
    torch.testing.assert_close(loss, (raw / raw.sum() * torch.tensor([2.0, 4.0])).sum())
    before = objective.group_weights.clone()
    objective.adjustment = 1.0  # adds C / sqrt(n_g): 0.1 for group 0, 0.5 for group 1
    objective.group_loss(ce, groups)
    raw = before * torch.exp(0.1 * torch.tensor([2.0 + 0.1, 4.0 + 0.5]))
    torch.testing.assert_close(objective.group_weights, raw / raw.sum())
    with pytest.raises(ValueError, match="step_size"):
        GroupDROObjective(group_ids=sizes, step_size=float("nan"))


def test_jtt_error_set_gets_upweighted(small_cmnist, monkeypatch):
    train = small_cmnist["train"].select(range(6))
    labels = np.asarray(train["label"])
    wrong = np.array([True, False, True, False, False, False])
    logits = np.eye(10)[np.where(wrong, (labels + 1) % 10, labels)]
    monkeypatch.setattr(training_module, "train_erm", lambda *a, **k: None)
    monkeypatch.setattr(inputs_module, "predict_logits", lambda model, dataset: logits)
    inference = JTT(upweight=7.0).infer(RecipeContext(train, train, lambda: None))
    assert isinstance(inference.objective, ERMObjective)
    assert inference.objective.sample_weights.tolist() == [7.0, 1.0, 7.0, 1.0, 1.0, 1.0]
    assert inference.info["error_set_size"] == 2


def test_pseudo_label_rules():
    signals = {
        "loss": np.array([0.01, 0.02, 0.03, 5.0, 0.015, 6.0, 0.02, 0.01, 0.025, 0.02]),
        "correct": np.array([True, True, True, False, True, True, True, True, True, True]),
    }
    assert np.flatnonzero(pseudo_bias_labels(signals)).tolist() == [3]  # misclassified (default)
    assert np.flatnonzero(pseudo_bias_labels(signals, "top_fraction", fraction=0.2)).tolist() == [3, 5]
    assert np.flatnonzero(pseudo_bias_labels(signals, "loss_mixture")).tolist() == [3, 5]
    with pytest.raises(ValueError, match="unknown pseudo-label rule"):
        pseudo_bias_labels(signals, "magic")


def test_amplifier_refuses_real_data(small_cmnist, tmp_path):
    model, _ = build_classifier("mlp", {i: str(i) for i in range(10)}, image_size=16)
    args = TrainingConfig().to_training_arguments(tmp_path)
    with pytest.raises(ValueError, match="synthetic images only"):
        BiasAmplifierTrainer(model, args, small_cmnist["train"])
    with pytest.raises(ValueError, match="synthetic images only"):  # stripping the column does not hide it
        BiasAmplifierTrainer(model, args, small_cmnist["train"].remove_columns("bias_label"))


class _NoTest(DatasetDict):
    def __getitem__(self, key):
        if key == "test":
            raise AssertionError("model selection touched the test split")
        return super().__getitem__(key)


def test_selection_never_touches_test(small_cmnist, tmp_path):
    data = _NoTest({k: v.select(range(200)) for k, v in small_cmnist.items()})
    make = lambda: build_classifier("mlp", {i: str(i) for i in range(10)}, image_size=16, seed=0)[0]  # noqa: E731
    context = RecipeContext(data["train"], data["valid"], make, TrainingConfig(epochs=2, batch_size=64))
    model, info = train_with_recipe(GroupDROOracle(), context, str(tmp_path), selection="valid_accuracy")
    assert info["uses_bias_labels"] is True and len(info["selection_history"]) == 2


def test_inference_length_mismatch_is_clear(small_cmnist, tmp_path):
    model, _ = build_classifier("mlp", {i: str(i) for i in range(10)}, image_size=16)
    args = TrainingConfig().to_training_arguments(tmp_path)
    bad = ERMObjective(sample_weights=np.ones(3))
    with pytest.raises(ValueError, match="sample_weights has 3 entries but the training set has 3000"):
        DebiasTrainer(model, args, small_cmnist["train"], bad)
    with pytest.raises(ValueError, match="finite, non-negative"):
        ERMObjective(sample_weights=np.array([1.0, np.nan]))


def test_ddb_recipes_end_to_end_on_tiny_benchmark(small_cmnist, tmp_path):
    """diffusion -> synthetic data -> bias amplifier -> DDB-I and DDB-II, all tiny and real code paths."""
    from hf_ddb.diffusion import DiffusionConfig, train_diffusion
    from hf_ddb.generation import GenerationConfig, generate_synthetic_dataset

    train = small_cmnist["train"]
    diffusion = train_diffusion(train, DiffusionConfig.from_preset("tiny", max_train_steps=10), tmp_path / "diffusion")
    synthetic = generate_synthetic_dataset(
        diffusion.pipeline,
        tmp_path / "synthetic",
        GenerationConfig(num_images_per_class=8, batch_size=8, num_inference_steps=3),
    )
    names = {i: str(i) for i in range(10)}
    amplifier, _ = build_classifier("mlp", names, image_size=8, seed=0)
    args = TrainingConfig(epochs=2, batch_size=16).to_training_arguments(tmp_path / "ba", disable_tqdm=True)
    BiasAmplifierTrainer(amplifier, args, synthetic, loss="gce", class_balanced=True).train()
    signals = bias_signals(amplifier, train)  # real 16 px images, resized to the amplifier's 8 px
    assert signals["loss"].shape == (3000,)
    flags = pseudo_bias_labels(signals)
    report = detection_report(signals, flags, train)
    truth = np.asarray(train["label"]) != np.asarray(train["bias_label"])
    assert report["num_conflicting"] == 30 and report["num_flagged"] == int(flags.sum())
    assert report["ba_accuracy_conflicting"] == signals["correct"][truth].mean()

    make = lambda: build_classifier("mlp", names, image_size=16, seed=0)[0]  # noqa: E731
    data = {k: v.select(range(600)) if k != "train" else v for k, v in small_cmnist.items()}
    context = RecipeContext(
        data["train"], data["valid"], make, TrainingConfig(epochs=1, batch_size=128), amplifier=amplifier
    )
    for recipe in (DDBI(), DDBII()):
        model, info = train_with_recipe(
            recipe,
            context,
            str(tmp_path / recipe.name),
            selection="valid_worst_pseudo_group",
        )
        metrics = evaluate_groups(model, small_cmnist["test"])
        assert info["recipe"] == recipe.name and not info["uses_bias_labels"]
        assert info["pseudo_conflicting"] == int(flags.sum())  # trained on the amplifier's pseudo groups
        assert metrics["aligned_accuracy"] > 0.5  # one epoch learns the colour shortcut at least


def test_memorisation_analysis_reports_every_epoch(small_cmnist, tmp_path):
    from datasets import Dataset
    from memorisation import memorisation_analysis

    from hf_ddb.data import origin_info

    real = small_cmnist["train"]
    synthetic_rows = real.select(range(300)).remove_columns("bias_label")
    synthetic = Dataset.from_dict(
        synthetic_rows.to_dict(),
        features=synthetic_rows.features,
        info=origin_info("synthetic", synthetic_rows.features),
    )
    make = lambda: build_classifier("mlp", {i: str(i) for i in range(10)}, image_size=16, seed=0)[0]  # noqa: E731
    args = TrainingConfig(epochs=2, batch_size=128).to_training_arguments(tmp_path, disable_tqdm=True)
    results = memorisation_analysis(real, synthetic, make, args)
    assert set(results) == {"synthetic_ce", "real_ce", "real_gce"}
    for history in results.values():
        assert [row["epoch"] for row in history] == [1, 2]
        assert history[-1]["num_conflicting"] == 30
        assert history[-1]["auroc"] != history[0]["auroc"]  # each epoch scores the model as it now stands


def test_lff_bias_model_is_initialised_independently(small_cmnist):
    names = dict(enumerate(small_cmnist["train"].features["label"].names))

    def make():
        return build_classifier("mlp", names, image_size=16, seed=0)[0]

    inference = LfF(gce_q=0.5).infer(RecipeContext(small_cmnist["train"], small_cmnist["valid"], make))
    again = LfF().infer(RecipeContext(None, None, make)).objective.bias_model.state_dict()
    target, bias = make().state_dict(), inference.objective.bias_model.state_dict()
    assert inference.objective.gce_q == 0.5
    assert not any(torch.equal(bias[k], target[k]) for k in target if k.endswith("weight"))  # not the target's init
    assert all(torch.equal(bias[k], again[k]) for k in bias)  # but seeded: the same every time


class _BiasGradients(TrainerCallback):
    """Records, at the start of every step, the largest gradient the bias model still carries."""

    def __init__(self) -> None:
        self.leftover: list[float] = []

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        grads = [p.grad.abs().max().item() for p in model.auxiliaries["bias"].parameters() if p.grad is not None]
        self.leftover.append(max(grads, default=0.0))


def test_lff_bias_model_is_trained_inside_the_trainers_model(small_cmnist, tmp_path):
    """Regression: the co-trained bias model's gradients used to accumulate over the run (never zeroed)."""
    names = dict(enumerate(small_cmnist["train"].features["label"].names))
    make = lambda: build_classifier("mlp", names, image_size=16, seed=0)[0]  # noqa: E731
    train = small_cmnist["train"].select(range(512))
    objective = LfF().infer(RecipeContext(train, None, make)).objective
    bias_before = copy.deepcopy(objective.bias_model.state_dict())
    target = make()
    probe = _BiasGradients()
    args = TrainingConfig(epochs=1, batch_size=64).to_training_arguments(tmp_path, disable_tqdm=True)
    trainer = DebiasTrainer(target, args, train, objective, callbacks=[probe])
    assert isinstance(trainer.model, DebiasModel) and trainer.target is target
    owned = {id(p) for p in trainer.model.parameters()}
    assert all(id(p) in owned for p in objective.bias_model.parameters())
    trainer.train()
    assert len(probe.leftover) == 8
    assert probe.leftover[1:] == [0.0] * 7  # each step starts from zero gradients: zero_grad reached the bias model
    after = objective.bias_model.state_dict()
    assert any(not torch.equal(bias_before[k], after[k]) for k in after)  # and it was trained


def test_group_balanced_sampler_draws_groups_evenly_and_shards():
    from accelerate.data_loader import BatchSamplerShard

    groups = np.array([0] * 900 + [1] * 90 + [2] * 10)
    sampler = GroupBalancedSampler(groups, num_samples=30000, seed=3)
    drawn = np.bincount(groups[list(sampler)], minlength=3) / 30000
    np.testing.assert_allclose(drawn, [1 / 3] * 3, atol=0.015)
    first = list(sampler)
    assert list(sampler) == first  # the same epoch draws the same rows
    sampler.set_epoch(1)
    assert list(sampler) != first  # a new epoch draws new rows
    # two processes: each builds the same sampler and takes its own batches, none lost, none twice
    sampler = GroupBalancedSampler(groups, seed=3)
    batches = list(torch.utils.data.BatchSampler(sampler, batch_size=50, drop_last=False))
    shards = [
        list(BatchSamplerShard(torch.utils.data.BatchSampler(GroupBalancedSampler(groups, seed=3), 50, False), 2, rank))
        for rank in range(2)
    ]
    assert shards[0] == batches[0::2] and shards[1] == batches[1::2]
    with pytest.raises(ValueError, match="non-negative"):
        GroupBalancedSampler([0, -1])


def test_group_balanced_training_feeds_rare_groups(small_cmnist, tmp_path):
    train = small_cmnist["train"].select(range(1000))
    groups = (np.asarray(train["label"]) != np.asarray(train["bias_label"])).astype(int)
    seen = []
    model = build_classifier("mlp", {i: str(i) for i in range(10)}, image_size=16, seed=0)[0]
    args = TrainingConfig(epochs=1, batch_size=100).to_training_arguments(tmp_path, disable_tqdm=True)
    objective = GroupDROObjective(group_ids=groups, num_groups=2, group_balanced=True)
    trainer = DebiasTrainer(model, args, train, objective)
    for batch in trainer.get_train_dataloader():
        seen.extend(groups[batch["index"].numpy()].tolist())
    assert len(seen) == 1000 and 0.4 < np.mean(seen) < 0.6  # ~10 conflicting rows drawn half the time


def test_oracle_tunes_step_size_and_adjustment_on_valid(small_cmnist, tmp_path):
    data = {k: v.select(range(300)) for k, v in small_cmnist.items()}
    make = lambda: build_classifier("mlp", {i: str(i) for i in range(10)}, image_size=16, seed=0)[0]  # noqa: E731
    recipe = GroupDROOracle(step_sizes=(0.01, 0.5), adjustments=(0.0,))
    context = RecipeContext(data["train"], data["valid"], make, TrainingConfig(epochs=1, batch_size=100))
    model, info = train_with_recipe(recipe, context, str(tmp_path))
    scores = [row["oracle_valid_unbiased"] for row in info["search"]]
    assert [row["step_size"] for row in info["search"]] == [0.01, 0.5]
    assert info["tuned"]["step_size"] == [0.01, 0.5][int(np.argmax(scores))]
    labels, bias = np.asarray(data["valid"]["label"]), np.asarray(data["valid"]["bias_label"])
    unbiased = group_metrics(predict_logits(model, data["valid"]), labels, bias)["unbiased_accuracy"]
    assert unbiased == max(scores)  # the returned model is the best candidate
    with pytest.raises(ValueError, match=r"step_size must be in \(0.0, inf\], got 0.0"):
        GroupDROOracle(step_sizes=(0.0,))


def test_bias_ensemble_committee_detection_rule():
    prob_true = np.array(
        [  # 5 members x 4 rows
            [0.999, 0.999, 0.50, 0.995],
            [0.999, 0.999, 0.99, 0.995],
            [0.999, 0.10, 0.999, 0.20],
            [0.999, 0.10, 0.999, 0.995],
            [0.50, 0.10, 0.10, 0.10],
        ]
    )
    # row 0: 4 confident members; row 1: 2; row 2: 2 (0.99 is not above the threshold); row 3: 3
    assert committee_aligned(prob_true, 0.99, 3).tolist() == [True, False, False, True]
    assert committee_aligned(prob_true, 0.99, 2).tolist() == [True, True, True, True]
    with pytest.raises(ValueError, match="agreement"):
        BiasEnsemble(num_models=2, agreement=3)


def test_bias_ensemble_trains_its_bias_model_on_committee_aligned_rows_only(small_cmnist, tmp_path):
    names = dict(enumerate(small_cmnist["train"].features["label"].names))
    make = lambda: build_classifier("mlp", names, image_size=16, seed=0)[0]  # noqa: E731
    train, valid = small_cmnist["train"].select(range(256)), small_cmnist["valid"].select(range(100))
    recipe = BiasEnsemble(num_models=3, agreement=2, committee_steps=3, check_every=2, committee_learning_rate=0.05)
    inference = recipe.infer(RecipeContext(train, valid, make, TrainingConfig(batch_size=64, seed=0)))
    objective = inference.objective
    assert isinstance(objective, RelativeDifficultyObjective) and objective.bias_loss == "ce"
    aligned = objective.bias_train_mask
    assert aligned.shape == (256,) and inference.conflict_scores.shape == (256,)
    assert inference.info["pseudo_conflicting"] == int((~aligned).sum())
    # the bias model's loss ignores the rows flagged conflicting: their gradient is zero
    aligned[:] = np.arange(256) % 2 == 0
    args = TrainingConfig(epochs=1, batch_size=256).to_training_arguments(tmp_path, disable_tqdm=True)
    trainer = DebiasTrainer(make(), args, train, objective)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(256)])
    logits = {}
    forward = trainer.model.forward

    def keep_bias_logits(**inputs):
        output = forward(**inputs)
        logits["bias"] = output.auxiliary_logits["bias"]
        return output

    labels, index = batch.pop("labels"), batch.pop("index")
    loss, _, parts = objective.loss(trainer, keep_bias_logits, batch, labels, index)
    assert set(parts) == {"target", "bias_model"} and torch.equal(loss, parts["target"] + parts["bias_model"])
    (grad,) = torch.autograd.grad(loss, logits["bias"])
    assert grad[1::2].abs().max() == 0 and grad[0::2].abs().max() > 0


def test_disent_swap_routes_gradients_and_keeps_labels_aligned(small_cmnist, tmp_path, monkeypatch):
    names = dict(enumerate(small_cmnist["train"].features["label"].names))
    make = lambda: build_classifier("mlp", names, image_size=16, seed=0)[0]  # noqa: E731
    train = small_cmnist["train"].select(range(64))
    recipe = DisEnt()
    inference = recipe.infer(RecipeContext(train, None, make))
    target = inference.make_target()
    assert target.config.disentangled and target.config.hidden_sizes == [100, 100, 16]
    assert torch.equal(target.mlp[0].weight, inference.make_target().mlp[0].weight)  # seeded
    assert not torch.equal(target.mlp[0].weight, target.bias_mlp[0].weight)  # two encoders, own inits
    pixels = torch.rand(6, 3, 16, 16)
    perm = torch.tensor([3, 0, 5, 1, 2, 4])
    out = target(pixel_values=pixels, permutation=perm)
    z_i, z_b = target.mlp(pixels.flatten(1)), target.bias_mlp(pixels.flatten(1))
    torch.testing.assert_close(out.logits, target.classifier(torch.cat([z_i, z_b], 1)))
    torch.testing.assert_close(out.swap_bias_logits, target.bias_classifier(torch.cat([z_i, z_b[perm]], 1)))
    # each head's loss reaches only its own encoder
    (g_bias,) = torch.autograd.grad(out.logits.sum(), target.bias_mlp[0].weight, allow_unused=True)
    (g_intrinsic,) = torch.autograd.grad(out.bias_logits.sum(), target.mlp[0].weight, allow_unused=True)
    assert g_bias is None and g_intrinsic is None

    args = TrainingConfig(epochs=1, batch_size=64).to_training_arguments(tmp_path, disable_tqdm=True)
    objective = inference.objective
    trainer = DebiasTrainer(target, args, train, objective)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(64)])
    trainer.state.max_steps, trainer.state.global_step = 10, 5  # past swap_start (0.2 of the run)
    inputs = {"pixel_values": batch["pixel_values"]}
    loss, _, parts = objective.loss(trainer, trainer.model, dict(inputs), batch["labels"], batch["index"])
    assert set(parts) == {"target", "bias_model", "swap"}
    # by hand, with the trainer's permutation for this step: the swapped bias head answers the label of the
    # sample its bias features came from
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(0 * 1_000_003 + 5))
    out, labels = target(pixel_values=batch["pixel_values"], permutation=perm), batch["labels"]
    ce = F.cross_entropy(out.logits, labels, reduction="none")
    bias_ce = F.cross_entropy(out.bias_logits, labels, reduction="none")
    nb, nd = bias_ce / bias_ce.max(), ce / ce.max()  # first EMA update = the losses; one class-max per class
    for c in labels.unique():
        rows = labels == c
        nb[rows], nd[rows] = bias_ce[rows] / bias_ce[rows].max(), ce[rows] / ce[rows].max()
    w = nb / (nb + nd + 1e-8)
    q = 0.7
    swap_ce = F.cross_entropy(out.swap_logits, labels, reduction="none")
    expected = (
        (ce * w).mean()
        + 10 * q * gce_loss(out.bias_logits, labels, q).mean()
        + (swap_ce * w).mean()
        + 10 * q * gce_loss(out.swap_bias_logits, labels[perm], q).mean()
    )
    torch.testing.assert_close(loss, expected)
    calls = []  # the swapped bias head is scored against the permuted labels, row by row
    monkeypatch.setattr(objectives_module, "gce_loss", lambda logits, y, q: calls.append(y) or gce_loss(logits, y, q))
    objective.bind(labels, torch.device("cpu"))
    objective.loss(trainer, trainer.model, dict(inputs), batch["labels"], batch["index"])
    assert not torch.equal(perm, torch.arange(64))
    assert torch.equal(calls[0], labels) and torch.equal(calls[1], labels[perm])
    with pytest.raises(ValueError, match="needs the 'mlp' classifier"):
        DisEnt().disentangled(build_classifier("test_resnet", names, image_size=16)[0], 0)


def test_disentangled_classifier_saves_and_reloads(tmp_path):
    from transformers import AutoModelForImageClassification

    from hf_ddb import save_classifier

    names = {i: str(i) for i in range(10)}
    model, processor = build_classifier("mlp", names, image_size=16, seed=0)
    target = DisEnt().disentangled(model, seed=0).eval()
    save_classifier(target, processor, tmp_path / "dfa")
    again = AutoModelForImageClassification.from_pretrained(tmp_path / "dfa").eval()
    pixels = torch.rand(4, 3, 16, 16)
    assert again.config.disentangled
    torch.testing.assert_close(again(pixel_values=pixels).logits, target(pixel_values=pixels).logits)


def test_objective_settings_come_from_method_options(small_cmnist):
    from hf_ddb.config import ConfigError, parse_config
    from hf_ddb.objectives import GroupDROObjective

    options = {
        "ddb_i": {"step_sizes": [0.1], "adjustments": [2.0], "group_balanced": False},
        "ddb_ii": {"ema_alpha": 0.5, "weighting": "lff"},
        "lff": {"ema_alpha": 0.9, "gce_q": 0.5},
    }
    config = parse_config({"benchmark": {"name": "colored_mnist"}, "methods": list(options), "method_options": options})
    train, valid = small_cmnist["train"], small_cmnist["valid"]
    signals = {"train": _amplifier_signals(train), "valid": _amplifier_signals(valid)}
    recipes = {m: RECIPES[m](**config.method_options[m]) for m in options}
    context = RecipeContext(train, valid, None, amplifier_signals=signals)
    dro = recipes["ddb_i"].infer(context).objective
    assert isinstance(dro, GroupDROObjective)
    assert (dro.step_size, dro.adjustment, dro.group_balanced) == (0.1, 2.0, False)
    frozen = recipes["ddb_ii"].infer(context).objective
    assert frozen.ema_alpha == 0.5 and frozen.weight_normalisation == "none"
    make = lambda: build_classifier("mlp", {i: str(i) for i in range(10)}, image_size=16, seed=0)[0]  # noqa: E731
    co_trained = recipes["lff"].infer(replace(context, make_model=make)).objective
    assert (co_trained.ema_alpha, co_trained.gce_q) == (0.9, 0.5)
    for bad in ({"ddb_i": {"step_sizes": [float("nan")]}}, {"ddb_ii": {"ema_alpha": 1.5}}, {"jtt": {"upweight": -5}}):
        with pytest.raises(ConfigError, match=f"method_options.{next(iter(bad))}"):
            parse_config({"benchmark": {"name": "colored_mnist"}, "methods": list(bad), "method_options": bad})


def test_lff_bias_model_keeps_pretrained_weights(tmp_path, small_cmnist):
    from hf_ddb import save_classifier

    names = {i: str(i) for i in range(10)}
    source, processor = build_classifier("test_resnet", names, image_size=16, seed=3)
    save_classifier(source, processor, tmp_path / "pretrained")

    def make():
        return build_classifier("test_resnet", names, image_size=16, seed=0, pretrained=str(tmp_path / "pretrained"))[0]

    target = make().state_dict()
    bias = LfF().infer(RecipeContext(small_cmnist["train"], None, make)).objective.bias_model
    head = {f"timm_model.{name}" for name, _ in bias.timm_model.get_classifier().named_parameters(prefix="fc")}
    state = bias.state_dict()
    assert head and all(not torch.equal(state[k], target[k]) for k in head)  # its own head
    assert all(torch.equal(state[k], target[k]) for k in target if k not in head)  # the pretrained body kept


def test_pseudo_bias_keeps_the_amplifiers_predicted_class_as_the_inferred_bias():
    from hf_ddb.amplifier import check_grouping, pseudo_bias

    labels = np.array([0, 0, 1, 1, 2, 2])
    signals = {"prediction": np.array([0, 2, 1, 0, 2, 1])}  # rows 1, 3 and 5 misclassified
    flags = signals["prediction"] != labels
    inferred = pseudo_bias(signals, labels, flags, "inferred_bias", 3)
    np.testing.assert_array_equal(inferred, [0, 2, 0, 2, 0, 2])  # (prediction - label) mod 3: 0 = aligned
    np.testing.assert_array_equal((labels + inferred) % 3, signals["prediction"])  # the predicted class back
    np.testing.assert_array_equal(pseudo_bias(signals, labels, flags, "flag", 2), flags.astype(int))
    with pytest.raises(ValueError, match="4 classes|3 classes"):
        pseudo_bias({"prediction": np.array([3])}, np.array([0]), np.array([True]), "inferred_bias", 3)
    with pytest.raises(ValueError, match="use groups 'flag'"):
        check_grouping("inferred_bias", "top_fraction")
    with pytest.raises(ValueError, match="groups"):
        check_grouping("colour", "misclassified")


def _binary(dataset):
    """The rows of classes 0 and 1 with their colours 0 and 1: a binary task with a binary bias."""
    from datasets import ClassLabel

    keep = [i for i, (y, b) in enumerate(zip(dataset["label"], dataset["bias_label"], strict=True)) if y < 2 and b < 2]
    subset = dataset.select(keep)
    return subset.cast_column("label", ClassLabel(names=["0", "1"])).cast_column(
        "bias_label", ClassLabel(names=["0", "1"])
    )


def test_inferred_bias_groups_equal_the_flag_groups_for_a_binary_bias(small_cmnist, tmp_path):
    """With two classes the amplifier's predicted class and its misclassified flag say the same: same group
    ids, same valid groups, the same trained model bit for bit (Recipe I) and the same weights (Recipe II)."""
    data = {split: _binary(small_cmnist[split]) for split in ("train", "valid", "test")}
    rng = np.random.default_rng(0)
    signals = {}
    for split in ("train", "valid"):
        base = _amplifier_signals(data[split])
        wrong = rng.random(len(data[split])) < 0.05  # some false flags
        base["prediction"] = np.where(wrong, 1 - base["prediction"], base["prediction"])
        base["correct"] = base["prediction"] == np.asarray(data[split]["label"])
        base["prob_true"] = np.where(base["correct"], 0.9, 0.1)
        base["loss"] = -np.log(base["prob_true"])
        signals[split] = base
    make = lambda: build_classifier("mlp", {0: "0", 1: "1"}, image_size=16, seed=0)[0]  # noqa: E731
    config = TrainingConfig(epochs=1, batch_size=64)
    results = {}
    for groups in ("inferred_bias", "flag"):
        context = RecipeContext(data["train"], data["valid"], make, config, amplifier_signals=signals)
        recipe = DDBI(groups=groups, adjustments=(4.0,))
        inference = recipe.infer(context)
        model, info = train_with_recipe(recipe, context, str(tmp_path / groups), selection="valid_mean_pseudo_group")
        weights = DDBII(groups=groups, weighting="cell").infer(context)
        results[groups] = (inference, model, info, weights.objective.sample_weights)
    (a, model_a, info_a, weights_a), (b, model_b, info_b, weights_b) = results.values()
    np.testing.assert_array_equal(a.objective.group_ids, b.objective.group_ids)
    np.testing.assert_array_equal(a.valid_pseudo_bias, b.valid_pseudo_bias)
    assert info_a["selection_history"] == info_b["selection_history"]
    for p, q in zip(model_a.parameters(), model_b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    np.testing.assert_allclose(weights_a, weights_b)


def test_ddb_i_balances_batches_over_inferred_bias_groups_and_tunes_on_valid_pseudo_groups(small_cmnist):
    train, valid = small_cmnist["train"], small_cmnist["valid"]
    signals = {"train": _amplifier_signals(train), "valid": _amplifier_signals(valid)}
    inference = DDBI().infer(RecipeContext(train, valid, amplifier_signals=signals))
    dro = inference.objective
    colour = np.asarray(train["bias_label"])
    # one group per (class, colour) the amplifier names: here the true groups
    assert inference.info["pseudo_groups"] == len(set(zip(train["label"], colour.tolist(), strict=True)))
    assert dro.group_balanced and dro.num_groups == 100
    assert inference.tune_on == "valid_mean_pseudo_group" and inference.search["adjustment"] == [0.0, 4.0]
    np.testing.assert_array_equal(
        inference.valid_pseudo_bias, (np.asarray(valid["bias_label"]) - np.asarray(valid["label"])) % 10
    )


def test_cell_weights_make_the_inferred_bias_independent_of_the_class():
    from hf_ddb.recipes import cell_weights

    labels = np.array([0] * 8 + [1] * 4)
    bias = np.array([0] * 6 + [1] * 2 + [1] * 3 + [0])
    weights = cell_weights(labels, bias)
    assert weights.mean() == pytest.approx(1.0)
    mass = {(y, b): weights[(labels == y) & (bias == b)].sum() for y in (0, 1) for b in (0, 1)}
    # within each class the bias values carry p(b) = (7/12, 5/12) of the class's mass, whatever p(b | y) was
    for y in (0, 1):
        total = mass[(y, 0)] + mass[(y, 1)]
        assert mass[(y, 0)] / total == pytest.approx(7 / 12) and mass[(y, 1)] / total == pytest.approx(5 / 12)
    assert len(set(weights[(labels == 0) & (bias == 0)])) == 1  # even within a cell


def test_confidence_weights_give_flagged_rows_half_the_mass_and_keep_aligned_rows():
    from hf_ddb.recipes import confidence_weights

    labels = np.array([0] * 50 + [1] * 50)
    prob_true = np.where(np.arange(100) % 25 == 0, 0.05, 0.98)  # 4 confidently wrong rows
    flagged = prob_true < 0.5
    weights, gamma = confidence_weights(prob_true, labels, flagged)
    assert gamma > 0 and weights[flagged].sum() / weights.sum() == pytest.approx(0.5, abs=1e-6)
    for y in (0, 1):  # AFR's class balance: mean weight 1 in each class
        assert weights[labels == y].mean() == pytest.approx(1.0)
    assert weights[~flagged].min() > 0  # aligned rows keep a weight
    unflagged, zero = confidence_weights(prob_true, labels, np.zeros(100, dtype=bool))
    assert zero == 0.0 and np.allclose(unflagged, 1.0)


@pytest.mark.parametrize("weighting", ["cell", "confidence"])
def test_ddb_ii_fixed_weightings_train_weighted_erm(small_cmnist, weighting):
    train, valid = small_cmnist["train"], small_cmnist["valid"]
    signals = {"train": _amplifier_signals(train), "valid": _amplifier_signals(valid)}
    context = RecipeContext(train, valid, amplifier_signals=signals)
    inference = DDBII(weighting=weighting, weight_floor=0.2).infer(context)
    weights = inference.objective.sample_weights
    assert isinstance(inference.objective, ERMObjective) and weights.min() >= 0.2
    conflicting = ~signals["train"]["correct"]
    assert weights[conflicting].mean() > 5 * weights[~conflicting].mean()
    assert 0.3 < inference.info["flagged_weight_share"] < 1.0


def test_local_cnn_amplifier_sees_texture_not_position(tmp_path):
    """The texture amplifier: local 3 x 3 features and a global average pool, so moving the pattern leaves the
    output unchanged (shape and place are lost); it saves and reloads like the MLP."""
    from transformers import AutoModelForImageClassification

    from hf_ddb import save_classifier

    model, processor = build_classifier("local_cnn", {0: "a", 1: "b"}, image_size=16, seed=0)
    assert model.config.conv_channels == [32, 64] and model.config.hidden_sizes == [100]
    model.eval()
    image = torch.zeros(1, 3, 16, 16)
    image[..., 4:8, 4:8] = torch.rand(3, 4, 4)
    shifted = torch.roll(image, shifts=(6, 5), dims=(2, 3))  # the same patch elsewhere, still inside
    torch.testing.assert_close(model(pixel_values=image).logits, model(pixel_values=shifted).logits, atol=1e-4, rtol=0)
    save_classifier(model, processor, tmp_path / "amp")
    again = AutoModelForImageClassification.from_pretrained(tmp_path / "amp").eval()
    torch.testing.assert_close(again(pixel_values=image).logits, model(pixel_values=image).logits)


def test_each_method_has_one_name_written_three_ways():
    """Class, config key and report label are one name: DDBI / ddb_i / DDB-I, GroupDROOracle /
    groupdro_oracle / GroupDRO (oracle)."""
    for key, cls in RECIPES.items():
        letters = key.replace("_", "")
        assert cls.name == key and cls.__name__.lower() == letters, cls
        assert letters in "".join(c for c in cls.display_name.lower() if c.isalpha()), cls.display_name


def test_paper_recipes_are_the_published_groups_and_weights(small_cmnist):
    train, valid = small_cmnist["train"], small_cmnist["valid"]
    signals = {"train": _amplifier_signals(train), "valid": _amplifier_signals(valid)}
    context = RecipeContext(train, valid, None, TrainingConfig(), amplifier_signals=signals)
    paper_ii = RECIPES["ddb_ii_paper"]().infer(context)
    assert isinstance(paper_ii.objective, RelativeDifficultyObjective)  # LfF's ratio on the frozen amplifier
    assert paper_ii.objective.weight_floor == 0.0 and paper_ii.objective.weight_normalisation == "none"
    assert np.array_equal(paper_ii.valid_pseudo_bias, ~signals["valid"]["correct"])  # (class, flagged)
    paper_i = RECIPES["ddb_i_paper"]().infer(context)
    assert paper_i.objective.num_groups == 20 and RECIPES["ddb_i_paper"].needs_amplifier


def test_real_data_competitors_train_their_bias_model_on_the_real_rows(small_cmnist):
    from hf_ddb.amplifier import AmplifierConfig
    from hf_ddb.recipes import FGCCDB, DDBIIReal, cell_weights

    train, valid = small_cmnist["train"], small_cmnist["valid"]
    assert not DDBIIReal.needs_amplifier and DDBIIReal.trains_bias_model and FGCCDB.trains_bias_model
    settings = AmplifierConfig(epochs=3, batch_size=64, learning_rate=1e-2)
    context = RecipeContext(train, valid, None, TrainingConfig(), bias_model=settings, bias_model_size=8)
    real = DDBIIReal().infer(context)  # no amplifier, no signals in the context: it trains its own
    conflicting = np.asarray(train["label"]) != np.asarray(train["bias_label"])
    weights = real.objective.sample_weights
    assert weights[conflicting].mean() > 3 * weights[~conflicting].mean()  # colour learned from the real rows
    fg = FGCCDB(stages=2).infer(context)
    kept = fg.info["rows_kept_per_stage"]
    assert len(kept) == 2 and kept[0] < len(train)  # stage 2 retrained on the rows stage 1 got right
    assert fg.objective.sample_weights.mean() == pytest.approx(1.0)
    assert fg.objective.sample_weights[conflicting].mean() > fg.objective.sample_weights[~conflicting].mean()
    assert np.allclose(cell_weights(train["label"], train["label"]), 1.0)  # a model that saw no bias: no weights
    with pytest.raises(ValueError, match="stages"):
        FGCCDB(stages=0)


def test_memorisation_verdict_reads_when_the_real_data_twin_fits_the_flags():
    """Fitted late = memorised (the diffusion stage pays); fitted as soon as the other rows = the flags look
    ordinary (no verdict); never fitted = a real-data model would flag them too. No bias labels."""
    from hf_ddb.amplifier import memorisation_verdict

    def history(flagged, unflagged):
        pairs = enumerate(zip(flagged, unflagged, strict=True))
        return [{"epoch": e + 1, "flagged_fit": f, "unflagged_fit": u} for e, (f, u) in pairs]

    majority = [0.3, 0.95, 0.97, 0.99]
    assert "diffusion stage pays" in memorisation_verdict(history([0.1, 0.2, 0.6, 0.9], majority))
    assert "cannot tell" in memorisation_verdict(history([0.2, 0.7, 0.8, 0.8], majority))
    assert "may do as well" in memorisation_verdict(history([0.1, 0.2, 0.3, 0.4], majority))
    assert "flags no row" in memorisation_verdict(history([None], [0.9]))


class _UnusedParameters(TrainerCallback):
    """Before every optimizer step: the trainable parameters of the Trainer's model that got no gradient."""

    def __init__(self) -> None:
        self.unused: set[str] = set()

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.unused |= {name for name, p in model.named_parameters() if p.requires_grad and p.grad is None}


def test_every_objective_gives_every_parameter_a_gradient_so_ddp_skips_its_search(small_cmnist, tmp_path):
    """DDP's search for unused parameters costs a pass over the graph every step (and a warning per rank):
    `TrainingConfig` turns it off, which is right only while every objective's every trainable parameter (the
    target's and the co-trained bias model's) gets a gradient at every step; a new objective that leaves one
    out fails here instead of hanging DDP."""
    train = small_cmnist["train"].select(range(64))
    names = {i: str(i) for i in range(10)}
    labels = np.asarray(train["label"])

    def make():
        return build_classifier("mlp", names, image_size=16, seed=0)[0]

    def disent(swap_start):
        return DisEnt(swap_start=swap_start)

    cases = {
        "erm": (make, ERMObjective()),
        "amplifier (gce, class-balanced)": (make, ERMObjective(loss_type="gce", class_balanced=True)),
        "groupdro": (make, GroupDROObjective(group_ids=labels % 4, num_groups=4, group_balanced=True)),
        "lff": (make, RelativeDifficultyObjective(bias_model=make())),
        "bias_ensemble": (
            make,
            RelativeDifficultyObjective(bias_model=make(), bias_loss="ce", bias_train_mask=np.arange(64) < 3),
        ),
        "ddb_ii (frozen amplifier's losses)": (make, RelativeDifficultyObjective(bias_losses=np.ones(64))),
        "disent, before the swap": (lambda: disent(1.0).disentangled(make(), 0), disent(1.0).objective()),
        "disent, swapping": (lambda: disent(0.0).disentangled(make(), 0), disent(0.0).objective()),
    }
    config = TrainingConfig(epochs=1, batch_size=16)
    assert config.to_training_arguments(tmp_path).ddp_find_unused_parameters is False
    for name, (model_factory, objective) in cases.items():
        probe = _UnusedParameters()
        args = config.to_training_arguments(tmp_path / "out", max_steps=3, disable_tqdm=True)
        DebiasTrainer(model_factory(), args, train, objective, callbacks=[probe]).train()
        assert not probe.unused, (name, sorted(probe.unused))


def test_the_trainer_logs_the_named_parts_of_the_loss(small_cmnist, tmp_path):
    """`Objective.loss` returns the total and its named parts; `DebiasTrainer` logs each as ``loss_<part>`` beside
    the loss (trackers and the progress bar read the same log), here LfF's target and co-trained bias-model terms."""
    train = small_cmnist["train"].select(range(64))
    make = lambda: build_classifier("mlp", {i: str(i) for i in range(10)}, image_size=16, seed=0)[0]  # noqa: E731
    args = TrainingConfig(epochs=1, batch_size=16).to_training_arguments(
        tmp_path, max_steps=4, logging_strategy="steps", logging_steps=2, disable_tqdm=True
    )
    trainer = DebiasTrainer(make(), args, train, RelativeDifficultyObjective(bias_model=make()))
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 2
    for entry in logged:
        assert entry["loss_target"] > 0 and entry["loss_bias_model"] > 0
        assert entry["loss"] == pytest.approx(entry["loss_target"] + entry["loss_bias_model"], abs=2e-3)
