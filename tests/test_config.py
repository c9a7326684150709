"""Training configs are checked field by field when built: a bad value fails in one line that
names the field, its model and what is allowed, before any data is read or run folder made.
Pure Python (no TensorFlow): `train --config` and `train --print-config` stay cheap."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import (
    PROFILE_NOTES,
    PROFILES,
    ModelConfig,
    TrainConfig,
    load_config,
    profile,
)
from pipeline.config_rules import MAX_IMAGE_SIZE, ConfigError, check_recipes, min_image_size
from pipeline.names import MODEL_NAMES

ROOT = Path(__file__).resolve().parents[1]


def _load(tmp_path: Path, data: Any, base: str = "smoke") -> TrainConfig:
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(data))
    return load_config(path, base=profile(base))


# The review's configs (review s36, A3-A5, B1) and what the refusal must say.
REVIEW_CASES = [
    ({"models": {"customcnn": {"epochs": 2}}},
     ["models.customcnn is not a model", "custom_cnn, mobilenetv2, efficientnetb0"]),
    ({"models": {"custom_cnn": {"epochs": -1}}}, ["models.custom_cnn.epochs", ">= 1", "-1"]),
    ({"models": {"custom_cnn": {"augment_strength": "heavy"}}},
     ["models.custom_cnn.augment_strength", "one of light, gamma", '"heavy"']),
    ({"models": {"custom_cnn": {"optimizer": "rmsprop"}}},
     ["models.custom_cnn.optimizer", "one of adam, sgd", '"rmsprop"']),
    ({"batch_size": 0}, ["batch_size must be >= 1", "got 0"]),
    ({"models": {"custom_cnn": {"dropout": 2}}}, ["models.custom_cnn.dropout", "[0, 1)", "got 2"]),
    ({"models": {"custom_cnn": {"image_size": "64"}}},
     ["models.custom_cnn.image_size", "a whole number", '"64"']),
    ({"val_fraction": 1.5}, ["val_fraction", "[0, 1)", "1.5"]),
    ({"epochs": 2}, ['epochs is a model setting: put it under "models"',
                     '{"models": {"custom_cnn": {"epochs": 2}}}']),
    ({"models": {"custom_cnn": {"batch_size": 8}}},
     ["models.custom_cnn.batch_size is a top-level setting"]),
    ({"models": {"custom_cnn": {"lr": 0.01}}}, ["models.custom_cnn.lr is not a model setting",
                                                "learning_rate"]),
    ({"models": {"mobilenetv2": {"image_size": 16}}},
     ["models.mobilenetv2.image_size must be >= 33", "2 x 2", "got 16"]),
    ({"models": {"custom_cnn": 5}}, ["models.custom_cnn must be an object"]),
    ({"models": ["custom_cnn"]}, ["models must be an object"]),
]


@pytest.mark.parametrize(("data", "said"), REVIEW_CASES,
                         ids=[json.dumps(d) for d, _ in REVIEW_CASES])
def test_a_bad_config_is_refused_at_load_naming_field_model_and_range(tmp_path, data, said):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, data)
    message = str(info.value)
    assert "\n" not in message
    for part in said:
        assert part in message, message


# Per field: a value of the wrong JSON type. Switches take only true/false, counts only whole
# numbers, numbers never a boolean or a string.
WRONG_TYPE = {"bool": [1, "true", None], "int": [True, "3", 2.5, None],
              "float": [True, "0.1", None], "str": [3, True, None],
              "int | None": [True, "3", 2.5], "str | None": [3, False]}


def _fields(klass: type) -> list[tuple[str, str]]:
    return [(f.name, str(f.type)) for f in dataclasses.fields(klass) if f.name != "models"]


@pytest.mark.parametrize(("name", "kind"), _fields(ModelConfig))
def test_every_model_field_refuses_a_value_of_the_wrong_type(name, kind):
    for bad in WRONG_TYPE[kind]:
        with pytest.raises(ConfigError, match=f"^{name} must be "):
            ModelConfig(**{name: bad})
        with pytest.raises(ConfigError, match=rf"^models\.efficientnetb0\.{name} must be "):
            TrainConfig.from_dict({"models": {"efficientnetb0": {name: bad}}})


@pytest.mark.parametrize(("name", "kind"), _fields(TrainConfig))
def test_every_top_level_field_refuses_a_value_of_the_wrong_type(name, kind):
    for bad in WRONG_TYPE[kind]:
        with pytest.raises(ConfigError, match=f"^{name} must be "):
            TrainConfig.from_dict({name: bad})


# Per ranged field: a value just outside its range, and the edge value that is allowed.
MODEL_RANGES = {
    "image_size": (0, 1), "dropout": (1.0, 0.0), "learning_rate": (0.0, 1e-9),
    "clip_norm": (-0.1, 0.0), "epochs": (0, 1), "patience": (-1, 0), "ema": (1.0, 0.0),
    "ema_batchnorm": (-1, 0), "width": (0, 1), "depth": (1, 2), "ibn_blocks": (-1, 0),
    "finetune_epochs": (-1, 0), "finetune_layers": (0, 1), "finetune_learning_rate": (0.0, 1e-9),
    "aug_views": (0, 1), "label_smoothing": (1.0, 0.0), "input_blur": (-0.5, 0.0),
    "guidance": (-1.0, 0.0), "balance_sizes": (-1, 0), "segment": (-1.0, 0.0),
    "mixstyle": (1.5, 1.0),
}
TRAIN_RANGES = {"seed": (-1, 0), "val_fraction": (1.0, 0.0), "test_fraction": (-0.1, 0.0),
                "batch_size": (0, 1), "max_images": (0, 1), "weights": ("", "none")}


@pytest.mark.parametrize("name", sorted(MODEL_RANGES))
def test_model_fields_outside_their_range_are_refused(name):
    bad, edge = MODEL_RANGES[name]
    with pytest.raises(ConfigError, match=f"^{name} must be .*, got "):
        ModelConfig(**{name: bad})
    assert getattr(ModelConfig(**{name: edge}), name) == edge


@pytest.mark.parametrize("name", sorted(TRAIN_RANGES))
def test_top_level_fields_outside_their_range_are_refused(name):
    bad, edge = TRAIN_RANGES[name]
    with pytest.raises(ConfigError, match=f"^{name} must be .*, got "):
        TrainConfig.from_dict({name: bad})
    assert getattr(TrainConfig.from_dict({name: edge}), name) == edge


def test_numbers_infinite_or_not_a_number_are_refused():
    for bad in (float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="^learning_rate must be a number"):
            ModelConfig(learning_rate=bad)
        with pytest.raises(ConfigError, match="^epochs must be a whole number"):
            ModelConfig(epochs=bad)


def test_a_whole_float_is_taken_as_its_integer(tmp_path):
    """64.0 (some JSON writers' integers) is 64, and the run's manifest records 64."""
    cfg = _load(tmp_path, {"batch_size": 8.0, "models": {"custom_cnn": {"image_size": 64.0}}})
    assert cfg.models["custom_cnn"].image_size == 64
    assert isinstance(cfg.models["custom_cnn"].image_size, int)
    assert isinstance(cfg.batch_size, int)
    assert json.loads(json.dumps(cfg.to_dict()))["models"]["custom_cnn"]["image_size"] == 64


def test_fractions_must_leave_images_to_train_on():
    with pytest.raises(ConfigError, match=r"^val_fraction \+ test_fraction must be < 1"):
        TrainConfig.from_dict({"val_fraction": 0.5, "test_fraction": 0.5})
    # with the dataset's own Testing/ folder, test_fraction is not used
    TrainConfig.from_dict({"val_fraction": 0.5, "test_fraction": 0.5, "official_test": True})


def test_every_registry_model_may_be_configured(tmp_path):
    """Not only the two trained by default: any model `--model` accepts."""
    for name in MODEL_NAMES:
        cfg = _load(tmp_path, {"models": {name: {"epochs": 2}}})
        assert cfg.models[name].epochs == 2


def test_smallest_image_size_per_model():
    """The minimum each model is refused below (test_models measures that it is the smallest
    giving a Grad-CAM layer of 2 x 2): 33 for the stride-32 backbones, 2 ** depth for the CNN."""
    for name in ("mobilenetv2", "efficientnetb0"):
        assert min_image_size(name, ModelConfig()) == 33
    for depth in (2, 3, 4):
        smallest = min_image_size("custom_cnn", ModelConfig(depth=depth))
        TrainConfig.from_dict({"models": {"custom_cnn": {"depth": depth, "image_size": smallest}}})
        with pytest.raises(ConfigError, match=rf"custom_cnn\.image_size must be >= {smallest} "):
            TrainConfig.from_dict({"models": {"custom_cnn": {"depth": depth,
                                                             "image_size": smallest - 1}}})


def test_every_profile_and_shipped_run_config_passes():
    for name in PROFILES:
        profile(name).check()
    manifests = sorted((ROOT / "artifacts" / "runs").glob("*/manifest.json"))
    assert manifests
    for path in manifests:
        TrainConfig.from_dict(json.loads(path.read_text())["config"])


def test_a_config_changed_in_place_is_checked_again():
    cfg = profile("smoke")
    cfg.models["custom_cnn"].epochs = 0
    with pytest.raises(ConfigError, match=r"^models\.custom_cnn\.epochs must be >= 1"):
        cfg.check()


# ---------------------------------------------------------------- the command line

def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT), "COLUMNS": "300"}
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("data", [{"models": {"custom_cnn": {"augment_strength": "heavy"}}},
                                  {"models": {"customcnn": {"epochs": 2}}},
                                  {"models": {"custom_cnn": {"dropout": 2}}}])
def test_train_with_a_bad_config_fails_before_any_run_folder(tmp_path, data):
    dataset = tmp_path / "data"
    for cls in ("glioma", "no_tumor"):
        (dataset / cls).mkdir(parents=True)  # empty: reading it would fail differently
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps(data))
    out = tmp_path / "art"
    proc = _cli("train", "--data", str(dataset), "--model", "custom_cnn", "--profile", "smoke",
                "--config", str(cfg), "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "models.custom" in lines[0] and str(cfg) in lines[0], proc.stderr
    assert not out.exists()  # no artifacts folder, so no runs/.tmp-* to resume into the failure


def test_image_size_option_follows_the_same_rules(tmp_path):
    proc = _cli("train", "--data", str(tmp_path), "--model", "mobilenetv2", "--image-size", "16",
                "--out", str(tmp_path / "art"))
    assert proc.returncode == 2
    assert "--image-size 16: models.mobilenetv2.image_size must be >= 33" in proc.stderr
    assert not (tmp_path / "art").exists()


def test_print_config_shows_the_merged_config_without_tensorflow(tmp_path):
    cfg = tmp_path / "mine.json"
    cfg.write_text(json.dumps({"seed": 7, "models": {"custom_cnn": {"epochs": 4}}}))
    args = ["train", "--print-config", "--profile", "smoke", "--config", str(cfg),
            "--image-size", "96", "--model", "custom_cnn"]
    proc = _cli(*args)
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["seed"] == 7 and shown["profile"] == "smoke"
    assert shown["models"]["custom_cnn"]["epochs"] == 4
    assert shown["models"]["custom_cnn"]["image_size"] == 96  # the option, over the profile's 64
    assert TrainConfig.from_dict(shown).to_dict() == shown  # a usable --config file as it is
    # no TensorFlow: the same command in a fresh interpreter, its modules listed afterwards
    code = ("import sys\nfrom pipeline.cli import app\ntry:\n    app(" + repr(args) + ")\n"
            "except SystemExit:\n    pass\nsys.stderr.write(str('tensorflow' in sys.modules))")
    child = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                           text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert child.stderr.endswith("False"), child.stderr


def test_the_readme_example_config_is_valid():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Training configuration"):]
    example = section[section.index("```json") + len("```json"):section.index("```\n", 8)]
    cfg = TrainConfig.from_dict(json.loads(example))
    assert cfg.models["custom_cnn"].image_size == 96


def test_image_size_has_an_upper_bound_said_in_one_line(tmp_path):
    # no upper bound before: a 2048 px config passed every check and ran out of memory later
    big = MAX_IMAGE_SIZE + 1
    with pytest.raises(ConfigError, match=rf"^models\.custom_cnn\.image_size must be at most "
                                          rf"{MAX_IMAGE_SIZE} \(training memory.*got {big}$"):
        TrainConfig.from_dict({"models": {"custom_cnn": {"image_size": big}}})
    assert TrainConfig.from_dict(
        {"models": {"mobilenetv2": {"image_size": MAX_IMAGE_SIZE}}}).models[
            "mobilenetv2"].image_size == MAX_IMAGE_SIZE
    proc = _cli("train", "--print-config", "--model", "custom_cnn", "--image-size", str(big))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"error: --image-size {big}: models.custom_cnn.image_size must be at most "
        f"{MAX_IMAGE_SIZE} (training memory grows with the pixels: the lightest recipes reach "
        f"the 4 GB budget there), got {big}"]


# Recipes every field's own check passes but training refuses (config_rules.check_recipe): the
# full profile guides MobileNetV2, which needs cached features; tumour removal is for
# from-scratch models.
REFUSED_RECIPES = [
    ({"cache_features": False}, "models.mobilenetv2.guidance needs cached features"),
    ({"models": {"mobilenetv2": {"erase": 0.5}}},
     "models.mobilenetv2.erase must be 0: erase is for from-scratch models"),
]


@pytest.mark.parametrize(("data", "message"), REFUSED_RECIPES)
def test_print_config_refuses_what_training_would(tmp_path, data, message):
    # --print-config showed these as valid configs, and training refused them after start-up
    cfg = tmp_path / "recipe.json"
    cfg.write_text(json.dumps(data))
    proc = _cli("train", "--print-config", "--config", str(cfg))
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    # training refuses it as the config is built: before the data folder is read
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _cli("train", "--config", str(cfg), "--data", str(empty), "--out",
                str(tmp_path / "art"))
    assert proc.returncode == 2 and message in proc.stderr and "empty" not in proc.stderr
    assert not (tmp_path / "art").exists()
    # a model the recipe does not concern trains with it: the rule is per model trained
    proc = _cli("train", "--print-config", "--config", str(cfg), "--model", "custom_cnn")
    assert proc.returncode == 0, proc.stderr


def test_check_recipes_checks_only_the_models_trained():
    cfg = profile("full")
    cfg.cache_features = False  # the full profile guides MobileNetV2's fine-tuning
    check_recipes(cfg, ["custom_cnn"])
    with pytest.raises(ConfigError, match=r"^models\.mobilenetv2\.guidance needs cached"):
        check_recipes(cfg, ["custom_cnn", "mobilenetv2"])
    check_recipes(cfg, ["efficientnetb0"])  # not configured: ModelConfig's defaults pass


def test_every_profile_says_what_it_is_for():
    assert list(PROFILE_NOTES) == list(PROFILES)


def test_a_config_file_that_cannot_be_read_is_named_in_one_line(tmp_path: Path) -> None:
    """A non-UTF-8 file said only "'utf-8' codec can't decode byte 0xff ..."; a folder exited 1
    with "Is a directory"; {"models": []} and {"models": null} were taken for no models (a
    review). Each is refused naming the file, as ValueError (the CLI's exit 2)."""
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"title": "r\xe9sum\xe9"}')
    with pytest.raises(ValueError, match=r"latin.json is not UTF-8 text \(byte 12\)"):
        load_config(latin)
    with pytest.raises(ValueError, match=r"cannot read config file .*: Is a directory"):
        load_config(tmp_path)
    for models in ("[]", "null"):
        path = tmp_path / "m.json"
        path.write_text(f'{{"models": {models}}}')
        with pytest.raises(ValueError, match="must be an object"):
            load_config(path)
