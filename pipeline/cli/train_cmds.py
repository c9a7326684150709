"""Training commands: `train`, `run` (synthetic data -> trained, evaluated run) and `tune`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from pipeline import run_files, signals
from pipeline.cli.common import (
    MODEL_HELP,
    _existing_dir,
    _model_list,
    artifacts_option,
    err,
    fail,
    print_json,
    progress_bar,
    say,
    shown,
)
from pipeline.config import PROFILE_NOTES
from pipeline.config_rules import IMAGE_SIZE_HELP
from pipeline.names import DEFAULT_MODELS, MODEL_NAMES
from pipeline.synth.dataset import PER_CLASS

if TYPE_CHECKING:
    from pipeline.config import TrainConfig

# what each profile is for (config.PROFILE_NOTES); each command's --help adds its default and why
PROFILE_HELP = "; ".join(f"{name}: {note}" for name, note in PROFILE_NOTES.items()) + "."
WEIGHTS_HELP = ("auto | imagenet | none | PATH (auto: ImageNet weights from the Keras cache, "
                "filled by make weights, or $BRAIN_MRI_WEIGHTS; without them, from scratch)")


def _build_config(profile_name: str, config: Path | None, image_size: int | None,
                  epochs: int | None, weights: str | None, official_test: bool | None,
                  models: list[str]) -> TrainConfig:
    """The profile, then the --config file, then the command's options (None = not given).

    --image-size and --epochs apply to every model in `models` (a model the profile lacks gets
    the default ModelConfig first). Bad values fail in one line, checked by the config's own
    rules (config_rules), before any data is read.
    """
    from pipeline.config import ModelConfig, load_config, profile
    from pipeline.config_rules import ConfigError, check_recipes

    try:
        cfg = profile(profile_name)
        if config is not None:
            cfg = load_config(config, base=cfg)
    except ConfigError as exc:  # which file: the value may come from it or from the profile
        fail(f"{config}: {exc}")
    except ValueError as exc:
        fail(str(exc))
    for option, key, value in (("--image-size", "image_size", image_size),
                               ("--epochs", "epochs", epochs)):
        if value is None:
            continue
        for name in models:
            setattr(cfg.models.setdefault(name, ModelConfig()), key, value)
        try:
            cfg.check()
        except ValueError as exc:  # e.g. --image-size 16 for MobileNetV2
            fail(f"{option} {value}: {exc}")
    if weights is not None:
        cfg.weights = weights
    if official_test is not None:
        cfg.official_test = official_test
    try:
        cfg.check()
        # what training itself would refuse for these models (a transfer model with tumour
        # removal, say): --print-config showed such a recipe, and training refused it later
        check_recipes(cfg, models)
    except ValueError as exc:
        fail(str(exc))
    return cfg


def _say_profile(cfg: TrainConfig, config: Path | None) -> None:
    """One stderr line at the start: the profile trained with and what it is for (the
    commands' defaults differ: train full, run and tune quick), and the --config over it."""
    over = f" with {shown(config)} over it" if config is not None else ""
    others = " | ".join(p for p in PROFILE_NOTES if p != cfg.profile)
    err.print(f"profile {cfg.profile}{over}: {PROFILE_NOTES.get(cfg.profile, '')}; others: "
              f"--profile {others}", highlight=False, soft_wrap=True)


def _start(cfg: TrainConfig, config: Path | None, out: Path, models: list[str],
           strategy: str = "default") -> None:
    """Every refusal that needs no data, each in one line (the strategy, the transfer models'
    weights, an artifacts folder that cannot be written), then the profile line: a refusal
    after that line was two lines (tests/test_readonly, tests/test_distributed)."""
    from pipeline.artifacts import ArtifactError, ensure_writable
    from pipeline.distribute import StrategyError, check_strategy

    try:
        check_strategy(strategy)
        ensure_writable(out, "artifacts folder")
    except (StrategyError, ArtifactError) as exc:
        fail(str(exc))
    _check_weights(cfg, models)
    _say_profile(cfg, config)


def _say_interrupted(out: Path) -> None:
    """One line when `out` holds interrupted runs (hidden `runs/.tmp-<id>/` folders, kept
    forever before): their ids and sizes, and how to continue or remove one."""
    import shlex

    from pipeline.interrupted import interrupted_runs, note

    out_arg = "" if out == Path("artifacts") else f" --out {shlex.quote(str(out))}"
    line = note(interrupted_runs(out), out_arg)
    if line:
        err.print(shown(line), highlight=False, soft_wrap=True)


def _discard(out: Path, run_id: str, resume: str | None) -> None:
    """`train --discard ID`: remove that interrupted run, in one line (or refuse in one)."""
    from pipeline.artifacts import ArtifactError
    from pipeline.interrupted import discard, mb_words

    if resume is not None:
        fail("--discard removes an interrupted run and --resume continues one: give one")
    try:
        mb = discard(out, run_id)
    except ArtifactError as exc:
        fail(str(exc))
    err.print(f"removed interrupted run {shown(run_id)} ({mb_words(mb)} freed)", highlight=False)


def _check_weights(cfg: TrainConfig, models: list[str]) -> None:
    """Fail in one line, before any work (run: before making its synthetic data), when a
    transfer model's weights file is missing (`weights.check_weights`)."""
    from pipeline.weights import WeightsError, check_weights

    try:
        check_weights(cfg.weights, models)
    except WeightsError as exc:
        fail(str(exc))


def _check_trainable(data: Path) -> None:
    """Fail in one line, before any hashing, when `data` has no class folders or fewer than two
    classes (`data.untrainable`): a one-class dataset was refused only after its split, and
    left a temporary run folder behind."""
    from pipeline.data import DatasetError, discover, untrainable

    try:
        why = untrainable(discover(data))
    except DatasetError as exc:
        fail(str(exc))
    if why:
        fail(why)


def _train_and_evaluate(cfg: TrainConfig, data: Path | None, out: Path, models: list[str],
                        resume: str | None, evaluate: bool, strategy: str = "default"
                        ) -> Path | None:
    """`train_run` with a progress bar (expected errors fail in one line); with `evaluate`, the
    test split is evaluated inside the run before it becomes final. Returns the run folder
    (None on a multi-worker run's non-chief workers, which write no run)."""
    import shlex

    from pipeline.artifacts import ArtifactError
    from pipeline.data import DatasetError
    from pipeline.train import RunInterrupted, train_run
    from pipeline.weights import WeightsError

    interrupted, terminated = None, False
    with progress_bar() as update:
        try:
            run_dir = train_run(cfg, data, out, models, resume=resume, progress=update, say=say,
                                evaluate=evaluate, strategy=strategy)
        except (DatasetError, WeightsError, ArtifactError, ValueError) as exc:
            fail(str(exc))
        except RunInterrupted as exc:
            interrupted, terminated = exc.run_id, signals.terminated(exc)
    if interrupted:  # the run id was many screens up: repeat it, with the way on (bar closed)
        err.print(f"interrupted: run {interrupted} is kept; resume it with `python -m pipeline "
                  f"train --resume {interrupted} --out {shlex.quote(str(out))}`",
                  highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(143 if terminated else 130)  # SIGTERM keeps its code (cli.main)
    if run_dir is None:
        err.print("[green]worker finished:[/] the chief wrote the run")
        return None
    # the run's own choice on a resume (run.json's), whatever the command said
    evaluated = (run_dir / run_files.COMPARISON).is_file()
    err.print(f"[green]run complete{' and evaluated' if evaluated else ''}:[/] {run_dir}")
    if evaluated:
        _print_test_results(run_dir)
    return run_dir


def _print_test_results(run_dir: Path) -> None:
    """One line per model from the test metrics the run just wrote, then the comparison's
    verdict: a finished training said only where its run was, so seeing how it did took a
    second `evaluate` that recomputed everything."""
    from pipeline.artifacts import read_json
    from pipeline.names import display_name

    comparison = {}
    if (run_dir / run_files.COMPARISON).is_file():
        comparison = read_json(run_dir / run_files.COMPARISON)
    for path in sorted(run_dir.glob("*/metrics.json")):
        met = read_json(path)
        ci = (comparison.get("ci") or {}).get(path.parent.name, {}).get("accuracy")
        interval = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
        screen = met.get("tumor_vs_no_tumor") or {}
        detect = (f", tumour sensitivity {screen['sensitivity']:.3f} / specificity "
                  f"{screen['specificity']:.3f}") if screen.get("sensitivity") is not None \
            and screen.get("specificity") is not None else ""
        sys.stdout.write(f"{display_name(path.parent.name)}: test accuracy "
                         f"{met['accuracy']:.3f}{interval} on {met['n']} images{detect}, "
                         f"ECE {met['ece']:.3f}\n")
    if comparison.get("verdict"):
        sys.stdout.write(comparison["verdict"] + "\n")


def train(
    data: Path = typer.Option(None, "--data",
                              help="the dataset to train on (any supported layout); required "
                                   "unless --resume or --print-config (with --resume: where "
                                   "the run's data folder is now, if it moved)"),
    model: str = typer.Option("all", "--model", help=MODEL_HELP),
    # --artifacts too: every command that reads runs calls the folder so (a review trained with
    # --out X, then needed predict --artifacts X)
    out: Path = artifacts_option("--out", "--artifacts"),
    profile_name: str = typer.Option("full", "--profile", help=PROFILE_HELP + " Default "
                                     "full: train makes the real runs (run and tune: quick)."),
    image_size: int = typer.Option(None, "--image-size", help="input side in pixels "
                                   f"({IMAGE_SIZE_HELP})"),
    epochs: int = typer.Option(None, "--epochs", help="max epochs (head phase for transfer)"),
    weights: str = typer.Option(None, "--weights", help=WEIGHTS_HELP),
    official_test: bool = typer.Option(None, "--official-test/--own-test-split",
                                       help="--official-test: test on the dataset's "
                                            "Testing/ folder (Kaggle layout; often another "
                                            "source: shift validation); --own-test-split: "
                                            "hold out test_fraction of all the images. "
                                            "Default: the config's official_test (false in "
                                            "every profile)"),
    split_test: bool = typer.Option(False, "--split-test", hidden=True),  # --own-test-split
    resume: str = typer.Option(None, "--resume", help="continue an interrupted run by id"),
    discard: str = typer.Option(None, "--discard", help="remove an interrupted run by id (its "
                                "hidden runs/.tmp-<id>/ folder; train names them when it "
                                "starts) and exit"),
    config: Path = typer.Option(None, "--config",
                                help="JSON config overriding the profile (see README: Training "
                                     "configuration; --print-config shows every field)"),
    evaluate: bool | None = typer.Option(None, "--evaluate/--no-evaluate", show_default=False,
                                  help="evaluate at the end (default: evaluate; a resumed run "
                                  "keeps the choice it began with)"),
    strategy: str = typer.Option("default", "--strategy",
                                 help="default | mirrored (local GPUs) | multiworker (TF_CONFIG)"),
    print_config: bool = typer.Option(False, "--print-config",
                                      help="print the merged config (profile, --config, options) "
                                           "as JSON and exit without training"),
) -> None:
    """Train models and write a self-describing run folder (evaluated at the end)."""
    if discard is not None:
        _discard(out, discard, resume)
        return
    models = _model_list(model)
    if split_test:  # the old spelling of --own-test-split
        if official_test:
            fail("--official-test and --split-test (the old name of --own-test-split) ask "
                 "for two test splits: give one")
        official_test = False
    if print_config:  # cheap: no hashing, no TensorFlow
        print_json(_build_config(profile_name, config, image_size, epochs, weights,
                                 official_test, models).to_dict())
        if data is not None:  # the config is fine; say too if the data cannot be trained on
            _check_trainable(_existing_dir(data, "data folder"))
        return
    if resume is None:
        if data is None:
            fail("--data is required (or --resume RUN_ID)")
        _existing_dir(data, "data folder")
    cfg = _build_config(profile_name, config, image_size, epochs, weights, official_test, models)
    if resume is not None:  # it trains on with its saved config: say what is not used
        ignored = [flag for flag, given in (
            ("--model", model != "all"), ("--profile", profile_name != "full"),
            ("--image-size", image_size is not None), ("--epochs", epochs is not None),
            ("--weights", weights is not None), ("--config", config is not None),
            ("--official-test/--own-test-split", official_test is not None),
            ("--evaluate/--no-evaluate", evaluate is not None)) if given]
        if ignored:
            err.print(f"note: {', '.join(ignored)} not used: a resumed run trains on with its "
                      "saved config, models and evaluation choice (--data may say where its "
                      "data folder is now)",
                      markup=False, highlight=False, soft_wrap=True)
    if resume is None:  # a resumed run trains on with its saved config, whatever is given
        _start(cfg, config, out, models, strategy)
        _say_interrupted(out)  # before the data's refusals: worth knowing either way
        _check_trainable(data)
    _train_and_evaluate(cfg, data, out, models, resume, evaluate is not False, strategy)


def run(
    data: Path = typer.Option(None, "--data", help="the dataset to train on; default: "
                              "synthetic phantoms made in --synth-dir"),
    # --artifacts too: every command that reads runs calls the folder so (a review trained with
    # --out X, then needed predict --artifacts X)
    out: Path = artifacts_option("--out", "--artifacts"),
    profile_name: str = typer.Option("quick", "--profile", help=PROFILE_HELP + " Default "
                                     "quick: run is the demo (make demo), minutes not hours; "
                                     "--profile full trains as train does."),
    synth_dir: Path = typer.Option(Path("data/synthetic"), "--synth-dir",
                                   help="where the synthetic default dataset is generated"),
    per_class: int = typer.Option(PER_CLASS, "--per-class", help="synthetic images per class"),
    weights: str = typer.Option(None, "--weights", help=WEIGHTS_HELP),
) -> None:
    """Synthesise data when none is given, train both models, evaluate: make demo's first half."""
    models = list(DEFAULT_MODELS)
    if data is not None:
        _existing_dir(data, "data folder")
    cfg = _build_config(profile_name, None, None, None, weights, None, models)
    _start(cfg, None, out, models)  # before the phantoms are made
    _say_interrupted(out)
    if data is None:
        data = _synthetic_data(synth_dir, per_class)
    run_dir = _train_and_evaluate(cfg, data, out, models, None, True)
    _explain_quality_after_run(run_dir)


def _synthetic_data(synth_dir: Path, per_class: int) -> Path:
    """`synth_dir`, holding the synthetic phantoms (seed 0, `per_class` per class): generated
    unless a complete set of them is there. An interrupted generation (synth.json says
    `"complete": false`) or one of another size is made again: only the file's presence was
    checked, so `make demo` trained on a half-made dataset after a Ctrl-C."""
    import json

    from pipeline.synth import generate

    meta_path = synth_dir / "synth.json"
    try:
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    except (OSError, ValueError):
        meta = {}  # unreadable: made again (generate replaces only its own files)
    if isinstance(meta, dict) and meta.get("complete") and meta.get("seed") == 0 \
            and meta.get("per_class") == per_class:
        return synth_dir
    why = ("" if meta is None else " (the set there is incomplete or of another size: made "
           "again)")
    err.print(f"generating synthetic phantoms in {shown(synth_dir)}{why} ...", highlight=False)
    with progress_bar() as update:
        try:
            generate(synth_dir, per_class=per_class, seed=0, progress=update,
                     overwrite=meta is not None)
        except ValueError as exc:
            fail(str(exc))
    return synth_dir


def _explain_quality_after_run(run_dir: Path) -> None:
    """explain-eval on 32 test images of a new run; a failure is reported, the run stays."""
    try:
        from pipeline.explain import explain_eval
    except ImportError:
        return
    from pipeline.locks import run_writer

    with progress_bar() as update:
        try:
            # 32 test images keep the demo's first start short; explain-eval can redo it.
            with run_writer(run_dir, "run (explain-eval)"):
                explain_eval(run_dir, max_images=32, progress=update)
        except Exception as exc:  # explanations are extra; the run stays complete
            err.print(f"[yellow]explanation quality not computed:[/] {exc}")


def tune(
    data: Path = typer.Option(..., "--data", help="the dataset to tune on (any supported "
                              "layout; its test split is never read)"),
    model: str = typer.Option(..., "--model", help="custom_cnn, mobilenetv2 or efficientnetb0"),
    budget: int = typer.Option(8, "--budget", help="number of trials (configurations trained)"),
    out: Path = artifacts_option(
        "--out", "--artifacts", help="artifacts folder; results go to OUT/tune/MODEL-TIMESTAMP/"),
    profile_name: str = typer.Option("quick", "--profile", help=PROFILE_HELP + " Default "
                                     "quick: each of --budget trials is a whole training."),
    config: Path = typer.Option(None, "--config", help="JSON config overriding the profile"),
    epochs: int = typer.Option(None, "--epochs", help="max epochs per trial (head phase)"),
    weights: str = typer.Option(None, "--weights", help=WEIGHTS_HELP),
    algorithm: str = typer.Option("random", "--algorithm", help="random | bayesian (KerasTuner)"),
    seed: int = typer.Option(None, "--seed", help="search seed (default: the config's seed)"),
    as_json: bool = typer.Option(False, "--json", help="print results.json"),
) -> None:
    """Bounded hyper-parameter search, selected on validation accuracy (never the test split)."""
    from pipeline.config_rules import ConfigError, check_seed
    from pipeline.data import DatasetError
    from pipeline.tune import TuneError, results_markdown
    from pipeline.tune import tune as run_tune
    from pipeline.weights import WeightsError

    _existing_dir(data, "data folder")
    if model not in MODEL_NAMES:
        fail(f"unknown model {model!r}; choose one of {', '.join(MODEL_NAMES)}")
    if budget < 1:
        fail(f"--budget must be at least 1 trial, got {budget}")
    if seed is not None:  # before the profile line, as --budget (run_tune checks it too)
        try:
            check_seed(seed, "--seed")
        except ConfigError as exc:
            fail(str(exc))
    cfg = _build_config(profile_name, config, None, epochs, weights, None, [model])
    _start(cfg, config, out, [model])
    _check_trainable(data)
    try:
        with progress_bar() as update:
            result = run_tune(data, model, budget, out, cfg=cfg, algorithm=algorithm, seed=seed,
                              progress=update, say=say)
    except (TuneError, DatasetError, WeightsError, ConfigError) as exc:
        fail(str(exc))
    if as_json:
        print_json(result)
    else:
        sys.stdout.write(results_markdown(result))
        sys.stdout.write(f"results: {result['out_dir']}\n")
