"""Cached loading of runs and their artifact files, decoded images, and the shared page chrome.

Cache keys include a "stamp" (file modification times), so a re-evaluated or retrained run is
picked up without restarting the server. The models and the per-image results they produce are
cached in `dashboard.loader` (loaded once per process and shared by every session; `Predictor`
and `Explainer` are safe to call from several threads, which is how Streamlit runs concurrent
sessions); the Predict page's uploads across pages in `dashboard.uploads`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import core, dataset_files, error_frames, runinfo
from pipeline import names, run_files
from pipeline.artifacts import (
    ARTIFACTS_ENV,
    PROJECT_ROOT,
    ArtifactError,
    Run,
    RunInfo,
    list_runs,
    open_run,
    read_json,
    shown_path,
)
from pipeline.data.membership import FILE as MEMBERSHIP_FILE
from pipeline.data.membership import Membership
from pipeline.evaluate.predictions_file import expected_rows
from pipeline.gaps import fix_command

REPO_ROOT = Path(__file__).resolve().parents[1]
RUN_KEY = "run_choice"
DISCLAIMER = names.DISCLAIMER.replace("not a diagnostic device", "**not a diagnostic device**")
UNEXPECTED = "This page hit an unexpected problem"
GENERIC_FIX = ("Pick another run in the sidebar, or train a fresh one with "
               "`python -m pipeline run` (`make demo` does it for you).")


# --------------------------------------------------------------------------- runs


def artifacts_dir() -> Path:
    """`$BRAIN_MRI_ARTIFACTS`, else `artifacts/` in the working directory or the repository."""
    raw = os.environ.get(ARTIFACTS_ENV)
    if raw:
        return Path(raw).expanduser().resolve()
    here = Path("artifacts").resolve()
    return here if here.is_dir() else REPO_ROOT / "artifacts"


@st.cache_data(ttl=10, show_spinner=False)
def discover_runs(artifacts: str) -> list[RunInfo]:
    """Complete runs, newest first (re-scanned at most every 10 s)."""
    return list_runs(artifacts)


@st.cache_data(ttl=10, show_spinner=False)
def interrupted_note(artifacts: str) -> str | None:
    """`runinfo.interrupted_words` for the artifacts folder's interrupted runs (re-scanned at
    most every 10 s, as `discover_runs`): the run picker skips them, and nothing said they
    were there. The dashboard only names the commands; it never trains or removes."""
    from pipeline.gaps import out_arg
    from pipeline.interrupted import interrupted_runs

    return runinfo.interrupted_words(interrupted_runs(artifacts), out_arg(artifacts))


def latest_id(artifacts: Path) -> str | None:
    try:
        return (artifacts / "latest").read_text().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def run_choices(artifacts: Path) -> tuple[dict[str, Path], str | None]:
    """Run id -> folder for the picker, and the id to select by default.

    Only discovered folders are offered, so no user-typed path ever reaches the file system.
    `latest` is offered even when its run is damaged (list_runs skips those), so the viewer
    sees what is wrong with it instead of silently getting another run.
    """
    choices = {r.run_id: Path(r.path) for r in discover_runs(str(artifacts))}
    latest = latest_id(artifacts)
    if latest and latest not in choices:
        folder = artifacts / "runs" / latest
        if folder.parent == artifacts / "runs" and folder.name == latest:  # no "../" in latest
            choices = {latest: folder, **choices}
    default = latest if latest in choices else next(iter(choices), None)
    return choices, default


@st.cache_resource(max_entries=8, show_spinner=False)
def _open_run(path: str, stamp: int) -> Run:
    return open_run(path)


@st.cache_resource(max_entries=4, show_spinner=False)
def _membership(path: str, stamp: int) -> Membership | None:
    return Membership.of_run(Path(path))


def membership(run: Run) -> Membership | None:
    """Which split an image of `run` is in (`data.membership`), loaded once per run and file
    version; None for a run without split_hashes.json."""
    return _membership(str(run.path), _mtime(run.path / MEMBERSHIP_FILE))


def official_test_runs(current: Run) -> list[str]:
    """The sidebar's labels (`runinfo.run_label`) of the loaded runs other than `current` whose
    test split is the dataset's own test folder (the manifest's `splits.official_test`)."""
    out = []
    for info in discover_runs(str(artifacts_dir())):
        path = Path(info.path) / run_files.MANIFEST
        if info.run_id == current.run_id:
            continue
        try:
            manifest = _read_json(str(path), _mtime(path))
        except ArtifactError:
            continue
        if isinstance(manifest, dict) and runinfo.run_facts(manifest).splits.get("official_test"):
            out.append(runinfo.run_label(info.run_id, info.title))
    return out


def selected_run_path() -> Path | None:
    choices, default = run_choices(artifacts_dir())
    rid = st.session_state.get(RUN_KEY) or default
    return choices.get(rid) if rid else None


def current_run() -> tuple[Run | None, str | None]:
    """The selected run, or None and a message saying what is wrong and how to fix it."""
    adir = artifacts_dir()
    path = selected_run_path()
    if path is None:
        named = shown_path(adir)
        # --out as typed in a shell: the variable when it set the folder (its value is this
        # machine's absolute path, which no page shows), else relative to the project
        out = f'"${ARTIFACTS_ENV}"' if os.environ.get(ARTIFACTS_ENV) else named
        # the folder's name is the user's: code spans that nothing in it can break out of
        command = core.literal(f"python -m pipeline run --out {out}")
        return None, (f"No trained run found in the artifacts folder {core.literal(named)}. "
                      f"Train one with `make demo` or {command}, or point "
                      f"`{ARTIFACTS_ENV}` at an artifacts folder that has one.")
    try:
        return _open_run(str(path), _mtime(path / run_files.MANIFEST)), None
    except ArtifactError as exc:
        return None, f"{exc}. {GENERIC_FIX}"


def require_run() -> Run:
    """The selected run; otherwise an error box and the page stops here."""
    run, problem = current_run()
    if run is None:
        st.error(core.literal(problem), icon=":material/error:")
        st.stop()
    return run


# --------------------------------------------------------------------------- artifact files


@st.cache_data(max_entries=128, show_spinner=False)
def _read_json(path: str, stamp: int) -> Any:
    return read_json(Path(path))


def run_json(run: Run, rel: str) -> Any:
    """A run's JSON file (cached until it changes); ArtifactError if missing or damaged."""
    path = run.path / rel
    return _read_json(str(path), _mtime(path))


