"""Dataset commands: `audit` (counts, unreadable files, duplicates, leakage) and `synth`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from pipeline.cli.common import (
    _existing_dir,
    as_given,
    err,
    fail,
    print_json,
    progress_bar,
    shown,
)
from pipeline.synth.dataset import MAX_PER_CLASS, MAX_SIZE, MIN_SIZE, PER_CLASS


def audit(
    data_dir: Path = typer.Argument(..., help="Dataset folder (Kaggle, Nickparvar, flat, yes/no)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Count images; find unreadable files, exact/near duplicates, leakage, label conflicts."""
    from pipeline.data import DatasetError, discover
    from pipeline.data import audit as run_audit

    _existing_dir(data_dir, "data folder")
    try:
        ds = discover(data_dir)
        with progress_bar(bar=err.is_terminal) as update:
            report = run_audit(ds, progress=update)
    except DatasetError as exc:  # e.g. no images yet: an interrupted synth says why
        from pipeline.synth import interrupted_note

        note = interrupted_note(data_dir)
        fail(f"{exc}; the folder holds {note}" if note else str(exc))
    if as_json:  # the folder as given, as the tables head it: not this machine's absolute path
        print_json({**report, "root": str(data_dir)})
    else:
        _print_audit(report, data_dir)


def _print_audit(r: dict, given: Path) -> None:
    """The audit report as tables: images per split and class, sizes, unreadable files (first
    20), duplicate and leakage counts with a few examples; headed by the folder as the user
    gave it (`given`: the report's root is this machine's absolute path)."""
    from rich.table import Table

    from pipeline.data import class_folders_note, ignored_note, patient_note

    out = Console(highlight=False)
    out.print(f"[bold]{shown(as_given(given))}[/]: layout {r['layout']}, {r['n_images']} images, "
              f"classes {', '.join(r['classes'])}")
    if note := class_folders_note(r.get("class_folders")):  # the user's folder names, not lost
        out.print(shown(note), soft_wrap=True)
    if note := ignored_note(r.get("ignored_folders") or []):
        out.print(f"[yellow]{shown(note)}[/]", soft_wrap=True)
    if r.get("interrupted_synth"):
        out.print(f"[yellow]warning:[/] the folder holds {shown(r['interrupted_synth'])}",
                  soft_wrap=True)
    if r.get("untrainable"):
        out.print(f"[yellow]train would refuse it:[/] {shown(r['untrainable'])}", soft_wrap=True)
    if r.get("patient_folders"):
        out.print(shown(patient_note(r["patient_folders"], r["patient_examples"][0])),
                  soft_wrap=True)
    counts = Table(title="Images per split and class")
    counts.add_column("split")
    for c in r["classes"]:
        counts.add_column(c, justify="right")
    counts.add_column("total", justify="right")
    for split, row in r["counts"].items():
        counts.add_row(split, *(str(row.get(c, 0)) for c in r["classes"]), str(sum(row.values())))
    out.print(counts)
    sizes = ", ".join(f"{s['size']} ({s['count']})" for s in r["sizes"][:5])
    out.print(f"sizes: {r['n_distinct_sizes']} distinct; most common {sizes}")
    out.print("modes: " + ", ".join(f"{m} ({n})" for m, n in r["modes"].items()))
    _print_size_cue(out, r["size_cue"])
    bad = r["unreadable"]
    out.print(f"unreadable: {len(bad)}" + ("" if bad else " ✓"))
    for rel in bad[:20]:
        reason = _reason_without_name(rel, r["unreadable_reasons"][rel])
        out.print(f"  [red]✗[/] {shown(rel)}: {shown(reason)}", soft_wrap=True)
    if len(bad) > 20:
        out.print(f"  … and {len(bad) - 20} more (see --json)")
    dup = Table(title="Duplicates")
    dup.add_column("check")
    dup.add_column("found", justify="right")
    # the split rows only for data with its own training and test folders: on a flat or
    # yes/no folder they counted 0 copies across splits it does not have (a review, 2026-12-06)
    split = {"train", "test"} <= set(r["counts"])
    dup.add_row("exact duplicate groups (same bytes)", str(r["exact_duplicate_groups"]))
    if split:
        dup.add_row("  of which span Training/Testing", str(r["cross_split_duplicate_groups"]))
        dup.add_row("test images with an exact copy in training",
                    str(r["cross_split_duplicates"]))
    dup.add_row("exact groups spanning classes (label conflicts)",
                str(r["cross_class_duplicates"]))
    dup.add_row("near-duplicate groups", str(r["near_duplicate_groups"]))
    if split:
        dup.add_row("test images with an exact or near copy in training",
                    str(r["cross_split_near_duplicates"]))
    dup.add_row("near-duplicate groups spanning classes",
                str(r["cross_class_near_duplicate_groups"]))
    dup.add_row("largest duplicate group", str(r["largest_duplicate_group"]))
    out.print(dup)
    out.print(f"near duplicates: {r['near_duplicate_method']}")
    for kind in ("cross_split", "cross_class"):
        for group in r["examples"][kind][:3]:
            out.print(f"  e.g. {kind.replace('_', '-')}: " + " = ".join(map(shown, group[:4])))
    out.print(f"done in {r['seconds']} s")


