import numpy as np
import pytest

from hf_ddb.metrics import detection_metrics, evaluate_module_path, group_metrics, is_conflicting


def test_group_metrics_hand_case():
    # groups (label, bias): (0,0) x3, (0,1) x1, (1,1) x2, (1,0) x2
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    bias = [0, 0, 0, 1, 1, 1, 0, 0]
    preds = [0, 0, 1, 1, 1, 1, 0, 1]
    m = group_metrics(preds, labels, bias)
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["per_group"] == {
        "0,0": {"accuracy": pytest.approx(2 / 3), "count": 3},
        "0,1": {"accuracy": 0.0, "count": 1},
        "1,0": {"accuracy": 0.5, "count": 2},
        "1,1": {"accuracy": 1.0, "count": 2},
    }
    assert m["worst_group_accuracy"] == 0.0
    assert m["unbiased_accuracy"] == pytest.approx((2 / 3 + 0 + 0.5 + 1) / 4)
    assert m["aligned_accuracy"] == pytest.approx(4 / 5)  # rows 0,1,2,4,5
    assert m["conflicting_accuracy"] == pytest.approx(1 / 3)  # rows 3,6,7


def test_group_metrics_accepts_logits_and_alignment_map():
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0]])
    m = group_metrics(logits, [0, 1, 1], [1, 0, 1], aligned_bias=[1, 0])
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["aligned_accuracy"] == 1.0  # class 0 aligned with bias 1, class 1 with bias 0
    assert m["conflicting_accuracy"] == 0.0
    assert is_conflicting([0, 1, 1], [1, 0, 1], aligned_bias=[1, 0]).tolist() == [False, False, True]


def test_group_metrics_empty_subset_is_none_and_bad_shapes_raise():
    m = group_metrics([0, 1], [0, 1], [0, 1])
    assert m["conflicting_accuracy"] is None
    with pytest.raises(ValueError, match="same length"):
        group_metrics([0, 1, 1], [0, 1], [0, 1])


def test_group_metrics_cross_check_with_fairlearn():
    from fairlearn.metrics import MetricFrame
    from sklearn.metrics import accuracy_score

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 500)
    bias = np.where(rng.random(500) < 0.8, labels, rng.integers(0, 4, 500))
    preds = np.where(rng.random(500) < 0.7, labels, rng.integers(0, 4, 500))
    ours = group_metrics(preds, labels, bias)
    frame = MetricFrame(
        metrics=accuracy_score, y_true=labels, y_pred=preds, sensitive_features={"y": labels, "b": bias}
    )
    by_group = {f"{y},{b}": v for (y, b), v in frame.by_group.items()}
    assert ours["per_group"].keys() == by_group.keys()
    for key, value in by_group.items():
        assert ours["per_group"][key]["accuracy"] == pytest.approx(value)
    assert ours["worst_group_accuracy"] == pytest.approx(frame.group_min())
    assert ours["unbiased_accuracy"] == pytest.approx(np.mean(list(by_group.values())))
    assert ours["accuracy"] == pytest.approx(frame.overall)
    aligned = labels == bias
    assert ours["aligned_accuracy"] == pytest.approx(accuracy_score(labels[aligned], preds[aligned]))


def test_detection_metrics_hand_case():
    scores = [0.9, 0.8, 0.7, 0.1, 0.6, 0.2]
    truth = [1, 0, 1, 0, 0, 0]
    m = detection_metrics(scores, truth, flagged=[1, 1, 0, 0, 0, 0])
    assert m["num_conflicting"] == 2
    assert m["precision_at_k"] == 0.5  # top-2 = rows 0, 1
    assert m["auroc"] == pytest.approx(7 / 8)  # positives 0.9, 0.7 beat 4 and 3 of 4 negatives
    assert m["precision"] == 0.5 and m["recall"] == 0.5 and m["f1"] == 0.5


def test_detection_metrics_ties_undefined_flags_and_nan():
    tied = detection_metrics([0.5, 0.5, 0.5, 0.5], [1, 0, 1, 0], flagged=[0, 0, 0, 0])
    assert tied["auroc"] == 0.5 and tied["average_precision"] == 0.5  # one threshold: no ranking information
    assert tied["precision"] is None and tied["recall"] == 0.0  # nothing flagged: precision undefined, not 0
    with pytest.raises(ValueError, match="NaN or infinite"):
        detection_metrics([0.1, float("nan")], [0, 1])


def test_detection_metrics_single_class_gives_none():
    m = detection_metrics([0.1, 0.2], [0, 0])
    assert m["auroc"] is None and m["precision_at_k"] is None


def test_evaluate_module_matches_numpy_implementation():
    evaluate = pytest.importorskip("evaluate")
    metric = evaluate.load(evaluate_module_path())
    preds, labels, bias = [0, 1, 1, 0, 1], [0, 1, 0, 0, 1], [0, 1, 1, 1, 0]
    assert metric.compute(predictions=preds, references=labels, bias_labels=bias) == group_metrics(preds, labels, bias)
