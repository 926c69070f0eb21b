"""The quality benchmark: DDB Recipes I and II against ERM, JTT, LfF, DFA, BiasEnsemble and the GroupDRO oracle.

    python benchmarks/quality.py                                    # colored_mnist, 4 ratios, 3 seeds
    python benchmarks/quality.py --ratios 0.01 --seeds 0            # one cell
    python benchmarks/quality.py --benchmark background_mnist --ratios 0.99 --arch test_resnet --epochs 2

Per bias ratio: a class-conditional diffusion model (``cpu`` preset, 16 px) on the biased training set,
a synthetic set, then per seed a bias amplifier (BA) trained only on the synthetic images, its detection
quality on the real training set (evaluation only), and every method on the same data and code path
(`hf_ddb.recipes.train_with_recipe`), selected on ``valid`` by average accuracy, evaluated on ``test``;
every epoch's test metrics are recorded too, so the table can report the last epoch or another rule's pick.
Every stage is cached under ``--workdir`` (diffusion and generation resume; finished method runs are
reused), so the script can be stopped and re-run. Prints a markdown table (mean +- std over seeds) and
writes the raw numbers to ``--output``.
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
from results_io import cached, write_results
from transformers import TrainerCallback

from hf_ddb import TrainingConfig, build_classifier, evaluate_groups, load_benchmark
from hf_ddb.amplifier import (
    AmplifierConfig,
    bias_signals,
    detection_report,
    generator_fidelity,
    pseudo_bias_labels,
    train_bias_amplifier,
)
from hf_ddb.diffusion import DiffusionConfig, train_diffusion
from hf_ddb.generation import GenerationConfig, generate_synthetic_dataset
from hf_ddb.metrics import detection_metrics, group_metrics, is_conflicting
from hf_ddb.pipeline_bias_aligned import BiasAlignedGenerationPipeline
from hf_ddb.recipes import RECIPES, DDBEndToEnd, DDBTwoStep, GroupDROOracle, train_with_recipe
from hf_ddb.training import model_inputs, predict_logits


class EpochProbe(TrainerCallback):
    """Analysis only: after every epoch, the validation scores of each selection rule and the test metrics.

    Lets the table compare selection rules on the same runs; no rule ever reads the test numbers. Without
    BA pseudo-groups (``valid_flags`` None: no DDB method in the run) only validation accuracy is recorded.
    A recipe that tunes (the oracle) trains several candidates: one record per training. At the end of a
    training with a co-trained bias model (LfF), that model's detection of the real bias-conflicting
    training samples is recorded too (bias labels: evaluation only).
    """

    def __init__(self, valid, valid_flags, test, train) -> None:
        self.valid, self.test, self.train = valid, test, train
        # pseudo groups as class ids (group_metrics refuses booleans)
        self.valid_flags = None if valid_flags is None else np.asarray(valid_flags, dtype=np.int64)
        self.valid_labels, self.runs, self.bias_model_detection = np.asarray(valid["label"]), [], []
        self.tensors: dict = {}

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
        if self.valid_flags is not None:
            pseudo = group_metrics(valid_logits, self.valid_labels, self.valid_flags)
            scores["valid_worst_pseudo_group"] = pseudo["worst_group_accuracy"]
            scores["valid_mean_pseudo_group"] = pseudo["unbiased_accuracy"]
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
            scores = [row[k] for row in info["search"] for k in row if k.startswith("oracle_")]
            run = int(np.argmax(scores))
        epochs = self.runs[run]
        chosen = {"last": len(epochs) - 1}
        for rule in (r for r in SELECTION_RULES if r != "last" and r in epochs[0]):
            chosen[rule] = int(np.argmax([e[rule] for e in epochs]))
        return {rule: {"epoch": i + 1, **epochs[i]["test"]} for rule, i in chosen.items()}


class RecordInference:
    """Wraps a recipe and keeps its `BiasInference`, so the benchmark can score the recipe's own detection."""

    def __init__(self, recipe) -> None:
        self.recipe, self.inference = recipe, None
        self.name, self.uses_bias_labels = recipe.name, recipe.uses_bias_labels

    def infer(self, *args, **kwargs):
        self.inference = self.recipe.infer(*args, **kwargs)
        return self.inference


