"""Does the diffusion model carry (and amplify) the bias, and what does it cost on this machine?

    python benchmarks/diffusion_bias.py                     # about 25 min on 2 CPU cores
    python benchmarks/diffusion_bias.py --scan --only-compare   # UNet shapes and the training-step comparison
    python benchmarks/diffusion_bias.py --steps 300 --per-class 10 --skip-ddpm   # quick look

On ``colored_mnist`` (1 % conflicting, full MNIST, 16 px) with the ``cpu`` preset it measures:
1. UNet shapes: parameters, training step time and DDIM-50 + CFG sampling time (``--scan``);
2. our training step against a plain diffusers training loop on the same UNet and batch (img/s, median of
   interleaved rounds, ratio; both timings include getting the batch);
3. training throughput of the full run (resumable: a re-run reuses ``runs/bench_diffusion``);
4. per sampler (DDPM-1000, DDIM-50, DPM-Solver++-20) and guidance w: sampling img/s and the fraction of
   generated images whose digit has its class's bias colour, read by `color_oracle.ColorOracle` (trained on
   real digits with colours independent of the digit; its accuracy on the real test images is printed).
   The real training set is 99 % aligned; the goal is >= 95 % at w = 1.
Prints markdown tables and writes ``benchmarks/results/diffusion_bias.json`` and a sample grid PNG.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from color_oracle import ColorOracle
from diffusers import DDPMScheduler
from diffusers.training_utils import EMAModel
from diffusers.utils import make_image_grid
from PIL import Image as PILImage
from results_io import machine

from hf_ddb.data import load_benchmark
from hf_ddb.diffusion import DiffusionConfig, build_unet, train_diffusion
from hf_ddb.generation import set_scheduler
from hf_ddb.pipeline_generation import BiasAlignedGenerationPipeline

SHAPES = {
    "32-64-128, no attn": {"block_out_channels": [32, 64, 128]},
    "32-64-128, attn 4x4 mid": {"block_out_channels": [32, 64, 128], "add_attention": True},
    "32-64-64, attn 4x4 mid (cpu preset)": {"add_attention": True},
    "64-128, 2 levels": {
        "block_out_channels": [64, 128],
        "down_block_types": ["DownBlock2D"] * 2,
        "up_block_types": ["UpBlock2D"] * 2,
    },
    "32-64-128 x2 layers": {"block_out_channels": [32, 64, 128], "layers_per_block": 2},
}


def timed_plain_diffusers_loop(
    images: torch.Tensor, labels: torch.Tensor, config: DiffusionConfig, steps: int
) -> float:
    """img/s of a plain diffusers training loop (train_unconditional.py style) on the same UNet and batch."""
    torch.manual_seed(0)
    unet = build_unet(config, 10)
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=config.learning_rate)
    ema = EMAModel(unet.parameters(), decay=0.9999, use_ema_warmup=True, power=0.75)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(images, labels), batch_size=config.train_batch_size, shuffle=True, drop_last=True
    )
    done = 0
    start = time.perf_counter()  # data loading included, as in hf-ddb's train_seconds
    while done < steps:
        for clean_u8, y in loader:
            clean = clean_u8.float() / 127.5 - 1
            noise = torch.randn_like(clean)
            t = torch.randint(0, 1000, (len(clean),))
            y = torch.where(torch.rand(len(y)) < 0.1, torch.full_like(y, 10), y)
            loss = F.mse_loss(unet(scheduler.add_noise(clean, noise, t), t, class_labels=y).sample, noise)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
            ema.step(unet.parameters())
            loss.item()  # as hf-ddb does for its progress bar
            done += 1
            if done == steps:
                break
    return steps * config.train_batch_size / (time.perf_counter() - start)


def ours_img_per_s(train, config: DiffusionConfig, steps: int, workdir: Path) -> float:
    config = DiffusionConfig(**{**config.to_dict(), "max_train_steps": steps, "checkpointing_steps": 10**9})
    out = train_diffusion(train, config, workdir, resume=False)
    return steps * config.train_batch_size / out.train_seconds


def sample(
    pipe: BiasAlignedGenerationPipeline, scheduler: str, steps: int, w: float, per_class: int, seed: int, oracle
):
    set_scheduler(pipe, scheduler)
    start = time.perf_counter()
    out = pipe(
        num_images_per_class=per_class,
        guidance_scale=w,
        num_inference_steps=steps,
        output_type="np",
        generator=torch.Generator().manual_seed(seed),
    )
    seconds = time.perf_counter() - start
    colours = oracle(out.images) if oracle is not None else None
    return out.images, np.asarray(out.class_labels), colours, seconds


def save_grid(images: np.ndarray, labels: np.ndarray, path: Path, per_row: int = 10) -> None:
    """One row per class, its first ``per_row`` images (each class has at least that many)."""
    classes = np.unique(labels)
    pictures = [
        PILImage.fromarray((image * 255).round().astype(np.uint8).squeeze())
        for label in classes
        for image in images[labels == label][:per_row]
    ]
    grid = make_image_grid(pictures, rows=len(classes), cols=per_row)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.resize((grid.width * 3, grid.height * 3), PILImage.Resampling.NEAREST).save(path)


def write_report(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5000, help="diffusion training steps (the cpu preset's)")
    parser.add_argument("--per-class", type=int, default=20, help="images per class per sampler")
    parser.add_argument("--guidance", type=float, nargs="+", default=[0.0, 1.0, 3.0], help="w values (DDIM-50)")
    parser.add_argument("--ddpm-per-class", type=int, default=5, help="images per class for DDPM-1000 (slow)")
    parser.add_argument("--skip-ddpm", action="store_true", help="skip DDPM-1000 (the slow sampler)")
    parser.add_argument("--scan", action="store_true", help="time alternative UNet shapes first")
    parser.add_argument("--compare-steps", type=int, default=50, help="steps of the training-step comparison")
    parser.add_argument("--compare-rounds", type=int, default=3, help="interleaved rounds of the comparison")
    parser.add_argument("--only-compare", action="store_true", help="run only the training-step comparison")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", default="runs/bench_diffusion")
    parser.add_argument("--output", default="benchmarks/results/diffusion_bias.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    workdir = Path(args.workdir)
    report: dict = {
        "command": "python benchmarks/diffusion_bias.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if not isinstance(v, (bool, list))),
        "machine": machine(args.threads),
    }
    data = load_benchmark("colored_mnist", conflict_ratio=0.01, image_size=16)
    train = data["train"]
    oracle = ColorOracle(image_size=16)
    test = data["test"]
    report["oracle_accuracy_on_real_test"] = float(
        (oracle(np.stack(test.with_format("numpy")["image"])) == np.asarray(test["bias_label"])).mean()
    )
    print(f"colour oracle accuracy on the real test images: {report['oracle_accuracy_on_real_test']:.4f}", flush=True)
    labels_all = np.asarray(train["label"])
    report["real_train_aligned_fraction"] = float((np.asarray(train["bias_label"]) == labels_all).mean())
    base = DiffusionConfig.from_preset("cpu", max_train_steps=args.steps)

    if args.scan:
        subset = train.select(range(4096))
        rows = []
        for name, change in SHAPES.items():
            config = DiffusionConfig(**{**base.to_dict(), "add_attention": False, **change})
            params = sum(p.numel() for p in build_unet(config, 10).parameters())
            img_s = ours_img_per_s(subset, config, 20, workdir / "scan")
            torch.manual_seed(0)
            pipe = BiasAlignedGenerationPipeline(unet=build_unet(config, 10).eval(), scheduler=DDPMScheduler())
            pipe.set_progress_bar_config(disable=True)
            *_, seconds = sample(pipe, "ddim", 50, 1.0, 10, 0, None)
            rows.append(
                {"shape": name, "params_M": params / 1e6, "train_img_s": img_s, "ddim50_cfg_img_s": 100 / seconds}
            )
            print(rows[-1], flush=True)
        report["shape_scan"] = rows

    images = torch.from_numpy(np.stack(train.select(range(4096)).with_format("numpy")["image"])).permute(0, 3, 1, 2)
    labels = torch.as_tensor(labels_all[:4096])
    plain_runs, ours_runs = [], []
    for _ in range(args.compare_rounds):  # interleaved, so drifts in machine speed hit both alike
        plain_runs.append(timed_plain_diffusers_loop(images, labels, base, args.compare_steps))
        ours_runs.append(ours_img_per_s(train.select(range(4096)), base, args.compare_steps, workdir / "compare"))
    plain, ours = float(np.median(plain_runs)), float(np.median(ours_runs))
    report["train_step_comparison"] = {
        "plain_diffusers_img_s": plain,
        "hf_ddb_img_s": ours,
        "ratio": ours / plain,
        "rounds": {"plain": plain_runs, "hf_ddb": ours_runs},
    }
    print(report["train_step_comparison"], flush=True)
    if args.only_compare:
        write_report(report, Path(args.output))
        return

    out = train_diffusion(train, base, workdir / "cpu")
    if out.resumed_from is None or out.resumed_from < args.steps:
        steps_run = out.global_step - (out.resumed_from or 0)
        report["training"] = {
            "steps": out.global_step,
            "img_s": steps_run * base.train_batch_size / max(out.train_seconds, 1e-9),
            "seconds": out.train_seconds,
            "final_loss_mean_last_50": float(np.mean(out.losses[-50:])) if out.losses else None,
        }
    pipe = out.pipeline
    pipe.set_progress_bar_config(disable=True)

    runs = [("ddim", 50, w, args.per_class) for w in args.guidance] + [("dpm++", 20, 1.0, args.per_class)]
    if not args.skip_ddpm:
        runs.append(("ddpm", 1000, 1.0, args.ddpm_per_class))
    rows = []
    for scheduler, steps, w, per_class in runs:
        imgs, lab, colours, seconds = sample(pipe, scheduler, steps, w, per_class, 1, oracle)
        rows.append(
            {
                "sampler": f"{scheduler}-{steps}",
                "w": w,
                "images": len(lab),
                "img_s": len(lab) / seconds,
                "bias_colour_fraction": float((colours == lab).mean()),
            }
        )
        print(rows[-1], flush=True)
        if scheduler == "ddim" and w == 1.0:
            save_grid(imgs, lab, Path("docs/images/generated_colored_mnist_16px.png"))
    report["sampling"] = rows

    print("\n| sampler | w | images | img/s (2 cores) | bias-colour fraction |\n|---|---|---|---|---|")
    for r in rows:
        colour = 100 * r["bias_colour_fraction"]
        print(f"| {r['sampler']} | {r['w']:g} | {r['images']} | {r['img_s']:.1f} | {colour:.1f}% |")
    write_report(report, Path(args.output))


if __name__ == "__main__":
    main()
