"""`benchmark.streaming`: a Hub-style dataset read as a stream, for data too large to download. Its label
columns are read once; images only in passes over the stream (training, scoring, the generator's data)."""

import json

import numpy as np
import pytest
import torch
import yaml
from datasets import Dataset, Features, Image

from hf_ddb.checks import DatasetValidationError
from hf_ddb.cli import main
from hf_ddb.config import ConfigError, parse_config
from hf_ddb.data import load_streamed_image_dataset
from hf_ddb.inputs import StreamedSplit, StreamedTrainingItems

RUN = {
    "classifier": {"architecture": "mlp"},
    "training": {"epochs": 1, "batch_size": 128},
    "methods": ["erm", "ddb_ii"],
    "selection": "valid_accuracy",
    "diffusion": {"preset": "tiny", "max_train_steps": 3, "checkpointing_steps": 2, "train_batch_size": 8},
    "generation": {"num_images_per_class": 4, "batch_size": 2, "num_inference_steps": 2},
    "amplifier": {"epochs": 1},
}


def _write_parquet(folder, splits, shards=2):
    (folder / "data").mkdir(parents=True)
    for name, split in splits.items():
        for shard in range(shards):
            part = split.shard(shards, shard, contiguous=True)
            part.to_parquet(str(folder / "data" / f"{name}-{shard:05d}-of-{shards:05d}.parquet"))
    return folder


@pytest.fixture(scope="module")
def hub_folder(small_cmnist, tmp_path_factory):
    """small_cmnist laid out as a Hub dataset repo (Parquet shards per split)."""
    return _write_parquet(tmp_path_factory.mktemp("hub"), dict(small_cmnist))


def test_a_streamed_run_equals_the_downloaded_one_but_for_training_order(hub_folder, tmp_path):
    """The generator's data, the amplifier's scores and the report's findings are the same images in the same
    rows; only the methods' training order differs (a shuffle buffer instead of a random permutation)."""
    runs = {}
    for mode in ("stream", "download"):
        benchmark = {"name": "hub", "path": str(hub_folder), "bias_column": "bias_label"}
        if mode == "stream":
            benchmark["streaming"] = True
        config = {**RUN, "benchmark": benchmark, "output_dir": str(tmp_path / mode)}
        (tmp_path / f"{mode}.yaml").write_text(yaml.safe_dump(config))
        assert main(["run", str(tmp_path / f"{mode}.yaml"), "-q"]) == 0
        runs[mode] = tmp_path / mode
    stream, download = runs["stream"], runs["download"]
    unet = "diffusion/pipeline/unet/diffusion_pytorch_model.safetensors"
    assert (stream / unet).read_bytes() == (download / unet).read_bytes()
    with np.load(stream / "amplifier" / "signals.npz") as a, np.load(download / "amplifier" / "signals.npz") as b:
        assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)
    assert (stream / "amplifier_findings.png").read_bytes() == (download / "amplifier_findings.png").read_bytes()
    for method in RUN["methods"]:  # trained on the stream as well as on the download (chance: 0.1)
        streamed, downloaded = (
            json.loads((run / "methods" / method / "metrics.json").read_text()) for run in runs.values()
        )
        assert streamed["valid"]["accuracy"] > 0.3
        assert abs(streamed["valid"]["accuracy"] - downloaded["valid"]["accuracy"]) < 0.1


def test_streamed_training_rows_are_each_read_once_per_epoch_in_a_seeded_order(hub_folder):
    split = load_streamed_image_dataset(hub_folder, bias_column="bias_label")["valid"]
    assert isinstance(split, StreamedSplit) and split["bias_label"] is not None
    items = StreamedTrainingItems(split, seed=0, buffer_size=64)

    def order(epoch, source=items):
        source.set_epoch(epoch)
        return [item["row"] for item in source]

    first = order(0)
    assert sorted(first) == list(range(len(split))) and first != sorted(first)  # all rows, shuffled
    assert order(0) == first and order(1) != first  # seeded by (seed, epoch)
    again = StreamedTrainingItems(split, seed=0, buffer_size=64)
    assert order(0, again) == first
    loader = torch.utils.data.DataLoader(items, batch_size=50, num_workers=2, collate_fn=lambda rows: rows)
    rows = [item["row"] for batch in loader for item in batch]
    assert sorted(rows) == list(range(len(split)))  # two workers: each row once


def test_a_bad_image_in_a_stream_fails_naming_its_split_and_row(tmp_path, small_cmnist):
    """The first images of a split are checked on load; a later bad one when a pass reaches it."""
    rows = small_cmnist["train"].shuffle(seed=0).select(range(300)).cast_column("image", Image(decode=False))
    encoded = rows.to_dict()

    def folder_with_bad_row(row):
        images = list(encoded["image"])
        images[row] = {"bytes": b"not an image", "path": None}
        features = Features({**rows.features, "image": Image()})
        data = Dataset.from_dict({**encoded, "image": images}, features=features)
        return _write_parquet(tmp_path / f"bad{row}", {"train": data, "valid": data, "test": data}, shards=1)

    with pytest.raises(DatasetValidationError, match=r"split 'train', row 5: unreadable image"):
        load_streamed_image_dataset(folder_with_bad_row(5))
    late = folder_with_bad_row(290)
    split = load_streamed_image_dataset(late)["train"]  # past the checked first 256 rows
    with pytest.raises(DatasetValidationError, match=r"split 'train', row 290: unreadable image"):
        list(split.images())
    with pytest.raises(DatasetValidationError, match=r"split 'train', row 290: unreadable image"):
        load_streamed_image_dataset(late, image_check="all")  # every image, up front
    with pytest.raises(TypeError, match="is streamed"):
        split[3]  # no random access


