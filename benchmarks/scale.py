"""Scale: peak memory per process and images/s of the target's training and of scoring, for a dataset
that is made here (never committed), in RAM vs decoded on the fly, on 1 vs 2 processes (gloo on the CPU,
one thread each).

    python benchmarks/scale.py --num-images 100000 --sizes 28 128 --output benchmarks/results/scale.json

Each measurement runs in a fresh process (``torchrun`` for two), so its peak RSS is its own. ``in_ram``
forces the whole split into RAM (``in_memory_gb`` large), ``on_the_fly`` decodes per batch (``in_memory_gb``
0); hf-ddb's default picks between them by the split's decoded size against 2 GB. ``streaming`` reads the
same images as Parquet through ``load_dataset(..., streaming=True)`` (a ``datasets.IterableDataset``, as for
a Hub dataset too large to download; local files here, so no network time is in it): training takes as
many steps as one epoch of the others; under two processes each reads its own shards, and scoring has each
process decode every second row. ``streamed_split`` is what a run config's ``benchmark.streaming`` does
(`hf_ddb.data.StreamedSplit`): the label column read once (``load_seconds``, not in images/s), then every
process reads the whole stream and decodes only its rows (its part of each batch, or every second row).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

STAGES = ("train", "score")
PATHS = {"in_ram": 1e9, "on_the_fly": 0.0, "streaming": 0.0, "streamed_split": 0.0}  # in_memory_gb


def make_dataset(folder: Path, num_images: int, size: int) -> None:
    """Ten classes of flat-colour images with a class-coloured square (PNG: about 1 KB each at 128 px)."""
    from datasets import ClassLabel, Dataset, Features, Image
    from PIL import Image as PILImage
    from PIL import ImageDraw

    palette = np.random.default_rng(0).integers(0, 256, (10, 3))

    def rows():
        rng = np.random.default_rng(1)
        for i in range(num_images):
            label = i % 10
            image = PILImage.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 256, 3)))
            x, y = rng.integers(0, size // 2, 2)
            ImageDraw.Draw(image).rectangle([x, y, x + size // 3, y + size // 3], fill=tuple(map(int, palette[label])))
            yield {"image": image, "label": label}

    features = Features({"image": Image(), "label": ClassLabel(names=[str(i) for i in range(10)])})
    Dataset.from_generator(rows, features=features).save_to_disk(str(folder))


def worker(data: str, stage: str, path: str, batch_size: int, out: str) -> None:
    """One measurement, in this process (one of several under torchrun): writes rank<k>.json."""
    import torch
    from datasets import load_dataset, load_from_disk

    from hf_ddb.inputs import ImageLoading, predict_logits
    from hf_ddb.models import build_classifier
    from hf_ddb.training import TrainingConfig, train_erm

    torch.set_num_threads(1)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        PartialState(cpu=True)  # the gloo group: scoring shares the rows out (training would form it anyway)
    rank = int(os.environ.get("RANK", "0"))
    dataset = load_from_disk(data)
    size, num_rows = dataset[0]["image"].width, len(dataset)
    load_seconds = 0.0
    if path == "streaming":
        dataset = load_dataset("parquet", data_dir=str(Path(data) / "parquet"), split="train", streaming=True)
    elif path == "streamed_split":
        from hf_ddb.data import load_streamed_image_dataset

        loading_started = time.perf_counter()
        dataset = load_streamed_image_dataset(Path(data) / "parquet")["train"]
        load_seconds = time.perf_counter() - loading_started
    model = build_classifier("mlp", {i: str(i) for i in range(10)}, image_size=size, seed=0)[0]
    loading = ImageLoading(in_memory_gb=PATHS[path])
    started = time.perf_counter()
    if stage == "train":
        processes = int(os.environ.get("WORLD_SIZE", "1"))
        steps = {"max_steps": -(-num_rows // (batch_size * processes))} if path == "streaming" else {}
        args = TrainingConfig(epochs=1, batch_size=batch_size).to_training_arguments(
            Path(out) / "trainer", disable_tqdm=True, logging_strategy="no", report_to="none", **steps
        )
        train_erm(model, dataset, args, loading=loading)
    else:
        predict_logits(model, dataset, batch_size=1024, loading=loading)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    result = {"seconds": seconds, "peak_rss_mb": peak_mb, "load_seconds": load_seconds}
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))


def measure(data: Path, stage: str, path: str, processes: int, batch_size: int, scratch: Path) -> dict:
    scratch.mkdir(parents=True, exist_ok=True)
    for old in scratch.glob("rank*.json"):
        old.unlink()
    script = [__file__, "--worker", str(data), stage, path, str(batch_size // processes), str(scratch)]
    launcher = (
        [sys.executable]
        if processes == 1
        else [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes)]
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    subprocess.run([*launcher, *script], check=True, env=env, capture_output=True)
    ranks = [json.loads(p.read_text()) for p in sorted(scratch.glob("rank*.json"))]
    return {
        "seconds": max(r["seconds"] for r in ranks),
        "peak_rss_mb_per_process": max(r["peak_rss_mb"] for r in ranks),
        "load_seconds": max(r["load_seconds"] for r in ranks),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        data, stage, path, batch, out = sys.argv[2:7]
        worker(data, stage, path, int(batch), out)
        return
    from results_io import write_results

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=100_000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[28, 128])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS))
    parser.add_argument("--in-ram-max-size", type=int, default=28, help="larger images: on the fly only")
    parser.add_argument("--batch-size", type=int, default=256, help="global batch of the training stage")
    parser.add_argument("--workdir", default="runs/scale")
    parser.add_argument("--output", default="benchmarks/results/scale.json")
    args = parser.parse_args()
    started = time.time()
    rows = []
    for size in args.sizes:
        data = Path(args.workdir) / f"data-{args.num_images}-{size}px"
        if not (data / "dataset_info.json").is_file():
            made = time.time()
            make_dataset(data, args.num_images, size)
            print(f"made {data} in {time.time() - made:.0f} s", flush=True)
        if {"streaming", "streamed_split"} & set(args.paths) and not (data / "parquet").is_dir():
            from datasets import load_from_disk

            dataset = load_from_disk(str(data))
            (data / "parquet").mkdir()
            for shard in range(8):  # shards, as a Hub dataset has: DataLoader workers and processes split them
                part = dataset.shard(8, shard, contiguous=True)
                part.to_parquet(str(data / "parquet" / f"train-{shard:05d}-of-00008.parquet"))
        decoded_gb = args.num_images * size * size * 3 / 1e9
        for stage in STAGES:
            for path in args.paths:
                if path == "in_ram" and size > args.in_ram_max_size:
                    continue
                for processes in args.processes:
                    result = measure(data, stage, path, processes, args.batch_size, Path(args.workdir) / "scratch")
                    row = {
                        "size": size,
                        "stage": stage,
                        "path": path,
                        "processes": processes,
                        "decoded_gb": round(decoded_gb, 2),
                        "images_per_second": round(args.num_images / result["seconds"]),
                        **{k: round(v, 1) for k, v in result.items()},
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    print(f"\n| px | stage | path | processes | images/s | peak RSS per process (MB) |\n|{'---|' * 6}")
    for r in rows:
        print(
            f"| {r['size']} | {r['stage']} | {r['path']} | {r['processes']} | {r['images_per_second']:,} "
            f"| {r['peak_rss_mb_per_process']:,.0f} |"
        )
    write_results(args.output, "scale.py", args, started, num_images=args.num_images, rows=rows)


if __name__ == "__main__":
    main()
