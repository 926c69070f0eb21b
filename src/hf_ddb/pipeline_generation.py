"""`BiasAlignedGenerationPipeline`: class-conditional pixel-space diffusion sampling with classifier-free guidance.

This module imports only torch, numpy, PIL and diffusers: ``save_pretrained`` copies it into the saved
folder as ``pipeline.py`` and names it in ``model_index.json`` (``"_class_name": ["pipeline",
"BiasAlignedGenerationPipeline"]``, diffusers' custom-pipeline convention), so someone without hf-ddb loads
the folder or its Hub repo with::

    DiffusionPipeline.from_pretrained(repo_or_folder, trust_remote_code=True)

``BiasAlignedGenerationPipeline.from_pretrained(repo_or_folder)`` needs no flag: it uses this class and runs
no code from the folder.

Guidance follows the DDB paper: ``eps = (1 + w) * eps(x, c) - w * eps(x, null)`` with ``w =
guidance_scale``. ``w = 0`` is plain conditional sampling (no unconditional pass). In diffusers' usual
convention (``uncond + s * (cond - uncond)``, as in `DiTPipeline`) this is ``s = 1 + w``. The null class id
is read from the UNet config: the last class embedding, ``num_class_embeds - 1``.
"""

from __future__ import annotations

import inspect
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline, UNet2DModel
from diffusers.schedulers import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor


@dataclass
class BiasAlignedGenerationOutput(BaseOutput):
    """Generated images (PIL list, numpy NHWC in [0, 1], or torch NCHW in [0, 1]) and their class ids."""

    images: list[PIL.Image.Image] | np.ndarray | torch.Tensor
    class_labels: list[int]


