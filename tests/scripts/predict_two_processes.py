"""Run under `torchrun --nproc-per-node 2`: each process scores its share of a split, every one gets all rows
(in RAM and on the fly, 101 rows: not a multiple of 2 or of the batch). Writes rank<k>.npz (used by a test)."""

import sys
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from datasets import load_from_disk

from hf_ddb.inputs import ImageLoading, predict_logits
from hf_ddb.models import build_classifier
from hf_ddb.utils import leave_process_group

if __name__ == "__main__":
    torch.set_num_threads(1)
    state = PartialState(cpu=True)
    split, out = load_from_disk(sys.argv[1]), Path(sys.argv[2])
    model = build_classifier("mlp", {i: str(i) for i in range(10)}, image_size=16, seed=0)[0]
    in_ram = predict_logits(model, split, batch_size=16)
    on_the_fly = predict_logits(model, split, batch_size=16, loading=ImageLoading(in_memory_gb=0.0))
    np.savez(out / f"rank{state.process_index}.npz", in_ram=in_ram, on_the_fly=on_the_fly)
    if len(sys.argv) > 3:  # a streamed copy of the split (Parquet): scored in stream order on both processes
        from datasets import load_dataset

        stream = load_dataset("parquet", data_files=sys.argv[3], split="train", streaming=True)
        np.save(out / f"stream{state.process_index}.npy", predict_logits(model, stream, batch_size=16))
    leave_process_group()  # before exit: gloo torn down at exit can abort a process
