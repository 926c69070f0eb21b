"""DDB's recipes fed by a perfect amplifier: the ceiling of any amplifier lever on a quality sweep's data.

    python benchmarks/perfect_amplifier.py --benchmark colored_mnist --ratios 0.05 --train-size 3000 \\
        --arch mlp --epochs 30 --batch-size 128 --diffusion-preset cpu --ba-arch resnet18 --ba-epochs 30 \\
        --threads 1 --workdir runs/perfect --methods ddb_ii ddb_i

Takes the same options as `quality.py` (run it first with the same ``--workdir``, or copy its run folders
there: the stages before the methods are reused). The amplifier's signals are replaced by a perfect bias
predictor's, read from the bias labels: it predicts each training row's bias class (its colour's class,
confidently), so under the ``misclassified`` rule it flags exactly the bias-conflicting rows and DDB-II's
cells are the true (class, bias) groups. An analysis, not a method: it tells how far better amplifiers
(more images, other generators, ensembles) could lift DDB on these data at most. Writes its own per-run
JSONs (``perfect-<method>-<key>.json``) and prints the table of `quality.py`.
"""

from __future__ import annotations

import time
from functools import partial

import numpy as np
import torch
from quality import build_parser, run_config, train_method  # benchmarks/ is on sys.path when this script runs
from quality_table import print_tables, ratio_label
from results_io import cached, write_results

from hf_ddb import Run
from hf_ddb.amplifier import BiasSignals
from hf_ddb.config import parse_config


def perfect_signals(scored: BiasSignals, data) -> BiasSignals:
    """The signals of a perfect bias predictor on the splits ``scored`` covers: it predicts each row's bias class
    (confidently), so the ``misclassified`` rule flags exactly the rows whose bias is not their class's."""
    splits, flags = {}, {}
    for split in scored.splits:
        labels = np.asarray(data[split]["label"])
        bias = np.asarray(data[split]["bias_label"])
        prob_true = np.where(bias == labels, 0.99, 0.001)
        splits[split] = {
            "loss": -np.log(prob_true),
            "prob_true": prob_true,
            "correct": bias == labels,
            "prediction": bias,
        }
        flags[split] = bias != labels
    return BiasSignals(splits, flags)


class PerfectAmplifierRun(Run):
    """A `Run` whose amplifier signals come from the bias labels (an analysis of the ceiling, not a method)."""

    def _read_signals(self) -> BiasSignals:
        return perfect_signals(super()._read_signals(), self.data)


def main() -> None:
    args = build_parser(__doc__).parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()
    raw: dict = {}
    for ratio in args.ratios:
        per_method: dict[str, list[dict]] = {m: [] for m in args.methods}
        for seed in args.seeds:
            run = PerfectAmplifierRun(parse_config(run_config(args, ratio, seed), trust_code=True))
            for method in args.methods:
                path = run.root / "quality" / f"perfect-{method}-{run.method_key(method)}.json"
                per_method[method].append(cached(path, partial(train_method, run, method, ratio)))
        raw[f"{ratio:g}"] = {"methods": per_method, "ba_detection": []}
    print_tables([(ratio_label(args.benchmark, ratio), block) for ratio, block in raw.items()])
    output = args.output or f"benchmarks/results/perfect_amplifier_{args.benchmark}.json"
    write_results(output, "perfect_amplifier.py", args, start, results=raw)


if __name__ == "__main__":
    main()
