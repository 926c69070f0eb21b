"""hf-ddb: Diffusing DeBias (Ciranni et al., NeurIPS 2025) for the Hugging Face ecosystem.

``import hf_ddb`` is light (no torch): the public names load their module on first use, as ``diffusers`` and
``transformers`` do, so ``hf-ddb --help`` starts at once. The first public name used also registers the MLP
model type with the Auto classes and the ``bias-alignment`` task with transformers' pipeline registry; saved
folders carry their code as well, so ``trust_remote_code=True`` loads them without any import of hf_ddb.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.5.0.dev0"

# public name -> the submodule that defines it
_EXPORTS = {
    "RECIPES": "recipes",
    "BiasAlignedGenerationPipeline": "pipeline_generation",
    "BiasAlignmentPipeline": "pipeline_scoring",
    "BiasAmplifierTrainer": "amplifier",
    "DDBI": "recipes",
    "DDBII": "recipes",
    "DebiasTrainer": "trainer",
    "DiffusionConfig": "diffusion",
    "GenerationConfig": "generation",
    "MLPConfig": "models",
    "MLPForImageClassification": "models",
    "Recipe": "recipes",
    "RecipeContext": "recipes",
    "Run": "runner",
    "RunConfig": "config",
    "TrainingConfig": "training",
    "bias_signals": "amplifier",
    "build_classifier": "models",
    "detection_metrics": "metrics",
    "evaluate_groups": "training",
    "generate_synthetic_dataset": "generation",
    "group_metrics": "metrics",
    "load_artifact": "hub",
    "load_benchmark": "data",
    "load_config": "config",
    "load_image_dataset": "data",
    "predict_logits": "inputs",
    "pseudo_bias_labels": "amplifier",
    "push_folder": "hub",
    "push_run": "hub",
    "save_classifier": "models",
    "train_diffusion": "diffusion",
    "train_erm": "training",
    "train_with_recipe": "debiasing",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # registering with transformers comes with the first public name, whichever it is
    importlib.import_module(".modeling_mlp", __name__)
    importlib.import_module(".pipeline_scoring", __name__)
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load lazily (ruff: see __all__)
    from .amplifier import BiasAmplifierTrainer, bias_signals, pseudo_bias_labels  # noqa: F401
    from .config import RunConfig, load_config  # noqa: F401
    from .data import load_benchmark, load_image_dataset  # noqa: F401
    from .debiasing import train_with_recipe  # noqa: F401
    from .diffusion import DiffusionConfig, train_diffusion  # noqa: F401
    from .generation import GenerationConfig, generate_synthetic_dataset  # noqa: F401
    from .hub import load_artifact, push_folder, push_run  # noqa: F401
    from .inputs import predict_logits  # noqa: F401
    from .metrics import detection_metrics, group_metrics  # noqa: F401
    from .models import MLPConfig, MLPForImageClassification, build_classifier, save_classifier  # noqa: F401
    from .pipeline_generation import BiasAlignedGenerationPipeline  # noqa: F401
    from .pipeline_scoring import BiasAlignmentPipeline  # noqa: F401
    from .recipes import (  # noqa: F401
        DDBI,
        DDBII,
        RECIPES,
        Recipe,
        RecipeContext,
    )
    from .runner import Run  # noqa: F401
    from .trainer import DebiasTrainer  # noqa: F401
    from .training import TrainingConfig, evaluate_groups, train_erm  # noqa: F401
