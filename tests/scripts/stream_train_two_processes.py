"""Run under `torchrun --nproc-per-node 2`: the rows each process trains on from a streamed, sharded dataset
(one epoch of the Trainer's own DataLoader); writes rank<k>.json with the labels it saw (used by a test)."""

import json
import sys
from pathlib import Path

import torch
from datasets import load_dataset

from hf_ddb.inputs import model_inputs
from hf_ddb.models import build_classifier
from hf_ddb.training import TrainingConfig
from hf_ddb.utils import leave_process_group

if __name__ == "__main__":
    from transformers import Trainer

    torch.set_num_threads(1)
    folder, out = sys.argv[1], Path(sys.argv[2])
    stream = load_dataset("parquet", data_dir=folder, split="train", streaming=True)
    model = build_classifier("mlp", {i: str(i) for i in range(10)}, image_size=16, seed=0)[0]
    items, collate = model_inputs(model, stream, train=True)
    args = TrainingConfig(batch_size=8).to_training_arguments(out / "trainer", max_steps=100, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=items, data_collator=collate)
    seen = [int(label) for batch in trainer.get_train_dataloader() for label in batch["labels"]]
    rank = trainer.args.process_index
    (out / f"rank{rank}.json").write_text(json.dumps({"labels": seen, "processes": trainer.args.world_size}))
    leave_process_group()  # before exit: gloo torn down at exit can abort a process