def _print_size_cue(out: Console, cue: dict) -> None:
    """One line per label set: how well pixel size alone predicts the label, and a warning."""
    for key, what, apart in (("classes", "the class", "the classes"),
                             ("tumour_vs_no_tumour", "tumour vs no tumour",
                              "tumour and no-tumour images")):
        c = cue.get(key)
        if not c:
            continue
        out.print(f"pixel size alone predicts {what}: balanced accuracy "
                  f"{c['balanced_accuracy']:.2f} (chance {c['chance']:.2f}; accuracy "
                  f"{c['accuracy']:.2f}, always the commonest {c['majority_accuracy']:.2f})")
        if c["warn"]:
            out.print(f"  [yellow]warning:[/] image size tells {apart} apart: the images "
                      "probably come from different sources, and a model can learn the source "
                      "instead of the anatomy. Judge models on another source (shift "
                      "validation: train --official-test).")


def _reason_without_name(rel: str, reason: str) -> str:
    """An unreadable file's reason without its leading "<file name>: ".

    Reasons start with the bare file name; the audit prints the relative path instead, which
    tells same-named files apart.
    """
    name = rel.rsplit("/", 1)[-1]
    return reason[len(name) + 2:] if reason.startswith(f"{name}: ") else reason


def synth(
    out_dir: Path = typer.Argument(..., help="Folder to create (Training/, Testing/, masks/)."),
    # as `run`'s (one home: synth.PER_CLASS); it was required here and 150 there (a review)
    per_class: int = typer.Option(PER_CLASS, "--per-class",
                                  help=f"Images per class (train + test), 1 to "
                                  f"{MAX_PER_CLASS}."),
    size: int = typer.Option(256, "--size", help=f"Image side in pixels ({MIN_SIZE} to "
                             f"{MAX_SIZE})."),
    seed: int = typer.Option(0, "--seed", help="Same seed -> byte-identical images."),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Share put in Testing/."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a previous synth output."),
    marker: bool = typer.Option(False, "--marker", help="Plant a class-coded square in a corner "
                                "outside the head (a shortcut, to test the shortcut alarm)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Write synthetic axial MRI phantoms (4 classes) with a ground-truth tumour mask per image."""
    from pipeline.synth import SynthError, generate

    if not 1 <= per_class <= MAX_PER_CLASS:  # a billion grew memory for minutes, silently
        fail(f"--per-class must be 1 to {MAX_PER_CLASS}, got {per_class}")
    if not MIN_SIZE <= size <= MAX_SIZE:
        fail(f"--size must be {MIN_SIZE} to {MAX_SIZE}, got {size}")
    if not 0 <= test_fraction < 1:  # the library's message names its Python argument
        fail(f"--test-fraction must be at least 0 and below 1, got {test_fraction}")
    from pipeline.artifacts import ArtifactError, ensure_writable

    try:
        if not (out_dir.exists() and not out_dir.is_dir()):  # that case has its own message
            ensure_writable(out_dir, "output folder")  # a read-only place: one line, up front
        with progress_bar(enabled=not quiet) as update:
            summary = generate(out_dir, per_class, size=size, seed=seed,
                               test_fraction=test_fraction, progress=update, overwrite=overwrite,
                               marker=marker)
    except (SynthError, ArtifactError) as exc:
        fail(str(exc))
    n_train = sum(summary["counts"]["Training"].values())
    n_test = sum(summary["counts"]["Testing"].values())
    typer.echo(f"wrote {summary['n_images']} phantoms ({n_train} train, {n_test} test, "
               f"{size}px, seed {seed}{', with the shortcut marker' if marker else ''}) with masks "
               f"to {out_dir}")