# Method variants measured beside the library's recipes (name -> recipe factory given the BA and the args).
VARIANTS = {
    "ddb_i_balanced": lambda ba, args: DDBTwoStep(amplifier=ba, rule=args.rule, group_balanced=True),
    # the oracle as it was before group-balanced batches and tuning (uniform batches, step 0.01, C = 0)
    "groupdro_oracle_uniform": lambda ba, args: GroupDROOracle(
        group_balanced=False, step_sizes=(0.01,), adjustments=(0.0,)
    ),
    # DDB-II's weightings (issue 15): a data-driven floor, per-class and per-pseudo-group normalised weights
    **{
        f"ddb_ii_{weighting}": (lambda w: lambda ba, args: DDBEndToEnd(amplifier=ba, rule=args.rule, weighting=w))(
            weighting
        )
        for weighting in ("floor", "class", "group", "group_floor")
    },
    # the oracle at the setting its tuning chose at 1% in all three seeds (one training instead of four)
    "groupdro_oracle_tuned": lambda ba, args: GroupDROOracle(step_sizes=(0.01,), adjustments=(4.0,)),
}


RATIO_OPTION = {
    "colored_mnist": "conflict_ratio",
    "background_mnist": "aligned_ratio",
    "corrupted_mnist": "conflict_ratio",
}


def bias_amplifier(synthetic, names, arch: str, loss: str, epochs: float, seed: int, workdir: Path, fidelity=False):
    """The run's step B (`hf_ddb.amplifier.train_bias_amplifier`) at the benchmark's settings (also used by
    amplifier_ablation.py); with ``fidelity`` also the generator check's held-out synthetic accuracy."""
    settings = AmplifierConfig(architecture=arch, loss=loss, epochs=epochs, seed=seed)
    class_names = [names[i] for i in range(len(names))]
    model, _, accuracy = train_bias_amplifier(
        synthetic, class_names, settings, workdir / "ba", fidelity=fidelity, progress_bar=False
    )
    return (model, accuracy) if fidelity else model


