"""`explain`: an overlay PNG per image and model, plus explain.json (pipeline/explain/batch.py).

The command parses its options, loads each model's explainer (`explain.defaults`), runs
`explain.batch.explain_files` with a progress bar and prints one line per image. One command
per module, like `calibrate_cmd` and `ood_cmd`; the work itself lives in `pipeline.explain`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from pipeline.cli.class_folders import answer_words, folder_words, legend_line
from pipeline.cli.common import (
    METHOD_HELP,
    _model_list,
    _open_run,
    _target_index,
    artifacts_option,
    err,
    fail,
    far_tag,
    one_line,
    pooled_part,
    progress_bar,
    report_gaps,
    report_unavailable_hints,
    run_ref,
    shown,
    warning_legend,
    warning_tags,
)
from pipeline.cli.unreadable import report_inputs, unanswered, unreadable_report
from pipeline.explain.alarm import OUTSIDE_HEAD_MESSAGE, outside_share_words
from pipeline.explain.render import (
    CAPTION_MAX_SIDE,
    CAPTION_MIN_SIDE,
    CAPTION_TEXT_PX,
    OUTLINE_FLOOR,
)
from pipeline.known_data import trained_on_sartaj
from pipeline.names import HEATMAP_ALPHA

if TYPE_CHECKING:
    from pipeline.artifacts import Run
    from pipeline.explain import Explainer
    from pipeline.explain.batch import ExplainSummary


def explain(
    images_: list[Path] = typer.Argument(..., metavar="IMAGE...",
                                         help="image files or folders (searched recursively)"),
    out: Path = typer.Option(..., "--out", help="folder for overlay PNGs and explain.json"),
    run_: str = typer.Option("latest", "--run", help="run id, run folder or 'latest'"),
    model: str = typer.Option("all", "--model", help="model of the run, comma list, or all"),
    method: str = typer.Option(None, "--method", help=METHOD_HELP + " (default: each "
                               "model's choice in the run's explain_choice.json, else gradcam)"),
    target: str = typer.Option(None, "--target", help="class to explain: its name as "
                               "shown ('no tumour') or as in files (no_tumor), any case, or "
                               "its index (default: each model's predicted class)"),
    layer: str = typer.Option(None, "--layer", help="conv layer (default: the run's chosen "
                              "layer, else its gradcam_layer); one model only"),
    alpha: float = typer.Option(HEATMAP_ALPHA, "--alpha", help="heatmap opacity 0..1"),
    outline: float = typer.Option(None, "--outline", metavar="PCT", help="a white line around "
                                  "the map's hottest PCT % of pixels (never around heat under "
                                  f"{OUTLINE_FLOOR:g} of the colour scale); the caption says so"),
    bare: bool = typer.Option(False, "--bare", help="plain overlays at the model's resolution "
                              "(its input size, head crop), for further processing; default: "
                              f"enlarged to at least {CAPTION_MIN_SIDE} px with a caption strip "
                              "(model, answer, method and class explained, colour scale, "
                              "disclaimer)"),
    size: int = typer.Option(CAPTION_MIN_SIDE, "--size", metavar="PX", help="captioned "
                             "overlays for a slide: the picture at least PX px on its shorter "
                             "side, the caption's text, colour scale and margins scaled with it "
                             f"({CAPTION_TEXT_PX} px text at {CAPTION_MIN_SIDE}; at 700, "
                             f"{round(CAPTION_TEXT_PX * 700 / CAPTION_MIN_SIDE)} px text and a "
                             "panel about 1080 px tall: two side by side fill a 1920x1080 "
                             f"slide); {CAPTION_MIN_SIDE} to {CAPTION_MAX_SIDE}; not with "
                             "--bare"),
    shard: str = typer.Option(None, "--shard", help="i/n: only every n-th file from position "
                              "i (split a large folder over n jobs, one --out each; overlay "
                              "names as in one unsharded run)"),
    artifacts_dir: Path = artifacts_option(),
) -> None:
    """Overlay PNG per image and model, plus explain.json with predictions and heatmap stats.

    Each overlay is captioned for use as it is (a slide, a report) unless
    --bare; --size makes the picture and its caption larger together.

    Files are decoded and explained 32 at a time, so folders of any size fit
    in memory; each chunk's rows are kept on disk at once, so after an
    interruption the same command continues where it stopped (files already
    done are skipped; other settings, --bare and --size among them, are
    refused)."""
    from pipeline.data.membership import Membership
    from pipeline.explain.defaults import load_explainers
    from pipeline.explain.overlay_text import own_overlays
    from pipeline.gaps import missing_checks
    from pipeline.stream import parse_shard, scan_inputs

    _check_explain_options(method, alpha, outline, size, bare)
    try:
        shard_ = parse_shard(shard) if shard else (0, 1)
    except ValueError as exc:
        fail(str(exc))
    run = _open_run(artifacts_dir, run_)
    names = _model_list(model, run.model_names, run.model_names, what="--model",
                        hint=f"run {run.run_id} has {', '.join(run.model_names)} (or all)")
    if layer is not None and len(names) != 1:
        fail("--layer names a layer of one model; pick that model with --model")
    from pipeline.data.discovery import folders_by_class

    folders = folders_by_class(run.manifest)  # "Healthy" for no_tumor: said beside it
    target_idx = _target_index(target, run.class_names, folders)
    inputs = scan_inputs(images_)
    report_inputs(inputs)
    paths = inputs.files
    if own := own_overlays(paths, out):  # a rerun over a folder holding --out: never inputs
        err.print(f"left out {len(own)} overlay(s) this command wrote into {shown(out)}",
                  highlight=False, soft_wrap=True)
        paths = [p for p in paths if p not in set(own)]
    try:  # a model that cannot be loaded, or lacks --layer, fails in one line
        explainers = load_explainers(run, names, layer, method)
    except ValueError as exc:
        fail(str(exc))
    report_gaps([e.layer_note for e in explainers.values() if e.layer_note])
    try:  # a damaged calibration.json fails here, in one line
        report_gaps(missing_checks(run, names, run_ref=run_ref(artifacts_dir, run_),
                                   knows_splits=Membership.of_run(run.path) is not None))
    except ValueError as exc:
        fail(str(exc))
    report_unavailable_hints()
    summary = _explain_with_progress(run, explainers, paths, out, method=method,
                                     target=target_idx, alpha=alpha, outline=outline,
                                     caption=not bare, size=size, shard=shard_)
    if summary.selected and not summary.images:
        fail(f"none of the {summary.selected} file(s) is a usable image; nothing to explain",
             code=1)
    errors = _listed_errors(out) if summary.errors else []
    _print_explained(summary, len(names), out, shard if shard else None, len(paths),
                     targeted=target_idx is not None, errors=errors,
                     sartaj=trained_on_sartaj(run.manifest), folders=folders,
                     run_models=len(run.model_names))
    # as before resuming existed: exit 1 whenever explain.json lists errors, but for a series'
    # blank slices, left out as predict leaves them out (`unreadable.unanswered`)
    if unanswered(errors):
        raise typer.Exit(1)


def _listed_errors(out: Path) -> list[tuple[str, str]]:
    """explain.json's errors in `out`, as (path, reason)."""
    from pipeline.artifacts import ArtifactError, read_json
    from pipeline.explain.journal import RESULT

    try:
        doc = read_json(out / RESULT)
    except ArtifactError as exc:
        fail(str(exc))
    return [(str(e.get("path")), str(e.get("error"))) for e in doc.get("errors") or []]