def section_json(run: Run, rel: str, fix: str, kind: type = dict) -> Any | None:
    """Like `run_json`, but shows a warning with `fix` in place of the section on failure."""
    try:
        obj = run_json(run, rel)
    except ArtifactError as exc:
        st.warning(f"{core.literal(exc)}. To fix: {fix}", icon=":material/warning:")
        return None
    if not isinstance(obj, kind):
        st.warning(f"damaged file {core.literal(shown_path(run.path / rel))}: expected a JSON "
                   f"{kind.__name__}, got "
                   f"{type(obj).__name__}. To fix: {fix}", icon=":material/warning:")
        return None
    return obj


def external_explanations(run: Run) -> dict[str, list[dict]]:
    """Every model's `explain-eval --data` results (`<model>/explanations-external/*.json`), by
    file name; a damaged file is named in a warning and left out."""
    out: dict[str, list[dict]] = {}
    for m in run.model_names:
        folder = run.path / m / run_files.EXPLANATIONS_EXTERNAL
        names = sorted(p.name for p in folder.glob("*.json")) if folder.is_dir() else []
        fix = f"{run_fix(run, 'explain-eval', '--data', 'DIR')} again"
        found = [section_json(run, f"{m}/{run_files.EXPLANATIONS_EXTERNAL}/{n}", fix)
                 for n in names]
        if any(found):
            out[m] = [f for f in found if f is not None]
    return out


def run_fix(run: Run, command: str, *options: str) -> str:
    """"run `python -m pipeline <command> --run <run> …`", the end of a "To fix:" sentence:
    the run named so that the command finds this folder (`gaps.fix_command`), as code."""
    return f"run {core.literal(fix_command(run, command, *options))}"


def evaluate_fix(run: Run) -> str:
    return run_fix(run, "evaluate")


