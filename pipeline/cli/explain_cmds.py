"""Explanation commands: `explain` (overlay PNGs + explain.json) and `explain-eval` (quality)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from pipeline.cli.common import (
    _existing_dir,
    _model_list,
    _open_run,
    _split_models,
    _target_index,
    err,
    fail,
    keep_larger,
    one_line,
    print_json,
    progress_bar,
    report_gaps,
    report_inputs,
    run_ref,
    say,
    shown,
    unreadable_report,
    warning_legend,
    warning_tags,
)
from pipeline.explain import METHODS
from pipeline.explain.alarm import OUTSIDE_HEAD_MESSAGE, outside_share_words
from pipeline.explain.choice import CHOOSE_MAX_IMAGES

if TYPE_CHECKING:
    from pipeline.artifacts import Run
    from pipeline.explain import Explainer
    from pipeline.explain.batch import ExplainSummary

# From the method registry (no TensorFlow import: pipeline.explain loads names on demand).
EXPLAIN_METHODS_HELP = " | ".join(METHODS)


def explain(
    images_: list[Path] = typer.Argument(..., metavar="IMAGE...",
                                         help="image files or folders (searched recursively)"),
    out: Path = typer.Option(..., "--out", help="folder for overlay PNGs and explain.json"),
    run_: str = typer.Option("latest", "--run", help="run id, run folder or 'latest'"),
    model: str = typer.Option("all", "--model", help="model of the run, comma list, or all"),
    method: str = typer.Option(None, "--method", help=EXPLAIN_METHODS_HELP + " (default: each "
                               "model's choice in the run's explain_choice.json, else gradcam)"),
    target: str = typer.Option(None, "--target", help="class name or index to explain "
                               "(default: each model's predicted class)"),
    layer: str = typer.Option(None, "--layer", help="conv layer (default: the run's chosen "
                              "layer, else its gradcam_layer); one model only"),
    alpha: float = typer.Option(0.4, "--alpha", help="heatmap opacity 0..1"),
    outline: float = typer.Option(None, "--outline", help="outline the top PCT percent of the map"),
    bare: bool = typer.Option(False, "--bare", help="plain overlays at the model's resolution "
                              "(its input size, head crop), for further processing; default: "
                              "enlarged to at least 448 px with a caption strip (model, answer, "
                              "method and class explained, colour scale, disclaimer)"),
    shard: str = typer.Option(None, "--shard", help="i/n: only every n-th file from position "
                              "i (split a large folder over n jobs, one --out each; overlay "
                              "names as in one unsharded run)"),
    artifacts_dir: Path = typer.Option(Path("artifacts"), "--artifacts", help="artifacts folder"),
) -> None:
    """Overlay PNG per image and model, plus explain.json with predictions and heatmap stats.

    Each overlay is captioned for use as it is (a slide, a report) unless --bare. Files are
    decoded and explained 32 at a time, so folders of any size fit in memory; each chunk's rows
    are kept on disk at once, so after an interruption the same command continues where it
    stopped (files already done are skipped; other settings, --bare among them, are refused)."""
    from pipeline.data.membership import Membership
    from pipeline.gaps import missing_checks
    from pipeline.stream import parse_shard, scan_inputs

    _check_explain_options(method, alpha, outline)
    try:
        shard_ = parse_shard(shard) if shard else (0, 1)
    except ValueError as exc:
        fail(str(exc))
    run = _open_run(artifacts_dir, run_)
    names = _model_list(model, run.model_names, run.model_names, what="--model",
                        hint=f"run {run.run_id} has {', '.join(run.model_names)} (or all)")
    if layer is not None and len(names) != 1:
        fail("--layer names a layer of one model; pick that model with --model")
    target_idx = _target_index(target, run.class_names)
    inputs = scan_inputs(images_)
    report_inputs(inputs)
    paths = inputs.files
    explainers = _load_explainers(run, names, layer, method)
    try:  # a damaged calibration.json fails here, in one line
        report_gaps(missing_checks(run, names, run_ref=run_ref(artifacts_dir, run_),
                                   knows_splits=Membership.of_run(run.path) is not None))
    except ValueError as exc:
        fail(str(exc))
    summary = _write_overlays(run, explainers, paths, out, method=method, target=target_idx,
                              alpha=alpha, outline=outline, caption=not bare, shard=shard_)
    if summary.selected and not summary.images:
        fail(f"none of the {summary.selected} file(s) is a usable image; nothing to explain",
             code=1)
    _print_explained(summary, len(names), out, shard if shard else None, len(paths),
                     targeted=target_idx is not None)
    if summary.errors:  # as before resuming existed: exit 1 whenever explain.json lists errors
        raise typer.Exit(1)


def _check_explain_options(method: str | None, alpha: float, outline: float | None) -> None:
    """Fail in one line on an unknown --method, an --alpha outside 0..1 or a bad --outline."""
    from pipeline.explain import METHODS

    if method is not None and method not in METHODS:
        fail(f"unknown --method {method!r}; choose one of {', '.join(METHODS)}")
    if not 0.0 <= alpha <= 1.0:
        fail(f"--alpha must be between 0 and 1, got {alpha}")
    if outline is not None and not 0 < outline <= 100:
        fail(f"--outline must be a percentage in (0, 100], got {outline}")


def _load_explainers(run: Run, names: list[str], layer: str | None, method: str | None
                     ) -> dict[str, Explainer]:
    """An Explainer per model of `run`: `method` and `layer` when given, else the run's
    recorded choice (explain_choice.json), else Grad-CAM at the manifest's gradcam_layer."""
    from pipeline.artifacts import ArtifactError
    from pipeline.explain import Explainer
    from pipeline.explain.choice import default_explanation

    explainers = {}
    for name in names:
        manifest_layer = run.model_info(name).get("gradcam_layer")
        chosen, chosen_layer = default_explanation(run.path, name, manifest_layer)
        if method is not None and method != chosen:
            chosen_layer = manifest_layer  # the chosen layer belongs to the chosen method
        try:
            explainers[name] = Explainer(run.load_model(name), layer or chosen_layer,
                                         method or chosen)
        except (ArtifactError, ValueError) as exc:
            fail(f"{name}: {exc}")
    return explainers


