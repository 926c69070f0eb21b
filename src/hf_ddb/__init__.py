"""hf-ddb: Diffusing DeBias (Ciranni et al., NeurIPS 2025) for the Hugging Face ecosystem."""

from .data import load_benchmark, load_image_dataset
from .metrics import detection_metrics, group_metrics
from .models import MLPConfig, MLPForImageClassification, build_classifier, save_classifier
from .training import TrainingConfig, evaluate_groups, predict_logits, train_erm

__version__ = "0.1.0"

__all__ = [
    "MLPConfig",
    "MLPForImageClassification",
    "TrainingConfig",
    "build_classifier",
    "detection_metrics",
    "evaluate_groups",
    "group_metrics",
    "load_benchmark",
    "load_image_dataset",
    "predict_logits",
    "save_classifier",
    "train_erm",
]
