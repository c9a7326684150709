"""Hyper-parameter search: search space, KerasTuner wiring, validation-only selection, CLI."""

from __future__ import annotations

import json

import keras_tuner as kt
import pytest

from pipeline import tune as tn
from pipeline.config import ModelConfig, load_config, profile
from pipeline.config_rules import MAX_SEED, ConfigError


def test_first_trial_is_the_starting_config() -> None:
    base = ModelConfig(learning_rate=2e-3, dropout=0.3, width=16, depth=4)
    values = tn.define(kt.HyperParameters(), tn.CUSTOM_SPACE, base)
    assert values == {"learning_rate": 2e-3, "dropout": 0.3, "width": 16, "depth": 4}


def test_defaults_outside_the_space_are_moved_inside() -> None:
    base = ModelConfig(learning_rate=1.0, dropout=0.33, finetune_layers=45,
                       finetune_learning_rate=1e-9)
    values = tn.define(kt.HyperParameters(), tn.TRANSFER_SPACE, base)
    assert values["learning_rate"] == 3e-3 and values["finetune_learning_rate"] == 1e-5
    assert values["dropout"] == pytest.approx(0.3) and values["finetune_layers"] == 40


def test_space_names_are_model_config_fields() -> None:
    fields = set(ModelConfig().to_dict())
    for space in (tn.CUSTOM_SPACE, tn.TRANSFER_SPACE):
        assert {p.name for p in space} <= fields
    assert tn.search_space("mobilenetv2") is tn.TRANSFER_SPACE
    with pytest.raises(tn.TuneError, match="unknown model 'resnet'"):
        tn.search_space("resnet")


def test_bad_arguments(tmp_path) -> None:
    with pytest.raises(tn.TuneError, match="at least 1 trial"):
        tn.tune(tmp_path, "custom_cnn", 0, tmp_path)
    with pytest.raises(tn.TuneError, match="unknown algorithm 'grid'"):
        tn.tune(tmp_path, "custom_cnn", 2, tmp_path, algorithm="grid")
    for seed in (-1, 2**31):  # the config's rule: KerasTuner failed each trial on -1
        with pytest.raises(ConfigError, match=rf"^--seed must be in \[0, {MAX_SEED}\], got "
                                              rf"{seed}$"):
            tn.tune(tmp_path, "custom_cnn", 1, tmp_path, seed=seed)
    assert not (tmp_path / "tune").exists()


@pytest.mark.slow
def test_tune_selects_on_validation_only_and_writes_a_usable_config(
    synth_data, tmp_path, monkeypatch
) -> None:
    from pipeline import data

    cfg = profile("smoke")
    cfg.models["custom_cnn"].epochs = 1
    loaded: list[str] = []
    real_load = data.load_arrays

    def spy(records, *args, **kwargs):
        loaded.extend(r.rel for r in records)
        return real_load(records, *args, **kwargs)

    monkeypatch.setattr(data, "load_arrays", spy)
    result = tn.tune(synth_data, "custom_cnn", 2, tmp_path, cfg=cfg)

    # the test split made exactly as `train` makes it was never decoded
    ds = data.discover(synth_data)
    splits = data.make_splits(ds, seed=cfg.seed, val_fraction=cfg.val_fraction,
                              test_fraction=cfg.test_fraction, dedupe=cfg.dedupe,
                              max_per_class=cfg.max_images)
    assert loaded and not {r.rel for r in splits.test} & set(loaded)
    assert result["data"]["test_not_used"] == len(splits.test)

    out = tmp_path / "tune"
    (run_dir,) = list(out.iterdir())
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["budget"] == 2 and len(saved["trials"]) == 2
    assert all(t["status"] == "COMPLETED" and 0 <= t["val_accuracy"] <= 1
               for t in saved["trials"])
    # trial 1 is the smoke profile's starting config
    first = saved["trials"][0]["hyperparameters"]
    mc = cfg.models["custom_cnn"]
    assert first == {"learning_rate": mc.learning_rate, "dropout": mc.dropout, "width": mc.width,
                     "depth": mc.depth}
    best = max(saved["trials"], key=lambda t: (t["val_accuracy"], -t["val_loss"]))
    assert saved["best"]["trial"] == best["trial"]
    table = (run_dir / "results.md").read_text()
    assert table.count("\n| ") == 3 and "test images were not used" in table
    # written atomically (artifacts' writers): no temporary files left behind
    assert not [f.name for f in run_dir.iterdir() if f.name.startswith(".")]

    # best_config.json is a config file for `train --config` on top of any profile
    cfg_path = run_dir / "best_config.json"
    tuned = load_config(cfg_path, base=profile("quick"))
    for key, value in best["hyperparameters"].items():
        assert getattr(tuned.models["custom_cnn"], key) == value
    assert tuned.models["custom_cnn"].epochs == profile("quick").models["custom_cnn"].epochs


def test_tune_cli_rejects_bad_input(tmp_path) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["tune", "--data", str(tmp_path), "--model", "vgg", "--budget", "2"])
    assert r.exit_code == 2 and "unknown model 'vgg'" in r.output
    r = runner.invoke(app, ["tune", "--data", str(tmp_path), "--model", "custom_cnn",
                            "--budget", "0"])
    assert r.exit_code == 2 and "--budget must be at least 1" in r.output
    r = runner.invoke(app, ["tune", "--data", str(tmp_path / "nope"), "--model", "custom_cnn"])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_tune_cli_refuses_a_seed_the_config_would_refuse(tmp_path) -> None:
    """`tune --seed -1` (or 99999999999) printed KerasTuner's traceback for each trial, then
    "no trial finished", leaving a folder under tune/; the same seed in --config was refused in
    one line (a review of the CLI). Now the option is refused as that line, before anything."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    out = tmp_path / "art"
    for seed in ("-1", "99999999999"):
        r = CliRunner().invoke(app, ["tune", "--data", str(tmp_path), "--model", "custom_cnn",
                                     "--profile", "smoke", "--budget", "1", "--seed", seed,
                                     "--out", str(out)])
        assert r.exit_code == 2, r.output
        assert r.output.strip() == f"error: --seed must be in [0, {MAX_SEED}], got {seed}"
    assert not out.exists()