def per_model_json(run: Run, rel: str, fix: str) -> dict[str, dict]:
    """`<model>/<rel>` for every model that has a readable one (warnings for the others)."""
    out = {}
    for m in run.model_names:
        obj = section_json(run, f"{m}/{rel}", fix)
        if obj is not None:
            out[m] = obj
    return out


@st.cache_data(max_entries=16, show_spinner=False)
def _read_predictions(path: str, stamp: int, classes: tuple[str, ...],
                      expected: int | None) -> pd.DataFrame:
    shown = shown_path(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ArtifactError(f"missing file {shown}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"damaged file {shown}: {exc}") from exc
    return error_frames.parse_predictions(text, classes, shown, expected)


def predictions(run: Run, fix: str) -> dict[str, pd.DataFrame]:
    out = {}
    for m in run.model_names:
        path = run.path / m / run_files.PREDICTIONS
        try:
            # the rows a whole file has: a file cut short gave counts over what was left
            expected = expected_rows(run.path, m)
            out[m] = _read_predictions(str(path), _mtime(path), tuple(run.class_names),
                                       expected)
        except ArtifactError as exc:
            st.warning(f"{core.literal(exc)}. To fix: {fix}", icon=":material/warning:")
    return out


@st.cache_data(max_entries=8, show_spinner=False)
def _box_facts(run_path: str, stamp: int, masks_dir: str | None) -> runinfo.BoxFacts:
    splits = read_json(Path(run_path) / run_files.SPLITS)
    return runinfo.box_facts(splits if isinstance(splits, dict) else {},
                             Path(masks_dir) if masks_dir else None)


def box_facts(run: Run, masks_dir: str | None) -> runinfo.BoxFacts | None:
    """What the run's tumour boxes cover (`runinfo.box_facts`), `masks_dir` as explanations.json
    records it (`runinfo.masks_folder` finds it here); cached until splits.json changes; None
    when splits.json cannot be read."""
    folder = runinfo.masks_folder(masks_dir, PROJECT_ROOT, run.data_dir)
    try:
        return _box_facts(str(run.path), _mtime(run.path / run_files.SPLITS),
                          str(folder) if folder else None)
    except ArtifactError:
        return None


def default_methods(run: Run) -> dict[str, str]:
    """Per model, the method it is explained with unless the user picks one: the run's recorded
    choice (`explain_choice.json`), else Grad-CAM. Read without loading a model."""
    from pipeline.explain.defaults import resolve_explanation  # no TensorFlow

    return {m: resolve_explanation(run, m)[0] for m in run.model_names}


@st.cache_data(max_entries=32, show_spinner=False)
def decode_cached(name: str, digest: str, _data: bytes) -> core.Upload:
    return core.decode_upload(name, _data)


@st.cache_data(max_entries=16, show_spinner=False)
def data_images(data_dir: str, rels: tuple[str, ...]) -> list[core.Upload]:
    return dataset_files.load_data_images(data_dir, rels)


# --------------------------------------------------------------------------- chrome


# The value widgets whose choice outlives a visit to another page: Streamlit drops a widget's
# state in any run that does not draw it, and a reviewer who set the method, class and layers
# on Predict found them reset after a look at About. (Buttons, uploaders and download buttons
# cannot be set; the uploads have their own keeper, `dashboard.uploads`.)
KEPT_CHOICES = ("predict_method", "predict_target", "predict_alpha", "predict_outline",
                "predict_only_flagged", "predict_page", "predict_summary_sort", "sample_class",
                "sample_count", "err_by", "err_true", "err_pred", "err_page_size", "err_page",
                "err_grid", "quality_rows")
KEPT_PREFIXES = ("predict_layer_", "predict_slice_sort_")
# Kept choices that are each run's own: the layer box starts on the run's chosen layer, so
# another run starts it afresh (`offered`). A choice of a class, model or order is kept while
# the run offers it.
RESET_ON_SWITCH = ("predict_layer_",)
_KEPT_FOR = "kept_choices_run"
_TO_RESET = "choices_to_reset"  # run-bound keys a switch of run left to reset where drawn


def keep_choices() -> None:
    """Carry the kept widgets' values into this script run (Streamlit's documented way: assign
    each key to itself before any widget is drawn), marking the run's own ones
    (`RESET_ON_SWITCH`) for a reset by `offered` after a switch of run. Call on every run,
    after the run picker."""
    run = st.session_state.get(RUN_KEY)
    switched = st.session_state.get(_KEPT_FOR, run) != run
    st.session_state[_KEPT_FOR] = run
    reset = set(st.session_state.get(_TO_RESET, ()))
    for key in list(st.session_state.keys()):
        if not (key in KEPT_CHOICES or key.startswith(KEPT_PREFIXES)):
            continue
        if switched and key.startswith(RESET_ON_SWITCH):
            reset.add(key)
        st.session_state[key] = st.session_state[key]
    st.session_state[_TO_RESET] = reset


def offered(key: str, options: Sequence[Any], default: Any) -> None:
    """Before drawing the kept select box or multiselect `key`: its value becomes `default`
    when the run does not offer it (a multiselect drops what is not offered), or after a switch
    of run for a run's own choice (`keep_choices`). By assignment: deleting the key, as this
    did before, left the browser showing the old choice while the page used the default
    (Streamlit #16388: a review found "glioma" in the box over heatmaps for the predicted
    class after a switch of run)."""
    reset = st.session_state.get(_TO_RESET, set())
    if key in reset:
        reset.discard(key)
        st.session_state[key] = default
    elif key not in st.session_state:
        return
    value = st.session_state[key]
    if isinstance(value, list):
        if any(v not in options for v in value):
            st.session_state[key] = [v for v in value if v in options]
    elif value not in options:
        st.session_state[key] = default


def sidebar() -> None:
    """Run picker and the selected run's key facts, in the sidebar of every page."""
    adir = artifacts_dir()
    choices, default = run_choices(adir)
    with st.sidebar:
        if not choices:
            st.error(f"No runs in the artifacts folder {core.literal(shown_path(adir))}.",
                     icon=":material/error:")
        else:
            ids = list(choices)
            latest = latest_id(adir)
            titles = {r.run_id: r.title for r in discover_runs(str(adir))}
            if st.session_state.get(RUN_KEY) not in ids:
                # a reload keeps the run shown: the URL names it by its label (`bind` below),
                # and a presenter's reload had silently gone back to the default run (a review)
                asked = st.query_params.get(RUN_KEY)
                named = {runinfo.run_label(r, titles.get(r)): r for r in ids}
                st.session_state[RUN_KEY] = named.get(asked, default)
            chosen = st.selectbox(
                "Run", ids, key=RUN_KEY, bind="query-params",
                # the URL leaves out the default run (Streamlit drops a default's parameter)
                index=ids.index(default) if default in ids else 0,
                format_func=lambda r: runinfo.run_label(r, titles.get(r)),
                help="Runs found in the artifacts folder, newest first: each run's title and "
                     "the end of its id. The caption below names the selected run in full and "
                     "says whether it is the latest complete run.",
            )
            # the box shows a short label (a long one was cut mid-title): the full text here
            st.caption(runinfo.run_caption(chosen, titles.get(chosen), chosen == latest))
            run, problem = current_run()
            if run is None:
                st.error(core.literal(problem), icon=":material/error:")
            else:
                facts = runinfo.run_facts(run.manifest)
                sizes = runinfo.split_sizes(facts)
                st.caption(f"{runinfo.readable_time(facts.created)} · "
                           f"{len(facts.class_names)} classes · "
                           + " / ".join(f"{k} {v}" for k, v in sizes.items()))
                for warning in facts.weights_warnings:
                    st.badge("no ImageNet weights", icon=":material/warning:", color="orange")
                    st.caption(warning)
        stopped = interrupted_note(str(adir))  # where a user choosing a run looks
        if stopped:
            st.caption(f":material/pending: {stopped}")
        st.divider()
        st.caption(":material/info: " + DISCLAIMER)


def page_disclaimer() -> None:
    """The disclaimer in the page itself, under its title. The sidebar's copy is hidden whenever
    the sidebar is collapsed, which Streamlit does by itself below about 760 px; Predict and
    About show it as a warning instead."""
    st.caption(":material/medical_information: " + DISCLAIMER)
