"""What a viewer should know about a run: manifest facts and what is missing from its folder.

Logic without Streamlit, like `dashboard.core`: the Overview and About pages and the sidebar draw
these results. Nothing here writes; `run_problems` only checks which files exist.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from dashboard.core import literal
from pipeline import run_files
from pipeline.artifacts import Run, crop_head
from pipeline.data.discovery import canonical_split, layout_name, renamed_folders
from pipeline.gaps import fix_command
from pipeline.interrupted import Interrupted
from pipeline.names import class_label, display_name


@dataclass
class Problem:
    """Something missing or damaged in a run, with how to fix it."""

    what: str
    fix: str
    severity: str = "warning"  # "error" blocks a page, "warning" hides one section


@dataclass
class RunFacts:
    run_id: str
    created: str
    data_dir: str
    data_layout: str
    n_images: Any
    binary: bool
    class_names: list[str]
    splits: dict[str, Any]
    models: dict[str, dict[str, Any]]
    weights_warnings: list[str] = field(default_factory=list)
    profile: str | None = None
    title: str | None = None  # readable run name from the manifest (older runs have none)
    data_shown: str = "?"  # the data folder as shown to viewers: never this machine's full path
    # (folder, class) of the class folders not named as their class: ("Healthy", "no_tumor")
    class_folders: list[tuple[str, str]] = field(default_factory=list)


TRANSFER_HINTS = ("mobilenet", "efficientnet", "resnet", "vgg", "densenet", "inception")


# "Training/... (test split)" read as a leak to a student: the Predict page's sample picker and
# the Error analysis page say why, for a run whose test split is drawn from the whole dataset
TEST_PATHS_NOTE = ("Test images keep the dataset's own folder names: a split of the whole dataset "
                   "draws its test images from `Training/` and `Testing/` alike.")


def test_paths_note(paths: Iterable[str]) -> str:
    """`TEST_PATHS_NOTE` in the words of the dataset's own split folders that the test images'
    paths begin with ("`train/` and `test/`"); "" when they begin with none: on a flat or
    yes/no dataset the note named folders it does not have (a review, 2026-12-06)."""
    order = {"train": 0, "val": 1, "test": 2}
    folders: dict[str, str] = {}
    for path in paths:
        top, sep, _ = str(path).partition("/")
        if sep and (split := canonical_split(top)):
            folders.setdefault(top, split)
    named = [f"`{f}/`" for f in sorted(folders, key=lambda f: (order[folders[f]], f))]
    if not named:
        return ""
    if len(named) == 1:
        return ("Test images keep the dataset's own folder names: this run drew its test "
                f"images from {named[0]}.")
    where = ", ".join(named[:-1]) + f" and {named[-1]}"
    return ("Test images keep the dataset's own folder names: a split of the whole dataset "
            f"draws its test images from {where} alike.")


def weights_status(model: str, info: Mapping[str, Any]) -> str | None:
    """'imagenet', 'none' or 'file' for a transfer model's starting weights; None otherwise.

    The manifest records `weights` as "imagenet", "imagenet:<file>", "none" or a file label.
    A model trained from scratch by design (the custom CNN) has no transfer weights to report.
    """
    if not any(h in model.lower() for h in TRANSFER_HINTS):
        return None
    w = str(info.get("weights") or "none").lower()
    if w.startswith("imagenet"):
        return "imagenet"
    if w in ("none", "null", "scratch", ""):
        return "none"
    return "file"


def run_facts(manifest: Mapping[str, Any]) -> RunFacts:
    """The manifest's facts a viewer should see, with defaults for absent optional fields."""
    data = manifest.get("data") or {}
    splits = manifest.get("splits") or {}
    models = {m: dict(info or {}) for m, info in (manifest.get("models") or {}).items()}
    warnings = []
    for m, info in models.items():
        if weights_status(m, info) == "none":
            warnings.append(f"{display_name(m)} was trained WITHOUT ImageNet weights (from "
                            "scratch): expect lower accuracy than a transfer-learned model.")
    config = manifest.get("config") or {}
    return RunFacts(
        run_id=str(manifest.get("run_id", "?")), created=str(manifest.get("created", "?")),
        data_dir=str(data.get("dir", "?")),
        data_layout=layout_name(str(data.get("layout", "?"))),  # "nickparvar" of older runs
        n_images=data.get("n_images", "?"), binary=bool(data.get("binary", False)),
        class_names=list(manifest.get("class_names") or []), splits=dict(splits),
        models=models, weights_warnings=warnings, profile=config.get("profile"),
        title=manifest.get("title"), data_shown=shown_data_dir(data),
        class_folders=renamed_folders(data.get("class_folders")),
    )