def train_method(args, method: str, seed: int, data, names, amplifier, valid_flags, cell: Path, ratio: float) -> dict:
    """One method at one seed: trained through `train_with_recipe` with the per-epoch probe, then its test
    metrics, the metrics at each selection rule's epoch and, for LfF and BiasEnsemble, their own detection."""
    if method in VARIANTS:
        recipe = VARIANTS[method](amplifier, args)
    elif method == "ddb_i":
        recipe = DDBTwoStep(amplifier=amplifier, rule=args.rule)
    elif method == "ddb_ii":
        # LfF's weights, as published (and as every JSON before issue 15 ran it); the library's default
        # weighting is measured as the variant ddb_ii_group_floor
        recipe = DDBEndToEnd(amplifier=amplifier, rule=args.rule, weighting="lff", weight_floor=args.weight_floor)
    else:
        recipe = RECIPES[method]()
    training = TrainingConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=1e-3, seed=seed)

    def make():
        return build_classifier(args.arch, names, image_size=28, seed=seed)[0]

    recipe = RecordInference(recipe)
    t0 = time.time()
    probes = [EpochProbe(data["valid"], valid_flags, data["test"], data["train"])]
    model, info = train_with_recipe(recipe, data, make, training, str(cell / f"seed{seed}" / method), callbacks=probes)
    metrics = evaluate_groups(model, data["test"])
    result = {"seed": seed, "seconds": round(time.time() - t0, 1), "info": info, "test": metrics}
    result["by_selection"] = probes[0].by_selection(info)
    if probes[0].bias_model_detection:  # LfF: its co-trained bias model at the end of training
        result["bias_model_detection"] = probes[0].bias_model_detection[-1]
    if recipe.inference.conflict_scores is not None:  # BiasEnsemble: its committee
        scores, flags = recipe.inference.conflict_scores, ~recipe.inference.objective.bias_train_mask
        truth = is_conflicting(data["train"]["label"], data["train"]["bias_label"])
        result["bias_model_detection"] = detection_metrics(scores, truth, flagged=flags)
    print(
        f"ratio {ratio:g} seed {seed} {method}: unbiased {100 * metrics['unbiased_accuracy']:.1f} "
        f"worst {100 * metrics['worst_group_accuracy']:.1f} ({result['seconds']} s)",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", default="colored_mnist", choices=sorted(RATIO_OPTION))
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.005, 0.01, 0.02, 0.05])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(RECIPES),
        help=f"recipes, or the variants {sorted(VARIANTS)}",
    )
    parser.add_argument("--arch", default="mlp", help="target classifier (LfF's MLP on colored_mnist)")
    parser.add_argument("--epochs", type=float, default=10.0)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--diffusion-steps", type=int, default=5000, help="the cpu preset's own length")
    parser.add_argument("--per-class", type=int, default=300, help="synthetic images per class")
    parser.add_argument("--sampler", default="dpm++", choices=["ddpm", "ddim", "dpm++"])
    parser.add_argument("--sampler-steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=1.0, help="the paper's w")
    parser.add_argument("--ba-arch", default="mlp")
    parser.add_argument("--ba-loss", default="gce", choices=["ce", "gce"])
    parser.add_argument("--ba-epochs", type=float, default=10.0)
    parser.add_argument("--rule", default="misclassified")
    parser.add_argument("--weight-floor", type=float, default=0.0, help="DDB-II's lower bound on W (0: as LfF)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", default="runs/quality")
    parser.add_argument("--output", default=None, help="default benchmarks/results/quality_<benchmark>.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    output = Path(args.output or f"benchmarks/results/quality_{args.benchmark}.json")
    start = time.time()
    raw: dict = {}
    for ratio in args.ratios:
        options = {RATIO_OPTION[args.benchmark]: ratio}
        cell = Path(args.workdir) / f"{args.benchmark}-{ratio:g}"
        data = load_benchmark(args.benchmark, **options)
        small = load_benchmark(args.benchmark, **options, image_size=16)
        names = dict(enumerate(data["train"].features["label"].names))
        needs_ba = any(m.startswith("ddb") for m in args.methods)
        if needs_ba:
            config = DiffusionConfig.from_preset("cpu", max_train_steps=args.diffusion_steps)
            saved = cell / "diffusion" / "diffusion_config.json"
            finished = (cell / "diffusion" / "pipeline").is_dir() and saved.is_file()
            if finished and json.loads(saved.read_text())["max_train_steps"] == args.diffusion_steps:
                pipe = BiasAlignedGenerationPipeline.from_pretrained(cell / "diffusion" / "pipeline")  # trained already
            else:
                pipe = train_diffusion(small["train"], config, cell / "diffusion").pipeline
            generation = GenerationConfig(
                num_images_per_class=args.per_class,
                guidance_scale=args.guidance,
                scheduler=args.sampler,
                num_inference_steps=args.sampler_steps,
            )
            synthetic = generate_synthetic_dataset(pipe, cell / "synthetic", generation)
        per_method: dict[str, list[dict]] = {m: [] for m in args.methods}
        detection: list[dict] = []
        for seed in args.seeds:
            amplifier = valid_flags = None
            if needs_ba:
                amplifier, synthetic_accuracy = bias_amplifier(
                    synthetic, names, args.ba_arch, args.ba_loss, args.ba_epochs, seed, cell / f"seed{seed}", True
                )
                signals = bias_signals(amplifier, data["train"])
                report = detection_report(signals, pseudo_bias_labels(signals, args.rule), data["train"])
                report["fidelity"] = generator_fidelity(synthetic_accuracy, signals["correct"], len(names))
                detection.append(report)
                valid_flags = pseudo_bias_labels(bias_signals(amplifier, data["valid"]), args.rule)
                print(f"ratio {ratio:g} seed {seed} BA detection: {json.dumps(report)}", flush=True)
            for method in args.methods:
                run = partial(train_method, args, method, seed, data, names, amplifier, valid_flags, cell, ratio)
                # one JSON per finished (seed, method): a re-run reuses it
                per_method[method].append(cached(cell / f"seed{seed}" / f"{method}.json", run))
        raw[f"{ratio:g}"] = {"methods": per_method, "ba_detection": detection}

    print()
    print_tables([(ratio_label(args.benchmark, ratio), block) for ratio, block in raw.items()])
    write_results(output, "quality.py", args, start, results=raw)


if __name__ == "__main__":
    main()
