"""Writes the README's sample grids of the embedded benchmarks (training split, one row per class).

python benchmarks/sample_grids.py
"""

from pathlib import Path

from hf_ddb.data import load_benchmark, sample_grid

OUT = Path("docs/images")

if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    cmnist = load_benchmark("colored_mnist", conflict_ratio=0.05)
    sample_grid(cmnist["train"], per_class=12, scale=2).save(OUT / "colored_mnist_train_5pct.png")
    sample_grid(cmnist["test"], per_class=12, scale=2).save(OUT / "colored_mnist_test.png")
    background = load_benchmark("background_mnist", aligned_ratio=0.95)
    sample_grid(background["train"], per_class=12, scale=2).save(OUT / "background_mnist_train_95pct.png")
    sample_grid(background["test"], per_class=12, scale=2).save(OUT / "background_mnist_test.png")
    corrupted = load_benchmark("corrupted_mnist", conflict_ratio=0.05)
    sample_grid(corrupted["train"], per_class=12, scale=2).save(OUT / "corrupted_mnist_train_5pct.png")
    sample_grid(corrupted["test"], per_class=12, scale=2).save(OUT / "corrupted_mnist_test.png")
    print(f"wrote {sorted(p.name for p in OUT.glob('*.png'))}")
