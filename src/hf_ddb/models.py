"""CPU-sized image classifiers as `AutoModelForImageClassification` models.

* ``mlp``: LfF's Colored-MNIST MLP (C·H·W -> 100 -> 100 -> 100 -> K, ReLU; `hf_ddb.modeling_mlp`), registered
  with the Auto classes at import and saved with its code and ``auto_map``: a saved folder works in
  ``from_pretrained`` and ``pipeline("image-classification")`` once ``hf_ddb`` is imported, and without
  hf-ddb with ``trust_remote_code=True``.
* any timm architecture (e.g. ``resnet18``, ``test_resnet``) through transformers' timm wrapper,
  with random weights (nothing is downloaded) and an explicit ``pretrained_cfg`` so timm neither
  resizes to 224 nor looks anything up on the Hub.

`build_classifier` returns the model and the image processor that `save_classifier` stores next to
it, so a saved folder works in ``pipeline("image-classification", model=folder)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from transformers import (
    AutoModelForImageClassification,
    PretrainedConfig,
    PreTrainedModel,
    TimmWrapperConfig,
    ViTImageProcessor,
)

from .modeling_mlp import DisentangledClassifierOutput, MLPConfig, MLPForImageClassification
from .utils import atomic_directory

__all__ = [
    "DisentangledClassifierOutput",
    "MLPConfig",
    "MLPForImageClassification",
    "build_classifier",
    "image_normalization",
    "save_classifier",
]


def image_normalization(config: PretrainedConfig) -> tuple[int, list[float], list[float]]:
    """(image size, mean, std) the model expects, read from its config (MLP or timm wrapper)."""
    if isinstance(config, MLPConfig):
        return config.image_size, list(config.image_mean), list(config.image_std)
    if isinstance(config, TimmWrapperConfig) and config.pretrained_cfg:
        cfg = config.pretrained_cfg
        return int(cfg["input_size"][-1]), list(cfg["mean"]), list(cfg["std"])
    raise ValueError(f"cannot read the input size and normalisation from a {type(config).__name__}")


# hf-ddb's own architectures (`MLPForImageClassification`), by name: their MLPConfig settings
LOCAL_ARCHITECTURES: dict[str, dict[str, Any]] = {
    "mlp": {},
    "local_cnn": {"conv_channels": [32, 64], "kernel_size": 3, "hidden_sizes": [100]},
}


def build_classifier(
    architecture: str,
    id2label: dict[int, str],
    *,
    image_size: int = 28,
    num_channels: int = 3,
    image_mean: Sequence[float] = (0.5, 0.5, 0.5),
    image_std: Sequence[float] = (0.5, 0.5, 0.5),
    model_args: dict[str, Any] | None = None,
    seed: int | None = None,
    pretrained: str | None = None,
) -> tuple[PreTrainedModel, ViTImageProcessor]:
    """A classifier and its image processor: randomly initialised, or from ``pretrained`` weights.

    ``architecture`` is ``"mlp"`` (LfF's MLP; it takes raw [0, 1] pixels, so mean/std are ignored),
    ``"local_cnn"`` (the same MLP behind two 3 x 3 convolutions and a global average pool, 32 and 64
    channels: colour and texture, little shape; a bias amplifier for texture biases) or any timm model name.
    ``seed`` fixes the initial weights (and the new head of a pretrained model).
    ``pretrained`` is a Hub id or folder of a timm-wrapper model (e.g. ``timm/resnet50.a1_in1k``, which
    needs network): its body is kept, the head is replaced for ``id2label``, inputs are ``image_size`` px.
    """
    if len(id2label) < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {len(id2label)}")
    id2label = {int(k): str(v) for k, v in id2label.items()}
    label2id = {v: k for k, v in id2label.items()}
    if architecture in LOCAL_ARCHITECTURES:
        image_mean, image_std = (0.0,) * num_channels, (1.0,) * num_channels
        config: PretrainedConfig = MLPConfig(
            image_size=image_size,
            num_channels=num_channels,
            image_mean=image_mean,
            image_std=image_std,
            id2label=id2label,
            label2id=label2id,
            **{**LOCAL_ARCHITECTURES[architecture], **(model_args or {})},
        )
    else:
        import timm

        if not timm.is_model(architecture):
            raise ValueError(
                f"unknown architecture {architecture!r}: use {sorted(LOCAL_ARCHITECTURES)} or a timm model name"
            )
        config = TimmWrapperConfig(
            architecture=architecture,
            id2label=id2label,
            label2id=label2id,
            model_args={"in_chans": num_channels, **(model_args or {})},
            pretrained_cfg={
                "input_size": [num_channels, image_size, image_size],
                "mean": list(image_mean),
                "std": list(image_std),
                "crop_pct": 1.0,
                "interpolation": "bilinear",
                "num_classes": len(id2label),
            },
        )
    if seed is not None:
        torch.manual_seed(seed)
    if pretrained is not None:
        if architecture in LOCAL_ARCHITECTURES:
            raise ValueError(f"'pretrained' needs a timm architecture, not {architecture!r}")
        model = AutoModelForImageClassification.from_pretrained(
            pretrained, num_labels=len(id2label), id2label=id2label, label2id=label2id, ignore_mismatched_sizes=True
        )
        if model.config.architecture != architecture:
            raise ValueError(f"pretrained model {pretrained!r} is a {model.config.architecture}, not {architecture!r}")
        cfg = dict(model.config.pretrained_cfg or {})
        cfg.update(input_size=[num_channels, image_size, image_size], num_classes=len(id2label), crop_pct=1.0)
        image_mean, image_std = cfg.get("mean", image_mean), cfg.get("std", image_std)
        model.config.pretrained_cfg = cfg
    else:
        model = AutoModelForImageClassification.from_config(config)
    processor = ViTImageProcessor(
        do_resize=True,
        size={"height": image_size, "width": image_size},
        do_rescale=True,
        do_normalize=True,
        image_mean=list(image_mean),
        image_std=list(image_std),
    )
    return model, processor


def save_classifier(model: PreTrainedModel, processor: ViTImageProcessor, path: str | os.PathLike) -> None:
    """Save weights, config and image processor, so ``pipeline("image-classification", path)`` works."""
    with atomic_directory(path) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
