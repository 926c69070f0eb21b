"""`evaluate` wrapper of hf_ddb.metrics.group_metrics (group robustness of a classifier).

Load it offline with ``evaluate.load(hf_ddb.metrics.evaluate_module_path())`` and call
``compute(predictions=..., references=..., bias_labels=...)``.
"""

import datasets
import evaluate

from hf_ddb.metrics import group_metrics

_DESCRIPTION = (
    "Average, worst-group, bias-aligned, bias-conflicting and unbiased (mean over class x bias groups) "
    "accuracy of a classifier, plus accuracy per (class, bias) group."
)
_INPUTS = """
Args:
    predictions: predicted class ids.
    references: true class ids.
    bias_labels: bias attribute per sample (evaluation only).
    aligned_bias: optional list, aligned_bias[c] = bias attribute class c is aligned with (default c).
"""


class GroupAccuracy(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("int64"),
                    "references": datasets.Value("int64"),
                    "bias_labels": datasets.Value("int64"),
                }
            ),
        )

    def _compute(self, predictions, references, bias_labels, aligned_bias=None):
        return group_metrics(predictions, references, bias_labels, aligned_bias=aligned_bias)