def _check_explain_options(method: str | None, alpha: float, outline: float | None,
                           size: int = CAPTION_MIN_SIDE, bare: bool = False) -> None:
    """Fail in one line on an unknown --method, an --alpha outside 0..1, a bad --outline, or a
    --size out of range or given with --bare (whose overlays keep the model's resolution)."""
    from pipeline.explain import METHODS

    if method is not None and method not in METHODS:
        fail(f"unknown --method {method!r}; choose one of {', '.join(METHODS)}")
    if not 0.0 <= alpha <= 1.0:
        fail(f"--alpha must be between 0 and 1, got {alpha}")
    if outline is not None and not 0 < outline <= 100:
        fail(f"--outline must be a percentage in (0, 100], got {outline}")
    if not CAPTION_MIN_SIDE <= size <= CAPTION_MAX_SIDE:
        fail(f"--size must be between {CAPTION_MIN_SIDE} and {CAPTION_MAX_SIDE} px, got {size}")
    if bare and size != CAPTION_MIN_SIDE:
        fail("--size sizes captioned overlays; --bare keeps the model's resolution: "
             "choose one")


def _explain_with_progress(run: Run, explainers: dict[str, Explainer], paths: list[Path],
                           out: Path, *, method: str | None, target: int | None, alpha: float,
                           outline: float | None, caption: bool, size: int,
                           shard: tuple[int, int]) -> ExplainSummary:
    """`explain.batch.explain_files` with a progress bar; unusable files reported one line each
    as they are met; a model's error, other settings than the earlier run's into `out` or an
    unwritable folder fail in one line; Ctrl-C says how to continue."""
    from pipeline.explain.batch import JOURNAL, explain_files

    try:
        with progress_bar() as update, unreadable_report() as report:
            return explain_files(run, explainers, paths, out, method=method, target=target,
                                 alpha=alpha, outline=outline, caption=caption, size=size,
                                 shard=shard,
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
                     n_files: int, *, targeted: bool = False,
                     errors: list[tuple[str, str]] | None = None, sartaj: bool = False,
                     folders: Mapping[str, list[str]] | None = None,
                     run_models: int = 2) -> None:
    """One tab-separated line per image explained now (each model's prediction with the
    warnings `predict` prints, its overlay, the class it explains when `targeted` (--target: not
    the prediction printed beside it), and the shortcut alarm when it fires, then in a last
    field the image's own tags: the models disagree, their default heatmaps point at different
    places, the run's split it is in), then a total with the files skipped as done; a legend
    of the warnings shown goes to stderr (in the Sartaj data's words for a run trained on it,
    `sartaj`). A class whose training folder had another name is said with it (`folders`,
    `discovery.folders_by_class`: "no_tumor (class folder: Healthy)"), with a legend line.
    `run_models`: how many models the run has, the legend's number (About's too).
    `errors`: explain.json's (path, reason), whose blank slices are counted apart from the files
    that could not be read."""
    from pipeline.data.membership import SEEN_TAGS, hides_unlike, seen_tag
    from pipeline.evaluate.flags import FLAG_LABELS, not_mri_kind, not_mri_label
    from pipeline.explain.agreement import APART_MEANING, APART_MESSAGE
    from pipeline.explain.methods import target_words
    from pipeline.names import NO_TUMOR, percent

    seen: set[str] = set()
    splits: set[str] = set()
    for row in summary.rows:
        split = row.get("in_run_split")
        own = hides_unlike(split, row.get("in_run_exact"))  # predict's rule
        parts = [f"{m}: {answer_words(v['predicted'], folders or {}, seen)} "
                 f"({percent(max(v['probs'].values()))})"
                 + warning_tags({**v, "unlike": False, "far": False} if own else v, seen)
                 + f" -> {v['overlay']}"
                 + (" (heatmap " + target_words(v.get("method", ""), v["target"],
                                                 folder_words(v["target"], folders or {}, seen))
                    + ")" if targeted else "")
                 + (f" [WARNING: {OUTSIDE_HEAD_MESSAGE}: "
                    f"{outside_share_words(v['top_outside_head'])}]"
                    if v.get("outside_head_flag") else "")
                 for m, v in row["models"].items()]
        parts += pooled_part(row, folders, seen)  # both models' answer together, as predict's
        if any(v["predicted"] == NO_TUMOR for v in row["models"].values()):
            seen.add(NO_TUMOR)  # predict's legend line: "no tumour" rules nothing out
        tags = []  # the image's own, in a last field as predict prints them
        # as predict's: a header naming another modality than MRI, else "may be CT"
        if kind := not_mri_kind(not_mri := row.get("not_mri_modality") or row.get("may_be_ct")):
            tags.append(f"[{not_mri_label(not_mri)}]")
            seen.add(kind)
        tags += far_tag(row, own)  # predict's: one model's far verdict, said of the line
        if row.get("small_image"):  # `modality.is_small`: the models saw it enlarged
            tags.append(f"[{FLAG_LABELS['small']}]")
            seen.add("small")
        if row.get("may_be_t2"):  # `pipeline.sequence`: a learnt hint
            tags.append(f"[{FLAG_LABELS['t2']}]")
            seen.add("t2")
        if row.get("agree") is False:
            tags.append(f"[{FLAG_LABELS['disagree']}]")
            seen.add("disagree")
        if row.get("peaks_apart") is not None:
            tags.append(f"[{APART_MESSAGE}]")
            seen.add("apart")
        if split in SEEN_TAGS:
            tags.append(tag := seen_tag(split, row.get("in_run_exact")))
            splits.add(tag)  # the legend explains each tag printed
        if tags:
            parts.append(" ".join(tags))
        sys.stdout.write(f"{one_line(row['path'])}\t" + "\t".join(parts) + "\n")
    where = f"shard {shard}: {summary.selected} of {n_files} file(s); " if shard else ""
    from pipeline.images import blank_failure

    blank = sum(blank_failure(r) == "slice" for _, r in errors or ())
    bad = len(errors) - blank if errors is not None else summary.errors
    unreadable = (f", {bad} unreadable" if bad else "") + (
        f", {blank} blank slice(s) left out" if blank else "")
    sys.stdout.write(f"wrote {len(summary.rows) * n_models} overlay(s) and explain.json to "
                     f"{one_line(out)} ({where}{summary.already_done} already done, skipped; "
                     f"explain.json: {summary.images} image(s){unreadable})\n")
    if line := legend_line(folders or {}, seen):
        err.print(line, highlight=False, markup=False, soft_wrap=True)
    warning_legend(seen, splits, answered=bool(summary.rows), sartaj=sartaj,
                   n_models=run_models,
                   extra=[f"[{APART_MESSAGE}]: {APART_MEANING}."] if "apart" in seen else [])
