"""Step A of DDB: train a class-conditional diffusion model on the *biased* training set.

A `diffusers.UNet2DModel` with ``num_class_embeds = num_classes + 1`` (the last id is the null class)
learns each class together with its bias. Class labels are dropped to the null id with probability
``class_dropout_prob`` per sample (default 0.1) so the same model can be sampled with classifier-free
guidance. The official DDB code drops the labels of whole batches instead; per-sample dropout gives every
batch both conditional and unconditional targets, which is the usual CFG recipe (Ho & Salimans, 2022).

Training runs on Accelerate (CPU, one or several GPUs, ``accelerate launch`` or ``torchrun``): AdamW with
warm-up and a diffusers schedule, gradient clipping and accumulation, EMA weights, mixed precision where
the device has it, checkpoints every N steps with a limit, resume from the latest checkpoint, a progress
bar and a periodic sample grid. Data order, noise, timesteps and label dropout are drawn from generators
seeded by (seed, step, process), so a resumed run continues exactly where an uninterrupted one would be.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from datasets import ClassLabel, Dataset
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from diffusers.utils import make_image_grid
from PIL import Image as PILImage
from tqdm.auto import tqdm

from .data import image_channels
from .inputs import images
from .pipeline_generation import BiasAlignedGenerationPipeline
from .settings import PRESETS, DiffusionConfig
from .utils import atomic_directory, atomic_file, atomic_write_text, force_cpu_processes, progress_bars_shown

__all__ = ["PRESETS", "DiffusionConfig", "DiffusionTrainingOutput", "build_unet", "check_unet", "train_diffusion"]

logger = get_logger(__name__)


@dataclass
class DiffusionTrainingOutput:
    pipeline: BiasAlignedGenerationPipeline
    losses: list[float]
    global_step: int
    resumed_from: int | None
    train_seconds: float  # the training loop only (no data decoding, checkpointing or final save)


def build_unet(config: DiffusionConfig, num_classes: int, num_channels: int = 3) -> UNet2DModel:
    """A class-conditional UNet with ``num_classes + 1`` class embeddings (the last is the null class).

    ``num_channels`` is 1 for grayscale data (diffused in one channel, so samples stay grayscale) or 3."""
    return UNet2DModel(
        sample_size=config.resolution,
        in_channels=num_channels,
        out_channels=num_channels,
        block_out_channels=tuple(config.block_out_channels),
        layers_per_block=config.layers_per_block,
        down_block_types=tuple(config.down_block_types),
        up_block_types=tuple(config.up_block_types),
        add_attention=config.add_attention,
        norm_num_groups=config.norm_num_groups,
        dropout=config.dropout,
        num_class_embeds=num_classes + 1,
    )


def check_unet(config: DiffusionConfig) -> None:
    """Raises `ValueError` unless diffusers builds the UNet of ``config`` (block names, widths, attention): on
    the meta device, so nothing is allocated."""
    try:
        with torch.device("meta"):
            build_unet(config, num_classes=2)
    except (ValueError, TypeError, AttributeError) as err:  # e.g. an unknown down_block_types name
        raise ValueError(f"the UNet cannot be built from these settings: {err}") from err


def noise_scheduler(config: DiffusionConfig) -> DDPMScheduler:
    return DDPMScheduler(
        num_train_timesteps=config.num_train_timesteps,
        beta_schedule=config.beta_schedule,
        beta_start=config.beta_start,
        beta_end=config.beta_end,
    )


def _class_names(dataset: Dataset) -> list[str]:
    for column in ("image", "label"):
        if column not in dataset.column_names:
            raise ValueError(f"dataset has no column {column!r}; available: {dataset.column_names}")
    if len(dataset) == 0:
        raise ValueError("the training dataset is empty: the diffusion model needs images to learn from")
    feature = dataset.features["label"]
    if isinstance(feature, ClassLabel):
        return list(feature.names)
    return [str(i) for i in range(int(max(dataset["label"])) + 1)]


def _images_to_tensor(dataset: Dataset, resolution: int, num_channels: int = 3) -> torch.Tensor:
    """uint8 N x C x R x R (C = 1 grayscale, 3 RGB); other sizes are resized (shorter side) and centre-cropped,
    as in diffusers' examples."""
    from torchvision import transforms

    resize = transforms.Compose(
        [
            transforms.Resize(resolution, interpolation=transforms.InterpolationMode.BILINEAR),
            transforms.CenterCrop(resolution),
        ]
    )
    arrays = []
    mode = "L" if num_channels == 1 else "RGB"
    for image in images(dataset):
        image = image.convert(mode)
        if image.size != (resolution, resolution):
            image = resize(image)
        arrays.append(np.asarray(image).reshape(resolution, resolution, num_channels))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _checkpoints(folder: Path) -> list[tuple[int, Path]]:
    found = []
    if folder.is_dir():
        for path in folder.iterdir():
            match = re.fullmatch(r"checkpoint-(\d+)", path.name)
            if match and path.is_dir():
                found.append((int(match.group(1)), path))
    return sorted(found)


