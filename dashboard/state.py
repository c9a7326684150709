"""Cached loading of runs, artifacts, models and explanations, plus the shared page chrome.

All Streamlit caching lives here. Cache keys include a "stamp" (file modification times), so a
re-evaluated or retrained run is picked up without restarting the server. Models are loaded once
per process (`st.cache_resource`) and shared by every session; `Predictor` and `Explainer` are
safe to call from several threads, which is how Streamlit runs concurrent sessions.
"""

from __future__ import annotations

import gc
import os
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import core, runinfo
from pipeline.artifacts import ArtifactError, Run, RunInfo, list_runs, open_run, read_json
from pipeline.names import display_name

ARTIFACTS_ENV = "BRAIN_MRI_ARTIFACTS"
REPO_ROOT = Path(__file__).resolve().parents[1]
RUN_KEY = "run_choice"
DISCLAIMER = ("Research and teaching tool: **not a diagnostic device**. Predictions and heatmaps "
              "must never be used for clinical decisions.")
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


def selected_run_path() -> Path | None:
    choices, default = run_choices(artifacts_dir())
    rid = st.session_state.get(RUN_KEY) or default
    return choices.get(rid) if rid else None


def current_run() -> tuple[Run | None, str | None]:
    """The selected run, or None and a message saying what is wrong and how to fix it."""
    adir = artifacts_dir()
    path = selected_run_path()
    if path is None:
        return None, (f"No trained run found in `{adir}`. Train one with `make demo` or "
                      f"`python -m pipeline run --out {adir}`, or point `{ARTIFACTS_ENV}` at "
                      "an artifacts folder that has one.")
    try:
        return _open_run(str(path), _mtime(path / "manifest.json")), None
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
        st.warning(f"damaged file {core.literal(run.path / rel)}: expected a JSON "
                   f"{kind.__name__}, got "
                   f"{type(obj).__name__}. To fix: {fix}", icon=":material/warning:")
        return None
    return obj


def evaluate_fix(run: Run) -> str:
    return f"run `python -m pipeline evaluate --run {run.run_id}`"


def per_model_json(run: Run, rel: str, fix: str) -> dict[str, dict]:
    """`<model>/<rel>` for every model that has a readable one (warnings for the others)."""
    out = {}
    for m in run.model_names:
        obj = section_json(run, f"{m}/{rel}", fix)
        if obj is not None:
            out[m] = obj
    return out


