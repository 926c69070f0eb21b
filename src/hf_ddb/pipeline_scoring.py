"""``pipeline("bias-alignment", model=amplifier)``: how bias-aligned each labelled image is, by a saved bias
amplifier. Importing this module (any public name of `hf_ddb` does) registers the task with transformers'
pipeline registry. The module is self-contained (torch and transformers only): `save_amplifier` copies it
into the amplifier's folder, so ``pipeline(model=folder, trust_remote_code=True)`` works without hf-ddb."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoModelForImageClassification, Pipeline
from transformers.image_utils import load_image
from transformers.pipelines import PIPELINE_REGISTRY

__all__ = ["BiasAlignmentPipeline", "save_amplifier"]


class BiasAlignmentPipeline(Pipeline):
    """``pipeline("bias-alignment", model=amplifier)``: how bias-aligned each labelled image is.

    Input: ``{"image": image, "label": class id or name}`` (or a list of them). Output per image: the
    amplifier's probability of the label (``alignment_score``: high = bias-aligned), its loss, its own
    prediction, and ``bias_conflicting`` (the default pseudo-label rule: the amplifier gets it wrong).
    """

    _load_processor = False
    _load_image_processor = True
    _load_feature_extractor = False
    _load_tokenizer = False

    def _sanitize_parameters(self, **kwargs: Any) -> tuple[dict, dict, dict]:
        if kwargs:  # e.g. top_k: this task scores the given label, it ranks nothing
            raise TypeError(f"bias-alignment takes no argument(s) {sorted(kwargs)}; pass {{'image', 'label'}} inputs")
        return {}, {}, {}

    def _label_id(self, label: Any) -> int:
        config = self.model.config
        if isinstance(label, str):
            if label not in config.label2id:
                raise ValueError(f"unknown class {label!r}; the amplifier knows {list(config.label2id)}")
            return int(config.label2id[label])
        if not 0 <= int(label) < config.num_labels:
            raise ValueError(f"class id {label} out of range: the amplifier has {config.num_labels} classes")
        return int(label)

    def preprocess(self, inputs: Any) -> dict[str, torch.Tensor]:
        if not isinstance(inputs, dict) or "image" not in inputs or "label" not in inputs:
            raise ValueError(
                "bias-alignment needs {'image': ..., 'label': ...} per image: alignment is relative to a class"
            )
        model_inputs = self.image_processor(images=load_image(inputs["image"]), return_tensors="pt")
        model_inputs["label"] = torch.tensor([self._label_id(inputs["label"])])
        return model_inputs

    def _forward(self, model_inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        label = model_inputs.pop("label")
        return {"logits": self.model(**model_inputs).logits, "label": label}

    def postprocess(self, model_outputs: dict[str, torch.Tensor]) -> dict[str, Any]:
        probabilities = F.softmax(model_outputs["logits"][0].float(), dim=-1)
        label = int(model_outputs["label"][0])
        predicted = int(probabilities.argmax())
        names = self.model.config.id2label
        return {
            "label": names[label],
            "alignment_score": float(probabilities[label]),
            "loss": float(-torch.log(probabilities[label].clamp_min(1e-12))),
            "predicted_label": names[predicted],
            "bias_conflicting": predicted != label,
        }


PIPELINE_REGISTRY.register_pipeline(
    "bias-alignment", pipeline_class=BiasAlignmentPipeline, pt_model=AutoModelForImageClassification, type="image"
)


def save_amplifier(model: Any, image_processor: Any, path: str | os.PathLike) -> None:
    """Save an amplifier as a transformers custom pipeline: weights, config (with ``custom_pipelines``),
    image processor and this file, so that ``pipeline(model=path, trust_remote_code=True)`` scores images in
    a Python without hf-ddb. Because the folder names its own pipeline code, transformers then asks for
    ``trust_remote_code=True`` with ``pipeline("bias-alignment", model=path)`` too, hf-ddb installed or not."""
    BiasAlignmentPipeline(model=model, image_processor=image_processor).save_pretrained(path)
