"""Turn a `BiasAlignedGenerationPipeline` into a synthetic `datasets.Dataset`, resumably and in parallel.

The work is cut into shards of at most ``batch_size`` images of one class. Each shard has its own seed
derived from (seed, class, shard), so the result does not depend on how many processes ran or how often
the run was interrupted. Shards are written as Parquet files to a temporary name and renamed when
complete; a re-run skips the shards already there. Under Accelerate (``accelerate launch`` or
``torchrun``) every process takes every ``num_processes``-th shard; the main process assembles the
dataset (columns ``image``, ``label`` with the source's class names) once all shards exist.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from accelerate import PartialState
from datasets import ClassLabel, Dataset, Features, Image
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from tqdm.auto import tqdm

from .data import origin_info
from .pipeline_generation import BiasAlignedGenerationPipeline
from .settings import GenerationConfig
from .utils import atomic_directory, atomic_write_text, force_cpu_processes, progress_bars_shown

__all__ = [
    "SCHEDULERS",
    "GenerationConfig",
    "generate_synthetic_dataset",
    "load_synthetic_dataset",
    "save_scheduler",
    "set_scheduler",
]

ROWS_PER_PARQUET_FILE = 50_000  # the saved set's Parquet files (the Hub's data/train-*.parquet layout)

SCHEDULERS = {
    "ddpm": (DDPMScheduler, {}),
    "ddim": (DDIMScheduler, {}),
    "dpm++": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
}


def set_scheduler(pipeline: BiasAlignedGenerationPipeline, name: str) -> BiasAlignedGenerationPipeline:
    """Swap the pipeline's scheduler in place (``ddpm``, ``ddim`` or ``dpm++``), keeping its noise schedule."""
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {sorted(SCHEDULERS)}")
    cls, extra = SCHEDULERS[name]
    pipeline.scheduler = cls.from_config(pipeline.scheduler.config, **extra)
    return pipeline


def save_scheduler(folder: str | os.PathLike, name: str, base: Any) -> bool:
    """Make scheduler ``name``, built from ``base`` (the scheduler the model was trained with) as `set_scheduler`
    builds it, the scheduler of the saved pipeline ``folder`` (``scheduler/`` and ``model_index.json``), so that
    ``from_pretrained(folder)`` samples as the run generated. Returns whether the folder changed.

    The run calls it at its report stage: the diffusion stage saves the training scheduler and its key does not
    depend on how the images are sampled; the generation stage always starts again from the training scheduler.
    """
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {sorted(SCHEDULERS)}")
    cls, extra = SCHEDULERS[name]
    scheduler = cls.from_config(base.config, **extra)
    folder = Path(folder)
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    config_path = folder / "scheduler" / "scheduler_config.json"
    wanted = json.loads(scheduler.to_json_string())
    if index.get("scheduler") == ["diffusers", cls.__name__] and config_path.is_file():
        saved = json.loads(config_path.read_text())
        if {k: v for k, v in saved.items() if k != "_diffusers_version"} == {
            k: v for k, v in wanted.items() if k != "_diffusers_version"
        }:
            return False
    with atomic_directory(folder / "scheduler") as tmp:
        scheduler.save_pretrained(tmp)
    index["scheduler"] = ["diffusers", cls.__name__]
    atomic_write_text(index_path, json.dumps(index, indent=2, sort_keys=True) + "\n")
    return True


def _shard_seed(seed: int, label: int, shard: int) -> int:
    return int(np.random.SeedSequence([seed, label, shard]).generate_state(1, dtype=np.uint64)[0] % (2**63))