def classes_words(facts: RunFacts) -> str:
    """The run's classes as the Overview's and About's data lines list them (Markdown), each
    class folder not named as its class beside it: "glioma, meningioma, no tumour (folder
    `Healthy` → no tumour)". The student's folder names had disappeared (a review, 2026-12-06);
    a run recorded before the mapping was lists its classes alone."""
    words = ", ".join(class_label(c) for c in facts.class_names)
    if not facts.class_folders:
        return words
    pairs = ", ".join(f"{literal(f)} → {class_label(c)}" for f, c in facts.class_folders)
    return f"{words} (folder{'s' if len(facts.class_folders) > 1 else ''} {pairs})"


def shown_data_dir(data: Mapping[str, Any]) -> str:
    """The data folder relative to the project if recorded, else only its name.

    Absolute paths describe the machine that trained, and a presenter's laptop screen should
    not show them (nor do they mean anything to a viewer). A relative path that climbs to the
    file-system root (../../tmp/x for /tmp/x) is the absolute one in disguise: the same rule
    as `pipeline.artifacts.shown_path`, which can only judge paths of this machine.
    """
    rel = data.get("dir_relative")
    absolute = Path(str(data.get("dir", "?")))
    if isinstance(rel, str) and rel:
        below = tuple(part for part in Path(rel).parts if part != "..")  # relpath: ".." lead
        if not (absolute.is_absolute() and rel.startswith("..")
                and below == absolute.parts[1:]):
            return rel
    return absolute.name or "?"


def data_unreachable(data: Mapping[str, Any]) -> str:
    """Markdown: the dataset folder the run was trained on (as `shown_data_dir` names it from
    the manifest's `data`) is not reachable from this machine."""
    return (f"this run was trained on the dataset folder {literal(shown_data_dir(data))}, "
            "which is not reachable from this machine")


# A run id as `pipeline run` makes it: date-time, then a random hex suffix that tells runs apart.
RUN_ID = re.compile(r"\d{8}-\d{6}-([0-9a-f]{4,})")
TITLE_MAX = 40  # longer titles are cut in the picker (the caption under it has them in full)


def short_run_id(run_id: str) -> str:
    """The random suffix of a run id ("20261202-090129-8ee89a" -> "8ee89a"); other ids as is."""
    m = RUN_ID.fullmatch(run_id)
    return m.group(1) if m else run_id


def run_label(run_id: str, title: str | None) -> str:
    """The run picker's text: the title first, then the short id, so the selected one fits the
    sidebar's box ("latest · Reference · deduplicated split · 2026…" was cut before the title's
    end). Runs without a title show their full id; `run_caption` gives the full text."""
    if not title:
        return run_id
    if len(title) > TITLE_MAX:
        title = title[:TITLE_MAX - 1].rstrip() + "…"
    return f"{title} · {short_run_id(run_id)}"


def _markdown_text(text: str) -> str:
    """`text` with Markdown's punctuation escaped, so a title is shown as written."""
    return re.sub(r"([\\`*_{}\[\]()<>#+!|:$~-])", r"\\\1", text)


def run_caption(run_id: str, title: str | None, latest: bool) -> str:
    """The full text under the picker (Markdown): title, whether it is the latest run, full id."""
    which = "latest run" if latest else "run"
    return ((f"{_markdown_text(title)} · " if title else "") + f"{which} {literal(run_id)}")


def model_facts_frame(facts: RunFacts) -> pd.DataFrame:
    """One row per model: input size, crop, starting weights, size, training time, epochs."""
    rows = []
    for m, info in facts.models.items():
        secs = info.get("train_seconds")
        rows.append({
            "model": display_name(m),
            "image size": f"{info.get('image_size', '?')} px",
            "crop to head": "yes" if crop_head(info) else "no",
            "started from": {"imagenet": "ImageNet weights", "none": "random (no ImageNet)",
                             "file": f"weights file {info.get('weights')}",
                             None: "from scratch (by design)"}[
                                 weights_status(m, info)],
            "parameters": f"{info['params']:,}" if isinstance(info.get("params"), int) else "?",
            "training time": format_seconds(secs),
            "epochs run": info.get("epochs_run", "?"),
            "best epoch": info.get("best_epoch", "?"),
        })
    return pd.DataFrame(rows)


def model_facts_table(facts: RunFacts) -> pd.DataFrame:
    """`model_facts_frame` turned on its side, as the pages show it: one row per fact, one
    column per model. Eight facts side by side outgrew the page at 1280 px with the sidebar
    open (the last columns hidden); a column per model fits any width."""
    frame = model_facts_frame(facts)
    if frame.empty:
        return pd.DataFrame({"": []})
    table = frame.set_index("model").T.reset_index(names="")
    table.columns = [str(c) for c in table.columns]
    return table.astype(str)