def _generator(*keys: int) -> torch.Generator:
    seed = int(np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0] % (2**63))
    return torch.Generator().manual_seed(seed)


def _sample_grid(pipeline: BiasAlignedGenerationPipeline, path: Path, seed: int) -> None:
    sampler = BiasAlignedGenerationPipeline(
        unet=pipeline.unet, scheduler=DDIMScheduler.from_config(pipeline.scheduler.config)
    )
    sampler.set_progress_bar_config(disable=True)
    images = sampler(
        num_images_per_class=4, num_inference_steps=20, generator=torch.Generator().manual_seed(seed)
    ).images  # PIL, class by class
    grid = make_image_grid(images, rows=pipeline.num_classes, cols=4)
    with atomic_file(path) as tmp:
        grid.resize((grid.width * 4, grid.height * 4), PILImage.Resampling.NEAREST).save(tmp)


def train_diffusion(
    dataset: Dataset,
    config: DiffusionConfig,
    output_dir: str | os.PathLike,
    *,
    accelerator: Accelerator | None = None,
    resume: bool = True,
) -> DiffusionTrainingOutput:
    """Train (or resume) a class-conditional diffusion model on ``dataset`` (columns ``image``, ``label``).

    Checkpoints go to ``output_dir/checkpoints/checkpoint-<step>``; the final pipeline (EMA weights when
    ``use_ema``) to ``output_dir/pipeline``, loadable with ``BiasAlignedGenerationPipeline.from_pretrained``.
    With ``resume`` a run continues from the latest checkpoint in ``output_dir``.
    """
    config.validate()
    check_unet(config)
    names = _class_names(dataset)
    labels_all = torch.as_tensor(np.asarray(dataset["label"]), dtype=torch.long)
    if len(labels_all) == 0:
        raise ValueError("the training dataset is empty")
    if int(labels_all.min()) < 0 or int(labels_all.max()) >= len(names):
        raise ValueError(
            f"labels span {int(labels_all.min())}..{int(labels_all.max())} but the model has {len(names)} classes"
        )
    output_dir = Path(output_dir)
    precision = {} if config.mixed_precision is None else {"mixed_precision": config.mixed_precision}
    accelerator = accelerator or Accelerator(  # no precision given: Accelerate reads the launcher's setting
        gradient_accumulation_steps=config.gradient_accumulation_steps, cpu=force_cpu_processes(), **precision
    )
    if accelerator.gradient_accumulation_steps != config.gradient_accumulation_steps:
        raise ValueError("the Accelerator's gradient_accumulation_steps differs from the config's")
    num_channels = image_channels(dataset)
    images_all = _images_to_tensor(dataset, config.resolution, num_channels)

    set_seed(config.seed)  # the initial weights
    unet = build_unet(config, len(names), num_channels)
    scheduler = noise_scheduler(config)
    optimizer = torch.optim.AdamW(
        unet.parameters(),
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        weight_decay=config.adam_weight_decay,
        eps=config.adam_epsilon,
    )
    # Accelerate steps a prepared scheduler once per process at every optimizer step.
    lr_schedule = get_scheduler(
        config.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=config.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=config.max_train_steps * accelerator.num_processes,
    )
    unet, optimizer, lr_schedule = accelerator.prepare(unet, optimizer, lr_schedule)
    ema = None
    if config.use_ema:
        ema = EMAModel(
            accelerator.unwrap_model(unet).parameters(),
            decay=config.ema_max_decay,
            use_ema_warmup=True,
            power=config.ema_power,
            model_cls=UNet2DModel,
            model_config=accelerator.unwrap_model(unet).config,
        )
        ema.to(accelerator.device)  # checkpointed as safetensors + JSON beside Accelerate's state, never pickled

    checkpoint_dir = output_dir / "checkpoints"
    global_step, resumed_from = 0, None
    if resume and _checkpoints(checkpoint_dir):
        _check_resumable(output_dir / "diffusion_config.json", config, names, num_channels)
        global_step, path = _checkpoints(checkpoint_dir)[-1]
        accelerator.load_state(str(path))
        if ema is not None:
            _load_ema(ema, path)
        resumed_from = global_step
        logger.info(f"resuming diffusion training from {path} (step {global_step})", main_process_only=True)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            output_dir / "diffusion_config.json",
            json.dumps(
                {
                    **config.to_dict(),
                    "class_names": names,
                    "num_channels": num_channels,
                    "num_processes": accelerator.num_processes,
                },
                indent=2,
            ),
        )

    rank, world = accelerator.process_index, accelerator.num_processes
    per_device = config.train_batch_size
    micro_per_epoch = max(1, len(labels_all) // (per_device * world))
    null_id = len(names)
    losses: list[float] = []
    progress = tqdm(
        total=config.max_train_steps,
        initial=global_step,
        desc="diffusion training",
        disable=not (accelerator.is_local_main_process and progress_bars_shown()),
    )
    unet.train()
    train_seconds = 0.0
    order, order_epoch = None, -1
    while global_step < config.max_train_steps:
        step_start = time.perf_counter()
        for micro in range(config.gradient_accumulation_steps):
            index = global_step * config.gradient_accumulation_steps + micro
            epoch, position = divmod(index, micro_per_epoch)
            if epoch != order_epoch:  # one permutation per epoch, from (seed, epoch): resumable
                order, order_epoch = torch.randperm(len(labels_all), generator=_generator(config.seed, epoch)), epoch
            start = (position * world + rank) * per_device
            batch_index = order[start : start + per_device]
            clean = images_all[batch_index].to(accelerator.device).float() / 127.5 - 1.0
            labels = labels_all[batch_index].to(accelerator.device)
            draws = _generator(config.seed, 1 + index, rank)
            noise = torch.randn(clean.shape, generator=draws).to(accelerator.device)
            timesteps = torch.randint(0, config.num_train_timesteps, (len(clean),), generator=draws).to(
                accelerator.device
            )
            drop = torch.rand(len(clean), generator=draws).to(accelerator.device) < config.class_dropout_prob
            labels = torch.where(drop, torch.full_like(labels, null_id), labels)
            noisy = scheduler.add_noise(clean, noise, timesteps)
            with accelerator.accumulate(unet):
                prediction = unet(noisy, timesteps, class_labels=labels).sample
                loss = F.mse_loss(prediction.float(), noise.float())
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(unet.parameters(), config.max_grad_norm)
                optimizer.step()
                lr_schedule.step()
                optimizer.zero_grad()
        global_step += 1
        if ema is not None:
            ema.step(accelerator.unwrap_model(unet).parameters())
        step_loss = accelerator.reduce(loss.detach(), reduction="mean").item()
        train_seconds += time.perf_counter() - step_start
        losses.append(step_loss)
        progress.update(1)
        progress.set_postfix(loss=f"{step_loss:.4f}", lr=f"{lr_schedule.get_last_lr()[0]:.2e}")
        if global_step % config.checkpointing_steps == 0 or global_step == config.max_train_steps:
            _save_checkpoint(accelerator, checkpoint_dir, global_step, config.checkpoints_total_limit, ema)
        if config.sample_every and global_step % config.sample_every == 0 and accelerator.is_main_process:
            pipe = _final_pipeline(accelerator, unet, ema, config, names, use_ema=False)
            _sample_grid(pipe, output_dir / "samples" / f"step-{global_step:06d}.png", config.seed)
            unet.train()
    progress.close()
    accelerator.wait_for_everyone()
    pipeline = _final_pipeline(accelerator, unet, ema, config, names, use_ema=config.use_ema)
    if accelerator.is_main_process:
        with atomic_directory(output_dir / "pipeline") as tmp:
            pipeline.save_pretrained(tmp)
    accelerator.wait_for_everyone()
    return DiffusionTrainingOutput(
        pipeline=pipeline,
        losses=losses,
        global_step=global_step,
        resumed_from=resumed_from,
        train_seconds=train_seconds,
    )


_ARCHITECTURE_KEYS = (
    "resolution",
    "block_out_channels",
    "layers_per_block",
    "down_block_types",
    "up_block_types",
    "add_attention",
    "norm_num_groups",
)


def _check_resumable(saved_config: Path, config: DiffusionConfig, names: list[str], num_channels: int) -> None:
    """A checkpoint only resumes with the same classes and UNet shape; say which differs."""
    if not saved_config.is_file():
        return
    saved = json.loads(saved_config.read_text())
    if saved.get("class_names") != names:
        raise ValueError(
            f"the checkpoints in {saved_config.parent} were trained on {len(saved.get('class_names', []))} classes "
            f"{saved.get('class_names')} but this dataset has {len(names)} classes {names}; use another output_dir"
        )
    if saved.get("num_channels", 3) != num_channels:
        raise ValueError(
            f"the checkpoints in {saved_config.parent} were trained on {saved.get('num_channels', 3)}-channel images, "
            f"this dataset has {num_channels}; use another output_dir"
        )
    for key in _ARCHITECTURE_KEYS:
        if saved.get(key) != getattr(config, key):
            raise ValueError(
                f"cannot resume from {saved_config.parent}: {key} was {saved.get(key)!r}, now {getattr(config, key)!r}"
            )


EMA_TENSORS, EMA_SETTINGS = "ema.safetensors", "ema.json"


def _save_ema(ema: EMAModel, folder: Path) -> None:
    """The EMA weights as safetensors and its counters as JSON (Accelerate would pickle the object)."""
    from safetensors.torch import save_file

    state = ema.state_dict()
    shadow = state.pop("shadow_params")
    save_file({f"shadow.{i}": p.detach().contiguous().cpu() for i, p in enumerate(shadow)}, folder / EMA_TENSORS)
    (folder / EMA_SETTINGS).write_text(json.dumps(state))


def _load_ema(ema: EMAModel, folder: Path) -> None:
    """Restores `_save_ema`'s files into ``ema``, refusing anything that does not fit the UNet."""
    from safetensors.torch import load_file

    if not (folder / EMA_TENSORS).is_file():
        pickled = (
            " (the pickled EMA state of hf-ddb 0.3 and earlier is never loaded)"
            if any(folder.glob("custom_checkpoint_*"))
            else ""
        )
        raise FileNotFoundError(
            f"checkpoint {folder} has no {EMA_TENSORS}{pickled}; delete {folder.parent} to train from scratch"
        )
    tensors = load_file(folder / EMA_TENSORS)
    state = json.loads((folder / EMA_SETTINGS).read_text())
    shadow = [tensors.get(f"shadow.{i}") for i in range(len(ema.shadow_params))]
    pairs = list(zip(shadow, ema.shadow_params, strict=True))
    fits = len(tensors) == len(shadow) and all(
        t is not None and t.shape == p.shape and bool(torch.isfinite(t).all()) for t, p in pairs
    )
    numbers = all(
        isinstance(state.get(key), int | float) and not isinstance(state.get(key), bool)
        for key in ("decay", "min_decay", "optimization_step", "update_after_step", "inv_gamma", "power")
    )
    if not (fits and numbers and isinstance(state.get("use_ema_warmup"), bool)):
        raise ValueError(f"the EMA state in {folder} does not fit this UNet (or is corrupt); delete {folder.parent}")
    ema.load_state_dict({**state, "shadow_params": [t.to(p.device) for t, p in pairs]})


def _save_checkpoint(
    accelerator: Accelerator, folder: Path, step: int, limit: int | None, ema: EMAModel | None = None
) -> None:
    """``accelerator.save_state`` into a temporary folder, renamed when complete; keeps the newest ``limit``."""
    accelerator.wait_for_everyone()
    target = folder / f"checkpoint-{step}"
    token = [uuid.uuid4().hex[:12] if accelerator.is_main_process else None]  # one name for all processes
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(token)
    tmp = folder / f".checkpoint-{step}.tmp-{token[0]}"
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if ema is not None:
            _save_ema(ema, tmp)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
        if limit is not None:
            for _, old in _checkpoints(folder)[:-limit]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _final_pipeline(
    accelerator: Accelerator,
    unet: torch.nn.Module,
    ema: EMAModel | None,
    config: DiffusionConfig,
    names: list[str],
    *,
    use_ema: bool,
) -> BiasAlignedGenerationPipeline:
    model = accelerator.unwrap_model(unet)
    if use_ema and ema is not None:  # only once training is over: the EMA weights become the model's own
        ema.copy_to(model.parameters())
    model.eval()
    return BiasAlignedGenerationPipeline(unet=model, scheduler=noise_scheduler(config), id2label=dict(enumerate(names)))