@st.cache_data(max_entries=16, show_spinner=False)
def _read_predictions(path: str, stamp: int, classes: tuple[str, ...]) -> pd.DataFrame:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ArtifactError(f"missing file {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"damaged file {path}: {exc}") from exc
    return core.parse_predictions(text, classes, path)


def predictions(run: Run, fix: str) -> dict[str, pd.DataFrame]:
    out = {}
    for m in run.model_names:
        path = run.path / m / "predictions.csv"
        try:
            out[m] = _read_predictions(str(path), _mtime(path), tuple(run.class_names))
        except ArtifactError as exc:
            st.warning(f"{core.literal(exc)}. To fix: {fix}", icon=":material/warning:")
    return out


# --------------------------------------------------------------------------- models


def _models_stamp(run: Run) -> int:
    stamps = [_mtime(run.path / "manifest.json")]
    for m in run.model_names:
        info = run.manifest["models"].get(m) or {}
        stamps.append(_mtime(run.path / str(info.get("file", f"{m}/model.keras"))))
    return hash(tuple(stamps))


def _build_models(path: str) -> tuple[Any, Any, dict[str, str]]:
    """(Predictor, {model: Explainer}, {model: why it failed}) for a run, shared by sessions."""
    # Imported here: TensorFlow takes seconds to import and pages without models never need it.
    from pipeline.explain import Explainer
    from pipeline.explain.choice import default_explanation
    from pipeline.predict import Predictor

    run = open_run(path)
    failures: dict[str, str] = {}
    try:
        predictor = Predictor(run)
    except ArtifactError:
        # Find which model is broken (missing, damaged, or unlike its manifest entry) so the
        # others still work. Costs extra loads, but only for a damaged run.
        good = []
        for m in run.model_names:
            try:
                Predictor(run, models=[m])
                good.append(m)
            except ArtifactError as exc:
                failures[m] = str(exc)
        if not good:
            return None, {}, failures
        predictor = Predictor(run, models=good)
    explainers = {}
    for m, model in predictor.models.items():
        # the run's recorded default (explain_choice.json), else Grad-CAM at gradcam_layer
        method, layer = default_explanation(
            run.path, m, (run.manifest["models"].get(m) or {}).get("gradcam_layer"))
        try:
            explainers[m] = Explainer(model, layer=layer, method=method)
        except ValueError:
            # A recorded layer that no longer exists: fall back to the explainer's own default.
            explainers[m] = Explainer(model)
        # Trace the compiled Grad-CAM graph now, inside the one-time loading spinner, so the
        # first upload of every session is as fast as the next ones.
        side = predictor.image_size(m)
        blank = np.zeros((1, side, side, 3), np.float32)
        explainers[m](blank, method="gradcam")
        # likewise the out-of-distribution score (its feature extractor is traced on first use)
        # and the calibration and weak-answer thresholds every upload reads
        predictor.unlike_training(m, blank)
        predictor.apply_calibration(m, np.full((1, len(run.class_names)), 1 / len(
            run.class_names), np.float32))
        predictor.low_confidence_below(m)
    return predictor, explainers, failures


@st.cache_data(max_entries=4, show_spinner=False)
def _model_hashes(path: str, stamp: int) -> dict[str, str]:
    return runinfo.model_file_hashes(Path(path), open_run(path).manifest)


def model_hashes(run: Run) -> dict[str, str]:
    """Display name -> SHA-256 of the model's .keras file; hashed once per run and model files
    (the cache key has their modification times), not per image."""
    hashes = _model_hashes(str(run.path), _models_stamp(run))
    return {display_name(m): h for m, h in hashes.items()}


class ModelLoader:
    """Loads one run's models in a background thread, and keeps only the run asked for last.

    `request` starts loading (the app calls it on every page, so the models are usually ready
    before the first visit to Predict); asking for another run drops the previous run's models
    first, so the server never holds two runs' models (peak memory). Sessions viewing different
    runs at once take turns loading them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[str, int] | None = None
        self._future: Future | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load-models")

    def request(self, path: str, stamp: int, start: bool = True) -> Future | None:
        """The future (Predictor, explainers, failures) of run `path` with models `stamp`;
        None if they are not being loaded and `start` is False."""
        with self._lock:
            if self._key != (path, stamp) or self._future is None:
                if not start:
                    return None
                if self._future is not None:
                    self._future.cancel()
                    self._future = None
                    gc.collect()  # the other run's models go before these are loaded
                self._key = (path, stamp)
                self._future = self._pool.submit(_build_models, path)
            return self._future


@st.cache_resource(show_spinner=False)
def model_loader() -> ModelLoader:
    """The process-wide model loader (one per server)."""
    return ModelLoader()


def preload_models() -> None:
    """Start loading the selected run's models in the background (cheap when already done)."""
    path = selected_run_path()
    if path is None:
        return
    try:
        run = _open_run(str(path), _mtime(path / "manifest.json"))
    except ArtifactError:
        return
    model_loader().request(str(run.path), _models_stamp(run))


def models_ready(run: Run) -> bool:
    """Whether `run`'s models are loaded (or failed to load), i.e. `models` will not wait."""
    return model_loader().request(str(run.path), _models_stamp(run)).done()


@st.fragment(run_every=0.5)
def models_loading_note(run: Run) -> None:
    """A caption while `run`'s models load in the background; once they are ready, the page
    reruns (so the layer choices appear and uploads need not wait)."""
    if models_ready(run):
        st.rerun()
    st.caption("Loading the models in the background…", help="Upload now: the page waits "
               "for them only when there is something to explain.")


def shifted_accuracy(run: Run) -> dict[str, float | None]:
    """Per model, its mean accuracy over the robustness benchmark's middle severity
    (`robustness.json`); {} when the run has none."""
    path = run.path / "robustness.json"
    if not path.is_file():
        return {}
    try:
        report = run_json(run, "robustness.json")
    except ArtifactError:
        return {}
    return core.middle_severity_accuracy(report)


def models(run: Run, wait: bool = True) -> tuple[Any, dict[str, Any] | None]:
    """Predictor and explainers of the run's loadable models; errors shown for broken ones.

    With `wait=False`, (None, None) while they are still loading in the background."""
    future = model_loader().request(str(run.path), _models_stamp(run), start=wait)
    if future is None or not future.done():
        if not wait:
            return None, None  # loading, or about to start (app.py, once the page is drawn)
        with st.spinner("Loading the models (once per server)…"):
            future.result()
    predictor, explainers, failures = future.result()
    for m, why in failures.items():
        st.error(f"{display_name(m)} cannot be used: {core.literal(why)}. To fix: retrain the run "
                 "(`python -m pipeline run`) or pick another run.", icon=":material/error:")
    return predictor, explainers


def run_key(run: Run) -> str:
    return f"{run.path}@{_models_stamp(run)}"


class ResultStore:
    """A bounded, thread-safe LRU of per-image results shared by all sessions.

    Hand-written because `st.cache_data` caches whole calls: adding one image to a batch would
    recompute every image. Keyed per image, only new images are explained, in one batch call.
    """

    def __init__(self, max_items: int = 512) -> None:
        self.max_items = max_items
        self._items: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> Any | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


@st.cache_resource(show_spinner=False)
def result_store() -> ResultStore:
    """The process-wide store of explained images (one per server)."""
    return ResultStore()


@st.cache_data(max_entries=32, show_spinner=False)
def decode_cached(name: str, digest: str, _data: bytes) -> core.Upload:
    return core.decode_upload(name, _data)


@st.cache_data(max_entries=16, show_spinner=False)
def data_images(data_dir: str, rels: tuple[str, ...]) -> list[core.Upload]:
    return core.load_data_images(data_dir, rels)


# --------------------------------------------------------------------------- chrome


def sidebar() -> None:
    """Run picker and the selected run's key facts, in the sidebar of every page."""
    adir = artifacts_dir()
    choices, default = run_choices(adir)
    with st.sidebar:
        if not choices:
            st.error(f"No runs in {core.literal(adir)}.", icon=":material/error:")
        else:
            ids = list(choices)
            latest = latest_id(adir)
            if st.session_state.get(RUN_KEY) not in ids:
                st.session_state[RUN_KEY] = default
            titles = {r.run_id: r.title for r in discover_runs(str(adir))}
            st.selectbox(
                "Run", ids, key=RUN_KEY,
                format_func=lambda r: runinfo.run_label(r, titles.get(r), r == latest),
                help="Runs found in the artifacts folder; `latest` marks the newest complete "
                     "run.",
            )
            run, problem = current_run()
            if run is None:
                st.error(core.literal(problem), icon=":material/error:")
            else:
                facts = runinfo.run_facts(run.manifest)
                sizes = runinfo.split_sizes(facts)
                st.caption(f"{facts.created[:16].replace('T', ' ')} · "
                           f"{len(facts.class_names)} classes · "
                           + " / ".join(f"{k} {v}" for k, v in sizes.items()))
                for warning in facts.weights_warnings:
                    st.badge("no ImageNet weights", icon=":material/warning:", color="orange")
                    st.caption(warning)
        st.divider()
        st.caption(":material/info: " + DISCLAIMER)


# --------------------------------------------------------------------------- uploads lost


UPLOADS_PARAM = "uploads"  # in the tab's URL: how many files this page had uploaded


def uploader_key() -> str:
    """The uploader's key; a fresh one once uploads were lost, so the stale file chips go."""
    return "uploads-again" if st.session_state.get("uploads_lost") else "uploads"


def note_uploads(n_files: int) -> None:
    """Keep the number of uploads in the URL, to notice when a new server session lost them.

    Uploads live in the server's memory only. After a server restart (or a reload) the browser
    still shows the old file chips, but the new session has no files: the URL says there were
    some while this session never saw any, so the page reruns with a fresh uploader and says so.
    """
    if n_files:
        st.session_state["uploads_seen"] = True
        st.session_state.pop("uploads_lost", None)
        st.query_params[UPLOADS_PARAM] = str(n_files)
    elif st.query_params.get(UPLOADS_PARAM):
        del st.query_params[UPLOADS_PARAM]
        if not st.session_state.get("uploads_seen"):
            st.session_state["uploads_lost"] = True
            st.rerun()


def uploads_lost() -> bool:
    return bool(st.session_state.get("uploads_lost"))