def test_streaming_refuses_group_balanced_batches_before_any_work(hub_folder):
    benchmark = {"name": "hub", "path": str(hub_folder), "streaming": True}
    with pytest.raises(ConfigError, match=r"groupdro_oracle draws group-balanced batches.*group_balanced: false"):
        parse_config({"benchmark": benchmark, "methods": ["groupdro_oracle"]})
    options = {"groupdro_oracle": {"group_balanced": False}}
    parse_config({"benchmark": benchmark, "methods": ["groupdro_oracle"], "method_options": options})
    with pytest.raises(ConfigError, match="'benchmark.streaming' must be bool"):
        parse_config({"benchmark": {**benchmark, "streaming": "yes"}})


@pytest.mark.slow
def test_streamed_split_on_two_processes_gives_each_global_batch_of_one_process(tmp_path, small_cmnist):
    """Under two processes each takes half of every global batch of the one-process order (same seed): no row
    lost or repeated, and the same global batches, so the same training up to summation order."""
    from test_cli import _torchrun

    rows = small_cmnist["valid"].shuffle(seed=0).select(range(96))  # every class
    folder = _write_parquet(tmp_path / "hub", {"train": rows}, shards=4)
    _torchrun("tests/scripts/stream_split_two_processes.py", str(folder), str(tmp_path))
    seen = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [s["processes"] for s in seen] == [2, 2]
    split = load_streamed_image_dataset(folder)["train"]
    order = [item["row"] for item in StreamedTrainingItems(split, seed=0)]
    global_batches = [sorted(order[start : start + 16]) for start in range(0, len(order), 16)]
    assert [sorted(a + b) for a, b in zip(seen[0]["steps"], seen[1]["steps"], strict=True)] == global_batches


@pytest.mark.slow
def test_a_streamed_run_on_two_processes_matches_one(hub_folder, tmp_path):
    """`hf-ddb run` with `streaming: true` under torchrun (two gloo processes, half the per-process batch)
    against one process: the same global batches, so LfF (per-row loss EMAs by stream row, gathered across
    processes) and DDB-II agree up to summation order (measured on 2026-11-30: within 0.1 point)."""
    import shutil

    from test_cli import _torchrun

    benchmark = {"name": "hub", "path": str(hub_folder), "bias_column": "bias_label", "streaming": True}
    config = {**RUN, "benchmark": benchmark, "methods": ["erm", "lff", "ddb_ii"]}
    runs = {}
    for name, batch, amplifier_batch in (("one", 64, 32), ("two", 32, 16)):
        runs[name] = tmp_path / name
        settings = {
            **config,
            "training": {"epochs": 2, "batch_size": batch},
            "amplifier": {"epochs": 1, "batch_size": amplifier_batch},
            "output_dir": str(runs[name]),
        }
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(settings))
    assert main(["run", str(tmp_path / "one.yaml"), "-q"]) == 0
    for stage in ("diffusion", "synthetic"):  # the generator is shared; the rest is trained on two processes
        shutil.copytree(runs["one"] / stage, runs["two"] / stage)
    _torchrun("-m", "hf_ddb.cli", "run", str(tmp_path / "two.yaml"), "-q")
    results = [json.loads((run / "results.json").read_text()) for run in runs.values()]
    for method in config["methods"]:
        a, b = (r["methods"][method]["test"]["unbiased_accuracy"] for r in results)
        assert abs(a - b) <= 0.015, (method, a, b)


def test_streaming_bad_input_fails_naming_the_key(hub_folder, small_cmnist, tmp_path):
    from hf_ddb.validation import load_run_dataset

    small_cmnist.save_to_disk(str(tmp_path / "saved"))
    cases = [
        ({"path": str(tmp_path / "saved")}, r"'benchmark.path' .* written by save_to_disk, which cannot be streamed"),
        ({"path": str(hub_folder), "bias_column": "nope"}, r"'benchmark.bias_column': column 'nope' not found"),
    ]
    for benchmark, message in cases:
        config = parse_config({"benchmark": {"name": "hub", "streaming": True, **benchmark}})
        with pytest.raises(ConfigError, match=message):
            load_run_dataset(config)


def test_validating_a_stream_says_later_rows_are_checked_when_read(hub_folder, caplog):
    import logging

    from hf_ddb.validation import load_run_dataset

    config = parse_config({"benchmark": {"name": "hub", "path": str(hub_folder), "streaming": True}})
    with caplog.at_level(logging.INFO, logger="hf_ddb.validation"):
        load_run_dataset(config)
    assert "later rows are checked when read (--image-check all reads every image now)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hf_ddb.validation"):
        load_run_dataset(config, "all")
    assert "later rows" not in caplog.text