def _write_overlays(run: Run, explainers: dict[str, Explainer], paths: list[Path], out: Path,
                    *, method: str | None, target: int | None, alpha: float,
                    outline: float | None, caption: bool, shard: tuple[int, int]
                    ) -> ExplainSummary:
    """`explain.batch.explain_files` with a progress bar; unusable files reported one line each
    as they are met; a model's error, other settings than the earlier run's into `out` or an
    unwritable folder fail in one line; Ctrl-C says how to continue."""
    from pipeline.explain.batch import JOURNAL, explain_files

    try:
        with progress_bar() as update, unreadable_report() as report:
            return explain_files(run, explainers, paths, out, method=method, target=target,
                                 alpha=alpha, outline=outline, caption=caption, shard=shard,
                                 progress=update, on_unreadable=report)
    except ValueError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write to {out}: {exc.strerror or exc}")
    except KeyboardInterrupt:
        kept = f" (rows so far in {out / JOURNAL})" if (out / JOURNAL).is_file() else ""
        err.print(f"interrupted{shown(kept)}: run the same command again to continue",
                  highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None


def _print_explained(summary: ExplainSummary, n_models: int, out: Path, shard: str | None,
                     n_files: int, *, targeted: bool = False) -> None:
    """One tab-separated line per image explained now (each model's prediction with the
    warnings `predict` prints, its overlay, the class it explains when `targeted` (--target: not
    the prediction printed beside it), and the shortcut alarm when it fires, then in a last
    field the image's own tags as `predict` prints them: the models disagree, the run's split
    it is in), then a total with the files skipped as done; a legend of the answer warnings
    shown goes to stderr."""
    from pipeline.data.membership import SEEN_TAGS, hides_unlike, seen_tag
    from pipeline.evaluate.flags import FLAG_LABELS

    seen: set[str] = set()
    splits: set[str] = set()
    for row in summary.rows:
        split = row.get("in_run_split")
        own = hides_unlike(split, row.get("in_run_exact"))  # predict's rule
        parts = [f"{m}: {v['predicted']} ({max(v['probs'].values()):.2f})"
                 + warning_tags({**v, "unlike": False} if own else v, seen)
                 + f" -> {v['overlay']}"
                 + (f" (heatmap for '{v['target']}')" if targeted else "")
                 + (f" [WARNING: {OUTSIDE_HEAD_MESSAGE}: "
                    f"{outside_share_words(v['top_outside_head'])}]"
                    if v.get("outside_head_flag") else "")
                 for m, v in row["models"].items()]
        tags = []  # the image's own, in a last field as predict prints them
        if row.get("agree") is False:
            tags.append(f"[{FLAG_LABELS['disagree']}]")
            seen.add("disagree")
        if split in SEEN_TAGS:
            tags.append(seen_tag(split, row.get("in_run_exact")))
            splits.add(split)
        if tags:
            parts.append(" ".join(tags))
        sys.stdout.write(f"{one_line(row['path'])}\t" + "\t".join(parts) + "\n")
    where = f"shard {shard}: {summary.selected} of {n_files} file(s); " if shard else ""
    unreadable = f", {summary.errors} unreadable" if summary.errors else ""
    sys.stdout.write(f"wrote {len(summary.rows) * n_models} overlay(s) and explain.json to "
                     f"{one_line(out)} ({where}{summary.already_done} already done, skipped; "
                     f"explain.json: {summary.images} image(s){unreadable})\n")
    warning_legend(seen, splits, answered=bool(summary.rows))


def explain_eval_cmd(
    run_: str = typer.Option("latest", "--run", help="run id, run folder or 'latest'"),
    data: Path = typer.Option(None, "--data", help="dataset folder (default: the run's); a "
                              "folder without the run's test split (Training/Testing, one "
                              "folder per class, or yes/no) is evaluated as an external "
                              "folder: all its images"),
    masks: Path = typer.Option(None, "--masks", help="tumour masks at the images' relative "
                               "paths, any image extension (scan.jpg -> scan.png), non-zero = "
                               "tumour (default: the dataset's boxes folder, else DATA/masks)"),
    out_name: str = typer.Option(None, "--name", help="external folder only: file name under "
                             "<run>/<model>/explanations-external/ (default: the folder's name)"),
    method: str = typer.Option(None, "--method", help=EXPLAIN_METHODS_HELP + " (default: "
                               "each model's default from explain-choose, else gradcam)"),
    max_images: int = typer.Option(64, "--max-images", help="images per model scored in "
                                   "full (balanced over labels, images with a mask first)"),
    max_localisation: int = typer.Option(None, "--max-localisation", help="further images "
                                         "with a mask, scored for localisation and the "
                                         "shortcut alarm only (default: all; 0: none)"),
    model: str = typer.Option("all", "--model", help="model of the run, comma list, or all"),
    steps: int = typer.Option(20, "--steps", help="deletion/insertion steps"),
    baseline: str = typer.Option("blur", "--baseline", help="removed pixels become: blur | black"),
    layer: str = typer.Option(None, "--layer", help="conv layer to explain (default: each "
                              "model's layer from explain-choose, else its gradcam_layer from "
                              "the manifest)"),
    artifacts_dir: Path = typer.Option(Path("artifacts"), "--artifacts", help="artifacts folder"),
    as_json: bool = typer.Option(False, "--json", help="print the results as JSON"),
    replace: bool = typer.Option(False, "--replace", help="overwrite a run's explanations.json "
                                 "measured on more images than --max-images, or measure "
                                 "another method or layer than the model's default there"),
) -> None:
    """Measure explanation quality (localisation, faithfulness, sanity, shortcut alarm); writes
    <run>/<model>/explanations.json (external folders: explanations-external/<name>.json)."""
    from pipeline.artifacts import ArtifactError, open_run, resolve_run
    from pipeline.explain import explain_eval
    from pipeline.explain.quality import holds_test_split

    _check_explain_eval_options(method, baseline, max_images, steps)
    if max_localisation is not None and max_localisation < 0:
        fail(f"--max-localisation must be 0 or more, got {max_localisation}")
    if data is not None:
        _existing_dir(data, "data folder")
    if masks is not None:
        _existing_dir(masks, "masks folder")
    try:
        run_dir = resolve_run(artifacts_dir, run_)
        names = None if model == "all" else _split_models(model)
        run = open_run(run_dir)
        for name in names or []:
            run.model_info(name)
        # the run's own test split, found by default or given with --data (a checkout where the
        # recorded path does not resolve): explanations.json, which the guards protect
        if not replace and (data is None or holds_test_split(run, data)):
            for name in names or run.model_names:
                keep_larger(run.path / name / "explanations.json", ("n_faithfulness", "n"),
                            max_images, f"{name}/explanations.json",
                            "pass --max-images {n} or more, or --replace to overwrite it",
                            instead=_not_the_default(run, name, method, layer))
        with progress_bar() as update:
            results = explain_eval(run_dir, data_dir=data, masks_dir=masks, method=method,
                                   max_images=max_images, progress=update, models=names,
                                   steps=steps, baseline=baseline, layer=layer, name=out_name,
                                   max_localisation=max_localisation)
    except (ArtifactError, ValueError) as exc:
        fail(str(exc))
    if as_json:
        print_json({m: {k: v for k, v in r.items() if k != "rows"} for m, r in results.items()})
        return
    else:
        _print_explain_quality(results, run_dir)


def _not_the_default(run: Run, name: str, method: str | None, layer: str | None
                     ) -> str | None:
    """The refusal when explain-eval would measure `name` with another method or layer than its
    default (explain_choice.json, else Grad-CAM), whose measurement explanations.json is (the
    dashboard's quality page shows it as the default's); None when it measures the default.
    The layer as explain_eval picks it: the chosen one for the default method, else the
    manifest's."""
    from pipeline.explain import LAYER_METHODS
    from pipeline.explain.choice import default_explanation

    manifest_layer = run.model_info(name).get("gradcam_layer")
    default, default_layer = default_explanation(run.path, name, manifest_layer)
    use = method or default
    use_layer = layer or (default_layer if use == default else manifest_layer)
    if use == default and (use not in LAYER_METHODS or use_layer == default_layer):
        return None
    asked = " ".join(f"{opt} {v}" for opt, v in (("--method", method), ("--layer", layer)) if v)
    return (f"{name}/explanations.json measures {name}'s default "
            f"({_method_at(default, default_layer)}); {asked} would replace it with "
            f"{_method_at(use, use_layer)}: pass --replace, or measure on a copy of the run")


def _method_at(method: str, layer: str | None) -> str:
    """"gradcam at conv3", or the method alone when it reads no layer (the input's pixels)."""
    from pipeline.explain import LAYER_METHODS

    return f"{method} at {layer}" if method in LAYER_METHODS and layer else method


def _check_explain_eval_options(method: str | None, baseline: str, max_images: int,
                                steps: int) -> None:
    """Fail in one line on an unknown --method/--baseline or --max-images/--steps out of range."""
    from pipeline.explain import BASELINES, METHODS

    if method is not None and method not in METHODS:
        fail(f"unknown --method {method!r}; choose one of {', '.join(METHODS)}")
    if baseline not in BASELINES:
        fail(f"unknown --baseline {baseline!r}; choose one of {', '.join(BASELINES)}")
    if max_images < 1:
        fail(f"--max-images must be at least 1, got {max_images}")
    if not 1 <= steps <= 200:
        fail(f"--steps must be between 1 and 200, got {steps}")


def _fmt(value: object, digits: int = 3) -> str:
    """A score with `digits` decimals, or "–" when it could not be computed."""
    return "–" if value is None else f"{value:.{digits}f}"


def _print_explain_quality(results: dict[str, dict], run_dir: Path) -> None:
    """explain-eval's table (one column per model), then where the files were written."""
    from rich.table import Table

    methods = ", ".join(f"{m}: {r['method']}" + (f" at {r['layer']}" if r.get("layer") else "")
                        for m, r in results.items())
    table = Table(title=f"explanation quality ({methods}), run {run_dir.name}")
    # A row per measure, a column per model: ten columns, one per measure, broke mid-word at
    # 80 columns (piped output, a standard terminal): "custo / m_cnn", "delet / ion".
    table.add_column("measure")
    for m in results:
        table.add_column(m, justify="right", overflow="fold")
    rows = {
        "images": lambda r: str(r["n"]),
        "with a mask": lambda r: str(r["n_localisation"]),
        "pointing game (chance)": lambda r: (f"{_fmt(r['pointing_game'], 2)} "
                                             f"({_fmt(r['pointing_game_chance'], 2)})"),
        "energy in mask (chance)": lambda r: (f"{_fmt(r['energy_in_mask'])} "
                                              f"({_fmt(r['energy_in_mask_chance'])})"),
        "deletion AUC (random)": lambda r: (f"{_fmt(r['deletion_auc'])} "
                                            f"({_fmt(r['deletion_auc_random'])})"),
        "insertion AUC (random)": lambda r: (f"{_fmt(r['insertion_auc'])} "
                                             f"({_fmt(r['insertion_auc_random'])})"),
        "ROAD MoRF / LeRF AUC": lambda r: (f"{_fmt(r.get('road_morf_auc'))} / "
                                           f"{_fmt(r.get('road_lerf_auc'))}"),
        "sanity check ρ": lambda r: _fmt(r["sanity_rank_correlation"], 2),
        "outside the head (rate)": lambda r: (f"{r['n_outside_head_flagged']} "
                                              f"({_fmt(r['outside_head_alarm_rate'], 2)})"),
    }
    for name, cell in rows.items():
        table.add_row(name, *[cell(r) for r in results.values()])
    Console().print(table)
    for m, r in results.items():
        if r.get("localisation_reason"):
            sys.stdout.write(f"{m}: no localisation scores ({r['localisation_reason']})\n")
        else:
            sys.stdout.write(f"{m}: localisation on the {r['n_localisation']} of {r['n']} images "
                             "with a non-empty mask; faithfulness and sanity on "
                             f"{r.get('n_faithfulness', r['n'])}\n")
        if r.get("n_empty_heatmaps"):
            sys.stdout.write(f"{m}: {r['n_empty_heatmaps']} of {r['n']} heatmaps are empty (no "
                             "positive evidence for the explained class); they miss the pointing "
                             "game and put no energy in the box\n")
        if r["n_outside_head_flagged"]:
            sys.stdout.write(f"{m}: {r['n_outside_head_flagged']} of {r['n']} heatmaps flagged: "
                             f"{OUTSIDE_HEAD_MESSAGE} ({r['outside_head_rule']})\n")
    _report_failed(results)
    modes = {r["target_mode"] for r in results.values()}
    sys.stdout.write("explained class: " + ", ".join(sorted(
        _TARGET_WORDS.get(mode, mode) for mode in modes)) + "\n")
    sys.stdout.write(f"written: {', '.join(r['written'] for r in results.values())} in "
                     f"{run_dir}\n")


def _report_failed(results: dict[str, dict]) -> None:
    """Images and masks explain-eval could not use, on stderr: the count and the first few
    reasons (a mask of another size, a damaged file); they were only in the JSON's `failed`.
    Every model meets the same files, so each is said once."""
    failed: dict[str, str] = {}
    for r in results.values():
        for f in r.get("failed") or []:
            failed.setdefault(str(f.get("path")), str(f.get("error")))
    n = max((int(r.get("n_failed") or 0) for r in results.values()), default=0)
    if not n:
        return
    err.print(f"[yellow]{n} image(s) or mask(s) could not be used[/] (listed in the JSON's "
              "`failed`):", highlight=False)
    for path, reason in list(failed.items())[:3]:
        err.print(f"  {shown(path)}: {shown(reason)}", highlight=False, soft_wrap=True)


_TARGET_WORDS = {"true": "the true class",
                 "most-probable-tumour-class": "the model's most probable tumour class "
                                               "(the folder only says 'tumor')",
                 "mixed": "the true class where the label is a run class, else the model's most "
                          "probable tumour class"}


def explain_choose_cmd(
    run_: str = typer.Option("latest", "--run", help="run id, run folder or 'latest'"),
    data: Path = typer.Option(None, "--data", help="dataset folder (default: the run's)"),
    masks: Path = typer.Option(None, "--masks", help="tumour masks at the images' relative "
                               "paths (default: the dataset's boxes folder, else DATA/masks)"),
    max_images: int = typer.Option(CHOOSE_MAX_IMAGES, "--max-images", help="validation "
                                   "images with a box (balanced over labels)"),
    model: str = typer.Option("all", "--model", help="model of the run, comma list, or all"),
    artifacts_dir: Path = typer.Option(Path("artifacts"), "--artifacts", help="artifacts folder"),
    replace: bool = typer.Option(False, "--replace", help="overwrite a model's choice made on "
                                 "more images than --max-images"),
) -> None:
    """Choose each model's default method and layer by pointing game on VALIDATION images with
    a box; writes <run>/explain_choice.json (other models' choices kept), which explain and the
    dashboard then use."""
    from pipeline.artifacts import ArtifactError, open_run, resolve_run
    from pipeline.explain.choice import CHOICE_FILE, choose_defaults

    if max_images < 1:
        fail(f"--max-images must be at least 1, got {max_images}")
    for folder, what in ((data, "data folder"), (masks, "masks folder")):
        if folder is not None:
            _existing_dir(folder, what)
    try:
        run_dir = resolve_run(artifacts_dir, run_)
        run = open_run(run_dir)
        names = run.model_names if model == "all" else _split_models(model)
        for name in names:
            run.model_info(name)  # an unknown name fails before the check below
        if not replace:
            for name in names:
                keep_larger(run.path / CHOICE_FILE, ("n_images",), max_images,
                            f"{name}'s default explanation in {CHOICE_FILE}",
                            "pass --max-images {n} or more, or --replace to overwrite it",
                            within=("models", name))
        with progress_bar() as update:
            result = choose_defaults(run_dir, data_dir=data, masks_dir=masks,
                                     max_images=max_images, models=names, progress=update,
                                     say=lambda text: say(shown(text)))  # a path: not markup
    except (ArtifactError, ValueError) as exc:
        fail(str(exc))
    for m, r in result["models"].items():
        where = f"{m}: {r.get('method')} at {r.get('layer') or '(input pixels)'}"
        if m in names:
            sys.stdout.write(f"{where}: pointing {r['pointing_game']:.2f} (chance "
                             f"{r['chance']:.2f}) on {r['n_images']} validation images with a "
                             "box\n")
        else:  # an earlier entry, whatever it holds: printed, never a crash
            sys.stdout.write(f"{where}: kept, chosen earlier on {r.get('n_images', '?')} "
                             "validation images\n")
    sys.stdout.write(f"written: {CHOICE_FILE} in {run_dir}\n")