class BiasAlignedGenerationPipeline(DiffusionPipeline):
    """Sample bias-aligned images from a class-conditional `UNet2DModel` trained with a null class.

    Args:
        unet: a `UNet2DModel` with ``num_class_embeds = num_classes + 1``; the last id is the null class.
        scheduler: any diffusers scheduler (DDPM, DDIM, DPM-Solver++, ...); swap it with
            ``pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)``.
        id2label: optional class names, stored in ``model_index.json``.
    """

    model_cpu_offload_seq = "unet"
    _callback_tensor_inputs = ["latents"]

    def __init__(self, unet: UNet2DModel, scheduler: SchedulerMixin, id2label: dict | None = None) -> None:
        super().__init__()
        if unet.config.num_class_embeds is None or unet.config.num_class_embeds < 2:
            raise ValueError(
                "the UNet needs num_class_embeds = num_classes + 1 (the last id is the null class); "
                f"got num_class_embeds={unet.config.num_class_embeds}"
            )
        self.register_modules(unet=unet, scheduler=scheduler)
        labels = {int(k): str(v) for k, v in (id2label or {}).items()}
        self.register_to_config(id2label=labels or None)

    @property
    def num_classes(self) -> int:
        return int(self.unet.config.num_class_embeds) - 1

    @property
    def null_class_id(self) -> int:
        return int(self.unet.config.num_class_embeds) - 1

    @property
    def labels(self) -> dict[str, int]:
        """Class name -> id (like `DiTPipeline.labels`)."""
        id2label = self.config.id2label or {i: str(i) for i in range(self.num_classes)}
        return {str(name): int(i) for i, name in id2label.items()}

    def get_label_ids(self, label: str | list[str]) -> list[int]:
        """Map class names to ids; an unknown name raises ``ValueError`` listing the known ones."""
        names = [label] if isinstance(label, str) else list(label)
        unknown = [name for name in names if name not in self.labels]
        if unknown:
            raise ValueError(f"unknown class name(s) {unknown}; known: {sorted(self.labels, key=self.labels.get)}")
        return [self.labels[name] for name in names]

    def _resolve_labels(self, class_labels: Any, num_images_per_class: int | None) -> list[int]:
        if class_labels is None:
            class_labels = list(range(self.num_classes))
        elif isinstance(class_labels, (int, str)):
            class_labels = [class_labels]
        ids = []
        for label in class_labels:
            if isinstance(label, str):
                ids.extend(self.get_label_ids(label))
            elif isinstance(label, bool) or not isinstance(label, int | np.integer):
                raise ValueError(f"class labels are integer ids or class names, got {label!r}")  # 1.7 is no class
            else:
                ids.append(int(label))
        bad = [i for i in ids if not 0 <= i < self.num_classes]
        if bad:
            raise ValueError(
                f"unknown class id(s) {bad}: this model has classes 0..{self.num_classes - 1} "
                f"(id {self.null_class_id} is the null class used for guidance)"
            )
        if num_images_per_class is not None:
            if num_images_per_class < 1:
                raise ValueError(f"num_images_per_class must be >= 1, got {num_images_per_class}")
            ids = [i for i in ids for _ in range(num_images_per_class)]
        if not ids:
            raise ValueError("nothing to generate: class_labels is empty")
        return ids

    @torch.no_grad()
    def __call__(
        self,
        class_labels: int | str | list[int | str] | None = None,
        num_images_per_class: int | None = None,
        guidance_scale: float = 0.0,
        num_inference_steps: int = 50,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        eta: float = 0.0,
        callback_on_step_end: Any = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> BiasAlignedGenerationOutput | tuple:
        """Generate images for ``class_labels`` (ids or names; default every class).

        Args:
            num_images_per_class: repeat each requested class this many times.
            guidance_scale: the paper's ``w >= 0``; ``eps = (1 + w) eps_cond - w eps_null``.
            num_inference_steps: denoising steps of the scheduler.
            eta: DDIM's eta, passed only to schedulers whose ``step`` takes it.
            output_type: ``"pil"``, ``"np"`` (NHWC float in [0, 1]) or ``"pt"`` (NCHW float in [0, 1]).
            callback_on_step_end: diffusers' hook, called as ``callback(pipe, step, timestep, kwargs)`` after
                each step with the tensors named in ``callback_on_step_end_tensor_inputs`` (``["latents"]``);
                the dict it returns replaces them (e.g. to stop early or inspect intermediate samples).
        """
        tensor_inputs = callback_on_step_end_tensor_inputs or ["latents"]
        unknown = [name for name in tensor_inputs if name not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(f"callback_on_step_end_tensor_inputs {unknown} unknown; this pipeline has ['latents']")
        if not (isinstance(guidance_scale, int | float) and math.isfinite(guidance_scale) and guidance_scale >= 0):
            raise ValueError(f"guidance_scale is the paper's w and must be a finite number >= 0, got {guidance_scale}")
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
        ids = self._resolve_labels(class_labels, num_images_per_class)
        batch = len(ids)
        size = self.unet.config.sample_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        shape = (batch, self.unet.config.in_channels, *size)
        latents = randn_tensor(shape, generator=generator, device=self._execution_device, dtype=self.unet.dtype)
        latents = latents * self.scheduler.init_noise_sigma

        guided = guidance_scale > 0
        labels = torch.tensor(ids, device=self._execution_device)
        if guided:
            labels = torch.cat([labels, torch.full_like(labels, self.null_class_id)])
        step_kwargs = {}
        if "eta" in inspect.signature(self.scheduler.step).parameters:
            step_kwargs["eta"] = eta
        if "generator" in inspect.signature(self.scheduler.step).parameters:
            step_kwargs["generator"] = generator

        self.scheduler.set_timesteps(num_inference_steps, device=self._execution_device)
        for step, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            model_input = torch.cat([latents, latents]) if guided else latents
            model_input = self.scheduler.scale_model_input(model_input, t)
            noise = self.unet(model_input, t, class_labels=labels).sample
            if guided:
                cond, uncond = noise.chunk(2)
                noise = (1 + guidance_scale) * cond - guidance_scale * uncond
            latents = self.scheduler.step(noise, t, latents, **step_kwargs).prev_sample
            if callback_on_step_end is not None:
                returned = callback_on_step_end(self, step, t, {"latents": latents} if tensor_inputs else {})
                latents = returned.pop("latents", latents)

        images = (latents / 2 + 0.5).clamp(0, 1)
        if output_type == "pt":
            output: Any = images.cpu()
        else:
            output = images.cpu().permute(0, 2, 3, 1).float().numpy()
            if output_type == "pil":
                output = self.numpy_to_pil(output)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (output, ids)
        return BiasAlignedGenerationOutput(images=output, class_labels=ids)

    @classmethod
    def _dict_from_json_file(cls, json_file: str | Path) -> dict[str, Any]:
        """Read ``model_index.json``: loading through this class uses this class, so the folder's own
        ``pipeline.py`` (named for `DiffusionPipeline`, which then asks for ``trust_remote_code``) is ignored."""
        config = super()._dict_from_json_file(json_file)
        if isinstance(config.get("_class_name"), list):
            config["_class_name"] = config["_class_name"][-1]
        return config

    def save_pretrained(self, save_directory: str | Path, *args: Any, push_to_hub: bool = False, **kwargs: Any) -> None:
        """Save as diffusers does, plus this file as ``pipeline.py``, named in ``model_index.json``, for
        ``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`` without hf-ddb; with
        ``push_to_hub`` (and diffusers' ``repo_id``, ``token``, ``private``, ``commit_message``, ``create_pr``)
        the folder is uploaded after ``pipeline.py`` is in it, so the Hub repo carries the pipeline code."""
        hub = {
            key: kwargs.pop(key)
            for key in ("repo_id", "token", "private", "commit_message", "create_pr")
            if key in kwargs
        }
        super().save_pretrained(save_directory, *args, **kwargs)
        shutil.copyfile(inspect.getfile(BiasAlignedGenerationPipeline), Path(save_directory) / "pipeline.py")
        index_file = Path(save_directory) / self.config_name
        index = json.loads(index_file.read_text())
        index["_class_name"] = ["pipeline", type(self).__name__]
        index_file.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        if push_to_hub:
            from huggingface_hub import create_repo

            token = hub.get("token")
            repo = create_repo(
                hub.get("repo_id", Path(save_directory).name), exist_ok=True, private=hub.get("private"), token=token
            )
            self._upload_folder(
                str(save_directory),
                repo.repo_id,
                token=token,
                commit_message=hub.get("commit_message"),
                create_pr=hub.get("create_pr", False),
            )
