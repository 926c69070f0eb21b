"""LfF's Colored-MNIST MLP (C·H·W -> 100 -> 100 -> 100 -> K, ReLU) as a transformers model, optionally behind a
local convolutional stem with global average pooling (``conv_channels``): a classifier that sees textures and
colours but little shape, the bias amplifier for texture biases.

Self-contained (torch and transformers only): `save_pretrained` copies this file into the saved folder and
writes ``auto_map`` into its ``config.json`` (``register_for_auto_class``), so the folder loads where hf-ddb
is not installed, with ``trust_remote_code=True``. Importing it also registers the model type with the Auto
classes, so with hf-ddb installed no remote code is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForImageClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import ImageClassifierOutput

__all__ = ["DisentangledClassifierOutput", "MLPConfig", "MLPForImageClassification"]


class MLPConfig(PretrainedConfig):
    """Configuration of `MLPForImageClassification`."""

    model_type = "hf_ddb_mlp"

    def __init__(
        self,
        image_size: int = 28,
        num_channels: int = 3,
        hidden_sizes: Sequence[int] = (100, 100, 100),
        image_mean: Sequence[float] = (0.0, 0.0, 0.0),
        image_std: Sequence[float] = (1.0, 1.0, 1.0),
        disentangled: bool = False,
        conv_channels: Sequence[int] = (),
        kernel_size: int = 3,
        **kwargs: Any,
    ) -> None:
        self.image_size = image_size
        self.conv_channels = list(conv_channels)
        self.kernel_size = kernel_size
        self.disentangled = disentangled
        self.num_channels = num_channels
        self.hidden_sizes = list(hidden_sizes)
        self.image_mean = list(image_mean)
        self.image_std = list(image_std)
        super().__init__(**kwargs)


@dataclass
class DisentangledClassifierOutput(ImageClassifierOutput):
    """A disentangled MLP's training outputs (DFA): besides ``logits`` (the intrinsic head on [z_i, z_b]),
    the bias head on the same features and, given a ``permutation``, both heads on [z_i, z_b[permutation]]."""

    bias_logits: torch.Tensor | None = None
    swap_logits: torch.Tensor | None = None
    swap_bias_logits: torch.Tensor | None = None


class MLPForImageClassification(PreTrainedModel):
    """LfF's MLP on flattened pixels; ``forward(pixel_values, labels=None)`` like any HF classifier.

    With ``config.conv_channels`` the pixels first pass ``kernel_size`` convolutions (ReLU, stride 1) and a
    global average pool: each feature sees a few pixels (a 5 x 5 field for two 3 x 3 layers) and the pool
    forgets where, so the model learns colour and texture statistics rather than the digit's shape.

    With ``config.disentangled`` it is DFA's pair (Lee et al., 2021): an intrinsic and a bias encoder of the
    same shape, and two heads on the concatenated features [z_i, z_b]. It predicts with the intrinsic head
    (``classifier``); each head's gradient reaches only its own encoder (the other half is detached), so
    one optimizer trains both as DFA's two optimizers do.
    """

    config_class = MLPConfig
    base_model_prefix = "mlp"
    main_input_name = "pixel_values"

    def __init__(self, config: MLPConfig) -> None:
        super().__init__(config)
        self.stem = self._stem(config) if config.conv_channels else None
        self.mlp = self._encoder(config)
        width = config.hidden_sizes[-1] if config.hidden_sizes else self._input_width(config)
        if config.disentangled:  # DFA: a bias encoder of its own and a head on [z_i, z_b] for each
            self.bias_mlp = self._encoder(config)
            self.bias_classifier = nn.Linear(2 * width, config.num_labels)
            width *= 2
        self.classifier = nn.Linear(width, config.num_labels)
        self.post_init()

    @staticmethod
    def _input_width(config: MLPConfig) -> int:
        return config.conv_channels[-1] if config.conv_channels else config.num_channels * config.image_size**2

    @staticmethod
    def _stem(config: MLPConfig) -> nn.Sequential:
        layers: list[nn.Module] = []
        channels = config.num_channels
        for out in config.conv_channels:
            layers += [nn.Conv2d(channels, out, config.kernel_size, padding=config.kernel_size // 2), nn.ReLU()]
            channels = out
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())

    @classmethod
    def _encoder(cls, config: MLPConfig) -> nn.Sequential:
        layers: list[nn.Module] = []
        width = cls._input_width(config)
        for hidden in config.hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        return nn.Sequential(*layers)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            module.reset_parameters()  # PyTorch's default init, as LfF used

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        permutation: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> ImageClassifierOutput:
        """``permutation`` (disentangled only): also return both heads on bias features swapped across the batch."""
        inputs = self.stem(pixel_values) if self.stem is not None else pixel_values.flatten(1)
        if not self.config.disentangled:
            logits = self.classifier(self.mlp(inputs))
            loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
            return ImageClassifierOutput(loss=loss, logits=logits)
        intrinsic, bias = self.mlp(inputs), self.bias_mlp(inputs)
        logits = self.classifier(torch.cat([intrinsic, bias.detach()], dim=1))
        swap_logits = swap_bias_logits = None
        if permutation is not None:
            swapped = bias[permutation]
            swap_logits = self.classifier(torch.cat([intrinsic, swapped.detach()], dim=1))
            swap_bias_logits = self.bias_classifier(torch.cat([intrinsic.detach(), swapped], dim=1))
        return DisentangledClassifierOutput(
            loss=nn.functional.cross_entropy(logits, labels) if labels is not None else None,
            logits=logits,
            bias_logits=self.bias_classifier(torch.cat([intrinsic.detach(), bias], dim=1)),
            swap_logits=swap_logits,
            swap_bias_logits=swap_bias_logits,
        )


AutoConfig.register(MLPConfig.model_type, MLPConfig, exist_ok=True)
AutoModelForImageClassification.register(MLPConfig, MLPForImageClassification, exist_ok=True)
MLPConfig.register_for_auto_class()
MLPForImageClassification.register_for_auto_class("AutoModelForImageClassification")