def _png_bytes(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


SETTINGS_FILE = "generation_settings.json"


def _check_same_settings(output_dir: Path, settings: dict[str, Any]) -> None:
    """A folder holding shards or a set made with other settings is never reused (nor silently mixed)."""
    record = output_dir / SETTINGS_FILE
    legacy = output_dir / "dataset" / "generation.json"  # sets made before the settings file existed
    if record.is_file():
        saved = json.loads(record.read_text())
    elif legacy.is_file():
        saved = {key: json.loads(legacy.read_text()).get(key) for key in settings if key != "class_names"}
        settings = {key: value for key, value in settings.items() if key != "class_names"}
    else:
        return
    changed = sorted(key for key in settings if saved.get(key) != settings[key])
    if changed:
        raise ValueError(
            f"{output_dir} holds synthetic images generated with other settings ({', '.join(changed)} differ); "
            "use another output folder or delete it"
        )


def generate_synthetic_dataset(
    pipeline: BiasAlignedGenerationPipeline,
    output_dir: str | os.PathLike,
    config: GenerationConfig,
    *,
    class_labels: Sequence[int] | None = None,
) -> Dataset:
    """Generate ``config.num_images_per_class`` images for every class (or ``class_labels``) into a Dataset.

    Resumable and shardable across Accelerate processes; see the module docstring. The assembled dataset
    is saved to ``output_dir/dataset`` and returned.
    """
    config.validate()
    names = [pipeline.config.id2label[i] if pipeline.config.id2label else str(i) for i in range(pipeline.num_classes)]
    labels = list(range(pipeline.num_classes)) if class_labels is None else list(class_labels)
    labels = pipeline._resolve_labels(labels, None)  # unknown or non-integer class ids fail before any work
    output_dir = Path(output_dir)
    final = output_dir / "dataset"
    settings = {**asdict(config), "class_labels": labels, "class_names": names}
    _check_same_settings(output_dir, settings)
    if (final / "generation.json").is_file():
        return load_synthetic_dataset(final)
    state = PartialState(cpu=force_cpu_processes())
    if state.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(output_dir / SETTINGS_FILE, json.dumps(settings, indent=2))
    state.wait_for_everyone()
    shard_dir = output_dir / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    per_shard = config.batch_size
    units = [
        (label, shard, min(per_shard, config.num_images_per_class - shard * per_shard))
        for label in labels
        for shard in range(-(-config.num_images_per_class // per_shard))
    ]
    mine = units[state.process_index :: state.num_processes]
    todo = [u for u in mine if not (shard_dir / _shard_name(*u[:2])).is_file()]
    set_scheduler(pipeline, config.scheduler)
    pipeline.to(state.device)
    pipeline.set_progress_bar_config(disable=True)
    for label, shard, count in tqdm(
        todo,
        desc=f"generating (process {state.process_index})",
        disable=not (state.is_local_main_process and progress_bars_shown()),
    ):
        generator = torch.Generator(device="cpu").manual_seed(_shard_seed(config.seed, label, shard))
        images = pipeline(
            class_labels=[label] * count,
            guidance_scale=config.guidance_scale,
            num_inference_steps=config.num_inference_steps,
            generator=generator,
        ).images
        table = pa.table(
            {
                "image": [{"bytes": _png_bytes(img), "path": None} for img in images],
                "label": [label] * count,
                "shard": [shard] * count,
                "index_in_shard": list(range(count)),
            }
        )
        target = shard_dir / _shard_name(label, shard)
        tmp = target.with_name(f".{target.name}.tmp-{state.process_index}-{os.getpid()}")
        pq.write_table(table, tmp)
        os.replace(tmp, target)
    state.wait_for_everyone()
    if state.is_main_process and not (final / "generation.json").is_file():
        features = Features({"image": Image(), "label": ClassLabel(names=names)})
        columns: dict[str, list[Any]] = {"image": [], "label": []}
        for label, shard, _ in units:
            table = pq.read_table(shard_dir / _shard_name(label, shard), columns=["image", "label"]).to_pydict()
            columns["image"].extend(table["image"])
            columns["label"].extend(table["label"])
        dataset = Dataset.from_dict(columns, features=features, info=origin_info("synthetic", features))
        with atomic_directory(final) as tmp_dir:
            (tmp_dir / "data").mkdir()
            for name, part in parquet_parts(dataset):
                part.to_parquet(str(tmp_dir / name))  # the schema keeps the features: the class names too
            meta = {
                **asdict(config),
                "class_labels": labels,
                "synthetic": True,
                "num_images": len(dataset),
                "num_processes": state.num_processes,
            }
            (tmp_dir / "generation.json").write_text(json.dumps(meta, indent=2))
    state.wait_for_everyone()
    return load_synthetic_dataset(final)


def parquet_file_names(num_rows: int) -> list[str]:
    """The Hub's Parquet layout for a set of ``num_rows``: ``data/train-00000-of-0000N.parquet``, ..."""
    count = max(1, -(-num_rows // ROWS_PER_PARQUET_FILE))
    return [f"data/train-{index:05d}-of-{count:05d}.parquet" for index in range(count)]


def parquet_parts(dataset: Dataset) -> list[tuple[str, Dataset]]:
    """``dataset`` cut into the Hub's Parquet layout: ``(data/train-00000-of-0000N.parquet, rows)`` pairs."""
    names = parquet_file_names(dataset.num_rows)
    return [(name, dataset.shard(len(names), index, contiguous=True)) for index, name in enumerate(names)]


def load_synthetic_dataset(folder: str | os.PathLike) -> Dataset:
    """The synthetic set `generate_synthetic_dataset` saved in ``folder``: Parquet files in the Hub's layout
    (``load_dataset(folder)`` reads them too, with the image and class-name features), marked synthetic; a
    folder written by ``save_to_disk`` (runs made before 0.5) is read as it is."""
    folder = Path(folder)
    if (folder / "dataset_info.json").is_file():
        return Dataset.load_from_disk(str(folder))
    files = sorted(str(path) for path in (folder / "data").glob("train-*.parquet"))
    if not files:
        raise FileNotFoundError(f"no synthetic dataset in {folder} (expected data/train-*.parquet)")
    loaded = Dataset.from_parquet(files)
    return Dataset(loaded.data, info=origin_info("synthetic", loaded.features))


def _shard_name(label: int, shard: int) -> str:
    return f"class{label:04d}-shard{shard:05d}.parquet"