def format_seconds(secs: Any) -> str:
    if not isinstance(secs, (int, float)) or math.isnan(secs):
        return "?"
    secs = float(secs)
    if secs < 90:
        return f"{secs:.0f} s"
    if secs < 5400:
        return f"{secs / 60:.1f} min"
    return f"{secs / 3600:.1f} h"


def split_sizes(facts: RunFacts) -> dict[str, Any]:
    """train/val/test image counts; a test split that is the dataset's official test folder is
    named so, once ("official test"): as "test" and "official test" the same 394 images read
    as two sets. An official count that differs from the test split's is shown beside it."""
    out = {k: facts.splits.get(k) for k in ("train", "val", "test") if k in facts.splits}
    official = facts.splits.get("official_test")
    if isinstance(official, Mapping) and official.get("n") is not None:
        if out.get("test") == official.get("n"):
            del out["test"]
        out["official test"] = official.get("n")
    return out


def interrupted_words(runs: Sequence[Interrupted], out_arg: str = "") -> str | None:
    """Markdown for the run picker: the interrupted runs (`pipeline.interrupted`: hidden
    `runs/.tmp-<id>/` folders, in no list of runs), and the commands that continue or remove
    one, `out_arg` naming the artifacts folder (`gaps.out_arg`); None when there are none. A
    run stopped before its settings were saved cannot be continued, and is said so."""
    from pipeline.interrupted import SHOWN, commands, mb_words

    if not runs:
        return None
    one = len(runs) == 1
    named = ", ".join(f"{literal(r.run_id)} ({mb_words(r.mb)}"
                      + ("" if r.resumable else ", cannot be continued") + ")"
                      for r in runs[:SHOWN])
    more = f" and {len(runs) - SHOWN} more" if len(runs) > SHOWN else ""
    resume, remove = commands(runs[0].run_id if one else "ID", out_arg)
    it = "it" if one else "one"
    cont = (f"Continue {it} in a terminal with {literal(resume)}, or remove {it} with "
            if any(r.resumable for r in runs) else f"Remove {it} in a terminal with ")
    return (f"{len(runs)} interrupted run{'' if one else 's'} not in this list: {named}{more}. "
            f"{cont}{literal(remove)}.")


EVAL_FILES = (run_files.METRICS, run_files.CONFUSION, run_files.CURVES, run_files.PREDICTIONS)


def run_problems(run: Run) -> list[Problem]:
    """Missing files of a run (by presence only; damage is reported when a file is read)."""
    evaluate, explain_eval = fix_command(run, "evaluate"), fix_command(run, "explain-eval")
    problems = []
    for m in run.model_names:
        info = run.manifest["models"].get(m) or {}
        model_file = run.path / str(info.get("file", f"{m}/model.keras"))
        if not model_file.is_file():
            problems.append(Problem(
                f"{display_name(m)}: model file {model_file.name} is missing",
                "retrain: `python -m pipeline run` (or `make demo` after deleting the run)",
                "error"))
        missing = [f for f in EVAL_FILES if not (run.path / m / f).is_file()]
        if missing:
            problems.append(Problem(
                f"{display_name(m)}: no evaluation ({', '.join(missing)} missing)",
                literal(evaluate)))
        if not (run.path / m / run_files.HISTORY).is_file():
            problems.append(Problem(f"{display_name(m)}: history.json (training curves) is missing",
                                    "it is written by training; retrain to get curves"))
        if not (run.path / m / run_files.EXPLANATIONS).is_file():
            problems.append(Problem(
                f"{display_name(m)}: explanations.json (explanation quality) is missing",
                literal(explain_eval)))
    if len(run.model_names) > 1 and not (run.path / run_files.COMPARISON).is_file():
        problems.append(Problem("comparison.json (model comparison) is missing",
                                literal(evaluate)))
    return problems


def model_file_hashes(run_path: Path, manifest: Mapping[str, Any]) -> dict[str, str]:
    """SHA-256 of each model's .keras file (as the manifest names it), read in 1 MB blocks;
    a file that cannot be read gets "unreadable" instead."""
    import hashlib

    out = {}
    for m, info in (manifest.get("models") or {}).items():
        path = Path(run_path) / str((info or {}).get("file", f"{m}/model.keras"))
        h = hashlib.sha256()
        try:
            with open(path, "rb") as fh:
                for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    h.update(block)
        except OSError:
            out[m] = "unreadable"
            continue
        out[m] = h.hexdigest()
    return out


def short_hash(digest: str) -> str:
    """The first 12 hex digits, as shown on the page (reports carry the full hash)."""
    return digest[:12]


