"""How the generator's sampling settings change the bias amplifier and DDB, judged by label-free signals.

    python benchmarks/generator_sampling.py                         # colored_mnist 1%, the default run's config
    python benchmarks/generator_sampling.py --config pipelines/background_mnist.yaml --samplers dpm++:20

One diffusion model (the config's own, trained once), then for every sampling variant (images per class x
guidance w, in the paper's convention x sampler:steps) the rest of the run as ``hf-ddb run`` does it:
generation, the amplifier (its generator check: held-out synthetic accuracy, real-train accuracy, the share of
real training rows flagged), DDB-I and DDB-II. The label-free columns are what a user can judge a setting by;
the amplifier's detection AUROC and the test accuracies use bias labels and are reported for evaluation
only. Each variant's seconds are the generation and amplifier stages' own (``Run.stage_record``). All
variants run in one run folder, one after the other (the diffusion stage is a cache hit after the first; a
changed setting moves the previous stage aside), and each finished variant is cached as a JSON under
``--workdir``, so the script can be stopped and re-run. Prints a table and writes ``--output``.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import time
from functools import partial
from pathlib import Path

import torch
import yaml
from results_io import cached, write_results

from hf_ddb import Run
from hf_ddb.config import parse_config


def variant_name(count: int, guidance: float, sampler: str) -> str:
    return f"{count}-w{guidance:g}-{sampler.replace(':', '')}"


def variant_config(base: dict, args: argparse.Namespace, count: int, guidance: float, sampler: str) -> dict:
    """The base config with one sampling setting, the methods DDB-I and DDB-II, in ``--workdir``."""
    config = copy.deepcopy(base)
    name, steps = sampler.split(":")
    config["generation"] = {
        **config.get("generation", {}),
        "num_images_per_class": count,
        "guidance_scale": guidance,
        "scheduler": name,
        "num_inference_steps": int(steps),
    }
    config["methods"] = list(args.methods)
    config["method_options"] = {m: o for m, o in config.get("method_options", {}).items() if m in args.methods}
    config["training"] = {**config["training"], "seed": args.seed}
    config["output_dir"] = str(Path(args.workdir) / "run")
    return config


def measure(config: dict, reuse_diffusion: str | None = None) -> dict:
    """One variant: generation, amplifier and the methods through `hf_ddb.Run` (the diffusion stage taken from
    the run folder ``reuse_diffusion`` when it holds one trained with the same settings, `Run.reuse`)."""
    run = Run(parse_config(config, trust_code=True))
    if reuse_diffusion:
        run.reuse("diffusion", Run(parse_config({**config, "output_dir": reuse_diffusion}, trust_code=True)))
    run.amplifier()
    amplifier = run.stage_record("amplifier")
    row = {
        "generation_seconds": run.stage_record("generation")["seconds"],
        "amplifier_seconds": amplifier["seconds"],
        "fidelity": amplifier["fidelity"],
        "detection": amplifier["detection"],
        "methods": {},
    }
    for method, metrics in run.debias().items():
        row["methods"][method] = {"test": metrics["test"], "info": metrics["info"]}
    return row


def print_table(rows: dict[str, dict], methods: list[str]) -> None:
    head = ["variant", "gen s", "BA s", "held-out synth %", "real train %", "flagged %", "warnings", "AUROC"]
    head += [f"{m} unbiased %" for m in methods]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, row in rows.items():
        fid, det = row["fidelity"], row["detection"] or {}
        cells = [
            name,
            f"{row['generation_seconds']:.0f}",
            f"{row['amplifier_seconds']:.0f}",
            f"{100 * fid['synthetic_heldout_accuracy']:.1f}",
            f"{100 * fid['real_train_accuracy']:.1f}",
            f"{100 * fid['flagged_share']:.1f}",
            str(len(fid["warnings"])),
            f"{det['auroc']:.3f}" if "auroc" in det else "-",
        ]
        cells += [f"{100 * row['methods'][m]['test']['unbiased_accuracy']:.1f}" for m in methods]
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="pipelines/colored_mnist.yaml", help="the run config to vary")
    parser.add_argument("--counts", type=int, nargs="+", default=[300, 1000], help="images per class")
    parser.add_argument("--guidance", type=float, nargs="+", default=[0.0, 0.5, 1.0], help="the paper's w")
    parser.add_argument(
        "--samplers", nargs="+", default=["dpm++:20", "ddpm:20"], help="NAME:STEPS (ddpm is stochastic)"
    )
    parser.add_argument("--methods", nargs="+", default=["ddb_i", "ddb_ii"])
    parser.add_argument("--seed", type=int, default=0, help="the classifiers' and the amplifier's seed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reuse-diffusion", default=None, help="a run folder whose diffusion stage to take")
    parser.add_argument("--workdir", default="runs/generator_sampling")
    parser.add_argument("--output", default="benchmarks/results/generator_sampling_colored_mnist_0.01.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()
    base = yaml.safe_load(Path(args.config).read_text())
    rows: dict[str, dict] = {}
    for count, guidance, sampler in itertools.product(args.counts, args.guidance, args.samplers):
        name = variant_name(count, guidance, sampler)
        config = variant_config(base, args, count, guidance, sampler)
        key = Run(parse_config(config, trust_code=True)).key(
            "amplifier"
        )  # the variant's settings, the diffusion model's included
        rows[name] = cached(
            Path(args.workdir) / "rows" / f"{name}-{key}.json", partial(measure, config, args.reuse_diffusion)
        )
        print(f"{name}: {rows[name]['fidelity']}", flush=True)
    print()
    print_table(rows, args.methods)
    write_results(args.output, "generator_sampling.py", args, start, config=base, rows=rows)


if __name__ == "__main__":
    main()
