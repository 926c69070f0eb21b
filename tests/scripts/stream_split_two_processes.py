"""Run under `torchrun --nproc-per-node 2`: the rows (by row index) each process gets at every step of one
epoch of the Trainer's DataLoader over a `StreamedSplit`; writes rank<k>.json (used by a test)."""

import json
import sys
from pathlib import Path

import torch

from hf_ddb.data import load_streamed_image_dataset
from hf_ddb.inputs import model_inputs
from hf_ddb.models import build_classifier
from hf_ddb.training import TrainingConfig
from hf_ddb.utils import leave_process_group

if __name__ == "__main__":
    from transformers import Trainer

    torch.set_num_threads(1)
    folder, out = sys.argv[1], Path(sys.argv[2])
    split = load_streamed_image_dataset(folder)["train"]
    model = build_classifier("mlp", {i: str(i) for i in range(10)}, image_size=16, seed=0)[0]
    items, collate = model_inputs(model, split, with_index=True, train=True, seed=0)
    args = TrainingConfig(batch_size=8).to_training_arguments(out / "trainer", disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=items, data_collator=collate)
    steps = [batch["index"].tolist() for batch in trainer.get_train_dataloader()]
    rank = trainer.args.process_index
    (out / f"rank{rank}.json").write_text(json.dumps({"steps": steps, "processes": trainer.args.world_size}))
    leave_process_group()  # before exit: gloo torn down at exit can abort a process