def report_notes(run_title: str, created: str, hashes: Mapping[str, str],
                 disclaimer: str) -> dict[str, str]:
    """A CSV report's provenance, column name -> the value every row repeats: run, time, each
    model file's SHA-256 (`model_sha256_<model>`, `hashes` keyed by model or display name) and
    the disclaimer. Columns, not `# ` lines before the header: those failed `pandas.read_csv`
    as it is ("Expected 1 fields in line 6, saw 18", h64's review)."""
    return {"run": run_title, "created": created,
            **{f"model_sha256_{display_name(m).lower().replace(' ', '_')}": h
               for m, h in hashes.items()},
            "disclaimer": disclaimer}


@dataclass
class BoxFacts:
    """What a run's tumour boxes cover, for the Explanation-quality page: the test split's
    tumour images, and, when the masks folder is reachable here, the collection its boxes were
    matched to (`source`) and how many training tumour images have a box (`train_boxed`:
    (boxed, all))."""

    tumour_test: int
    source: str | None = None
    train_boxed: tuple[int, int] | None = None
    # image path -> its class in the boxes' source where that differs from its folder's
    # (`masks.box_source_classes`: the dataset's label noise the boxes reveal)
    relabelled: dict[str, str] = field(default_factory=dict)


def masks_are_boxes(masks_dir: str | None, data_dir: str | None,
                    facts: BoxFacts | None = None) -> bool:
    """Whether an explanations.json's masks (`masks_dir`, `data_dir` as it records them) are
    tumour boxes, rectangles around the lesion, rather than the tumour's own pixels (the
    synthetic phantoms' `<dataset>/masks`): the folder is the dataset's boxes folder,
    `<dataset>-boxes/masks` beside it (`explain.masks.boxes_dir`), or the `boxes.csv` beside it
    names the collection its boxes were matched to (`facts.source`)."""
    from pipeline.explain.masks import BOXES_SUFFIX  # cv2, no TensorFlow

    if facts is not None and facts.source:
        return True
    if not masks_dir or not data_dir:
        return False
    masks = PurePosixPath(masks_dir.replace("\\", "/"))
    data = PurePosixPath(data_dir.replace("\\", "/"))
    return masks.parent.name == f"{data.name}{BOXES_SUFFIX}" and bool(data.name)


def masks_folder(recorded: str | None, project: Path, data_dir: Path | None) -> Path | None:
    """The masks folder an explanations.json records (`masks_dir`, relative to the project that
    measured it) as reachable here: under this project, else the run's dataset's boxes folder
    (`explain.masks.boxes_dir`) when it ends in the same two names (a clone or a moved project
    names `../shared/...` from another place). None when neither is a folder."""
    from pipeline.explain.masks import boxes_dir  # cv2, no TensorFlow

    if not recorded:
        return None
    here = project / recorded
    if here.is_dir():
        return here
    boxes = boxes_dir(data_dir) if data_dir is not None else None
    tail = Path(recorded.replace("\\", "/")).parts[-2:]
    return boxes if boxes is not None and boxes.parts[-2:] == tail else None


def box_facts(splits: Mapping[str, Any], masks_dir: Path | None) -> BoxFacts:
    """`BoxFacts` from a run's splits.json records and its explanations' masks folder.

    The source is read from the `boxes.csv` beside the masks: the Sartaj boxes name each box's
    figshare original (`figshare_class`; the boxes' README: every box is a figshare match).
    Folders without that file give no source: the page then claims nothing about one.
    """
    from pipeline.explain.masks import box_source_classes, find_mask  # cv2, no TensorFlow
    from pipeline.names import NO_TUMOR

    def tumours(split: str) -> list[dict]:
        return [r for r in splits.get(split) or [] if isinstance(r, dict)
                and r.get("label") not in (None, NO_TUMOR) and isinstance(r.get("path"), str)]

    facts = BoxFacts(tumour_test=len(tumours("test")))
    if masks_dir is None or not masks_dir.is_dir():
        return facts
    table = masks_dir.parent / "boxes.csv"
    if table.is_file():
        with table.open(encoding="utf-8") as fh:
            if "figshare_class" in fh.readline().strip().split(","):
                facts.source = "figshare"
        facts.relabelled = box_source_classes(masks_dir)
    train = tumours("train")
    if facts.source and train:
        boxed = sum(find_mask(masks_dir, r["path"]) is not None for r in train)
        facts.train_boxed = (boxed, len(train))
    return facts


MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def readable_time(iso: str) -> str:
    """An ISO timestamp as people read it ("2 Dec 2026, 09:53 UTC", in UTC whatever its offset;
    no zone for a time without one); anything else unchanged. Month names are English whatever
    the server's locale (no strftime %b)."""
    from datetime import datetime, timezone

    try:
        t = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return iso
    if t.tzinfo is not None:
        t = t.astimezone(timezone.utc)
    return (f"{t.day} {MONTHS[t.month - 1]} {t.year}, {t.hour:02d}:{t.minute:02d}"
            + (" UTC" if t.tzinfo is not None else ""))
