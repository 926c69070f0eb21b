"""hf-ddb: Diffusing DeBias (Ciranni et al., NeurIPS 2025) for the Hugging Face ecosystem."""

from .amplifier import BiasAmplifierTrainer, bias_signals, pseudo_bias_labels
from .config import RunConfig, load_config
from .data import load_benchmark, load_image_dataset
from .diffusion import DiffusionConfig, train_diffusion
from .generation import GenerationConfig, generate_synthetic_dataset
from .hub import load_artifact, push_folder, push_run
from .metrics import detection_metrics, group_metrics
from .models import MLPConfig, MLPForImageClassification, build_classifier, save_classifier
from .pipeline_bias_aligned import BiasAlignedGenerationPipeline
from .pipeline_bias_alignment import BiasAlignmentPipeline
from .recipes import RECIPES, DDBEndToEnd, DDBTwoStep, DebiasTrainer, train_with_recipe
from .runner import Run
from .training import TrainingConfig, evaluate_groups, predict_logits, train_erm

__version__ = "0.4.0"

__all__ = [
    "RECIPES",
    "BiasAlignedGenerationPipeline",
    "BiasAlignmentPipeline",
    "BiasAmplifierTrainer",
    "DDBEndToEnd",
    "DDBTwoStep",
    "DebiasTrainer",
    "DiffusionConfig",
    "GenerationConfig",
    "MLPConfig",
    "MLPForImageClassification",
    "Run",
    "RunConfig",
    "TrainingConfig",
    "bias_signals",
    "build_classifier",
    "detection_metrics",
    "evaluate_groups",
    "generate_synthetic_dataset",
    "group_metrics",
    "load_artifact",
    "load_benchmark",
    "load_config",
    "load_image_dataset",
    "predict_logits",
    "pseudo_bias_labels",
    "push_folder",
    "push_run",
    "save_classifier",
    "train_diffusion",
    "train_erm",
    "train_with_recipe",
]
