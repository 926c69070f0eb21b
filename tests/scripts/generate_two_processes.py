"""Run under `torchrun --nproc-per-node 2`: sharded generation with a tiny random pipeline (used by a test)."""

import json
import sys
from pathlib import Path

import torch
from accelerate import PartialState
from diffusers import DDPMScheduler

from hf_ddb.diffusion import DiffusionConfig, build_unet
from hf_ddb.generation import GenerationConfig, generate_synthetic_dataset
from hf_ddb.pipeline_generation import BiasAlignedGenerationPipeline
from hf_ddb.utils import leave_process_group

if __name__ == "__main__":
    torch.set_num_threads(1)
    state = PartialState(cpu=True)
    out = Path(sys.argv[1])
    torch.manual_seed(0)
    unet = build_unet(DiffusionConfig.from_preset("tiny"), num_classes=3)
    pipe = BiasAlignedGenerationPipeline(unet=unet, scheduler=DDPMScheduler(), id2label={0: "a", 1: "b", 2: "c"})
    config = GenerationConfig(num_images_per_class=7, batch_size=3, num_inference_steps=2, seed=5)
    before = {p.name for p in (out / "shards").glob("*.parquet")} if (out / "shards").is_dir() else set()
    dataset = generate_synthetic_dataset(pipe, out, config)
    made = sorted({p.name for p in (out / "shards").glob("*.parquet")} - before)
    report = {"rank": state.process_index, "world": state.num_processes, "rows": len(dataset)}
    (out / f"rank{state.process_index}.json").write_text(json.dumps(report))
    leave_process_group()  # before exit: gloo torn down at exit can abort a process
