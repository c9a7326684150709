"""A run's models, loaded once per server in a background thread, and their per-image results.

`ModelLoader` keeps one run's models (Predictor and one Explainer per model) at a time: the app
asks for the selected run's at the end of every page's run (`preload_models`), so they are
usually ready before the first visit to Predict, and the Predict page waits for them (`models`)
only once there is something to explain. The first load in a server starts after a short
grace (`FIRST_LOAD_GRACE_S`), so TensorFlow's import does not hold up the browser fetching the
first page's scripts; an upload waiting for the models ends it. Loading ends with a warm-up:
one synthetic image goes through the same computation as an upload (`inference.warm_up`: each
model's own default method and layer, the out-of-distribution score, the shortcut measure), so
no session's first upload pays for tracing TensorFlow graphs. `ResultStore` keeps per-image
results shared by every session.
Caching of files and runs is in `dashboard.state`.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import streamlit as st

from dashboard import core, runinfo
from dashboard.state import _mtime, _open_run, selected_run_path
from pipeline import run_files, sequence
from pipeline.artifacts import ArtifactError, Run, open_run
from pipeline.evaluate.flags import FLAG_LABELS
from pipeline.names import display_name

log = logging.getLogger("dashboard.loader")

def keep_keras_session() -> None:
    """Stop Streamlit from clearing Keras' session at the end of every script run.

    Streamlit's script runner calls `keras.backend.clear_session()` after each run of any page
    once Keras is imported (for apps that build models in the script). Here the models are built
    once, in a background thread, and shared by every session, so that call only costs: its
    `gc.collect()` holds the interpreter for about a second once TensorFlow is loaded (the
    page's images and messages wait for it, after every upload, every widget change and every
    0.5 s while the models load), it clears TensorFlow's kernel cache, and it resets Keras'
    global state while the loader thread may be building models. Idempotent; matplotlib
    figures are still closed as Streamlit does.
    """
    from streamlit.runtime.scriptrunner import script_runner

    current = getattr(script_runner, "_clean_problem_modules", None)
    if current is None or getattr(current, "keeps_keras", False):
        return  # another Streamlit version (the test of this function will say so), or done

    def clean_problem_modules() -> None:
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:
            pyplot.close("all")

    clean_problem_modules.keeps_keras = True  # type: ignore[attr-defined]
    script_runner._clean_problem_modules = clean_problem_modules


def models_stamp(run: Run) -> int:
    """Changes whenever the run's manifest, one of its model files or one of their OOD scores
    changes: a refit (`python -m pipeline ood`) kept serving the old score until a restart,
    while the page's missing-check warning, read afresh, said it was fixed (a review)."""
    stamps = [_mtime(run.path / run_files.MANIFEST)]
    for m in run.model_names:
        info = run.manifest["models"].get(m) or {}
        stamps.append(_mtime(run.path / str(info.get("file", f"{m}/model.keras"))))
        stamps.append(_mtime(run.path / m / run_files.OOD_SCORE))
    return hash(tuple(stamps))


def build_models(path: str, warm: bool = True) -> tuple[Any, Any, dict[str, str]]:
    """(Predictor, {model: Explainer}, {model: why it failed}) for a run, shared by sessions.

    Each Explainer's default is the model's own recorded choice (`explain_choice.json`), else
    Grad-CAM at the manifest's layer. With `warm`, every model then explains one synthetic image
    the way an upload is explained, so the graphs an upload needs are traced here, off the page.
    """
    # Imported here: TensorFlow takes seconds to import and pages without models never need it.
    from pipeline.explain.defaults import explainer_for
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
    # the rule `explain` follows; a recorded layer the model lacks falls back, with a note
    explainers = {m: explainer_for(run, m, model) for m, model in predictor.models.items()}
    if warm:
        from dashboard import inference  # imports this module: not at the top

        try:
            inference.warm_up(run, predictor, explainers)
        except Exception:  # the models work without it; the first upload waits
            log.exception("warm-up of run %s failed; the models are used without it", path)
    return predictor, explainers, failures


def load_models(path: str) -> tuple[Any, Any, dict[str, str]]:
    """`build_models`, but an unexpected error becomes a failure of every model (shown on the
    page in one line, traceback in the server log) instead of an exception on every page."""
    try:
        return build_models(path)
    except Exception as exc:  # a bug or a broken install; the page must still draw
        log.exception("loading the models of run %s failed", path)
        try:
            names = open_run(path).model_names
        except ArtifactError:
            names = ["the models"]
        why = f"loading failed ({type(exc).__name__}: {exc}; details in the server log)"
        return None, {}, dict.fromkeys(names, why)


@st.cache_data(max_entries=4, show_spinner=False)
def _model_hashes(path: str, stamp: int) -> dict[str, str]:
    return runinfo.model_file_hashes(Path(path), open_run(path).manifest)


def model_hashes(run: Run) -> dict[str, str]:
    """Display name -> SHA-256 of the model's .keras file; hashed once per run and model files
    (the cache key has their modification times), not per image."""
    hashes = _model_hashes(str(run.path), models_stamp(run))
    return {display_name(m): h for m, h in hashes.items()}


# Before TensorFlow's first import in this server, the loader waits this long: a fresh
# browser fetches the scripts of the page's widgets (file uploader, select boxes, plotly...) from
# this server just after the page's first run, and TensorFlow's import holds the interpreter for
# up to half a second at a time (about 1.3 s in all), so those requests waited behind it
# (first visit to Predict 3.3-4.7 s measured, 2.6 s with the import started after the page's
# scripts). `ModelLoader.hurry` (an upload waiting for the models) ends the grace at once.
FIRST_LOAD_GRACE_S = 1.5


def tensorflow_imported() -> bool:
    """Whether this process has imported TensorFlow (the loads after the first need no grace)."""
    return "tensorflow" in sys.modules


class ModelLoader:
    """Loads one run's models in a background thread, and keeps only the run asked for last.

    `request` starts loading (the app calls it on every page, so the models are usually ready
    before the first visit to Predict); asking for another run drops the previous run's models
    first, so the server never holds two runs' models (peak memory). Sessions viewing different
    runs at once take turns loading them.
    """

    def __init__(self, grace_s: float = FIRST_LOAD_GRACE_S) -> None:
        self._lock = threading.Lock()
        self._key: tuple[str, int] | None = None
        self._future: Future | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load-models")
        self._grace_s = grace_s
        self._hurry = threading.Event()

    def _load(self, path: str) -> tuple[Any, Any, dict[str, str]]:
        """`load_models`, after the first-load grace (`FIRST_LOAD_GRACE_S`) while TensorFlow is
        not imported yet, cut short by `hurry`."""
        if not tensorflow_imported():
            self._hurry.wait(self._grace_s)
        return load_models(path)

    def hurry(self) -> None:
        """Someone is waiting for the models (an upload to explain): no more grace."""
        self._hurry.set()

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
                self._future = self._pool.submit(self._load, path)
            return self._future


@st.cache_resource(show_spinner=False)
def model_loader() -> ModelLoader:
    """The process-wide model loader (one per server)."""
    return ModelLoader()


def _selected_run() -> Run | None:
    path = selected_run_path()
    if path is None:
        return None
    try:
        return _open_run(str(path), _mtime(path / run_files.MANIFEST))
    except ArtifactError:
        return None


def preload_models() -> None:
    """Start loading the selected run's models in the background (cheap when already done)."""
    run = _selected_run()
    if run is not None:
        model_loader().request(str(run.path), models_stamp(run))


# How long the first load takes, said while it runs: a presenter waited 21-28 s with no idea how
# long (a review, 2026-12-06, on a 2-core machine shared with other work; 8.6-12.7 s measured on
# a quieter one, 2026-12-06: mostly the TensorFlow import, the model files and a warm-up trace)
LOAD_TIME_WORDS = "usually 10-30 s on a 2-core machine"
LOADING_NOTE = f"Loading the models in the background ({LOAD_TIME_WORDS}, once per run)…"


def wait_for_models(run: Run, note: Any = None) -> None:
    """Last thing on a page with nothing to explain yet: a caption while `run`'s models load
    (started here if needed), then one rerun so the layer choices appear. `note`: where the
    caption goes, a placeholder (`st.empty()`) near the page's top; at the page's end it sat
    below a laptop's screen (a presenter's review: 20 s with no visible sign at 1366×768).

    Everything above is already drawn and usable while this waits: an upload or a click stops
    the wait, because every caption written here is a point where Streamlit ends the run for the
    new one. No timer fragment (a fragment rerun on a timer): a timer fragment that goes away,
    as this note must, now and then left the browser with a blank page (seen in CI with
    Streamlit 1.67), so the loading is started without one too (app.py).
    """
    from concurrent.futures import TimeoutError as FutureTimeout

    future = model_loader().request(str(run.path), models_stamp(run))
    note = note if note is not None else st.empty()
    while not future.done():
        note.caption(":material/hourglass_top: " + LOADING_NOTE, help="Upload now: the page "
                     "waits for them only when there is something to explain.")
        try:
            future.result(timeout=0.5)
        except FutureTimeout:
            continue
    st.rerun()


def models(run: Run, wait: bool = True) -> tuple[Any, dict[str, Any] | None]:
    """Predictor and explainers of the run's loadable models; errors shown for broken ones.

    With `wait=False`, (None, None) while they are still loading in the background."""
    future = model_loader().request(str(run.path), models_stamp(run), start=wait)
    if future is None or not future.done():
        if not wait:
            return None, None  # loading, or about to start (app.py, once the page is drawn)
        model_loader().hurry()  # an upload waits: no first-load grace
        # not "once per server": one run's models are kept, so each switch of run loads again
        with st.spinner(f"Loading this run's models ({LOAD_TIME_WORDS}; one run's are kept "
                        "in memory at a time, so a switch of run loads them again)…",
                        show_time=True):
            future.result()
    predictor, explainers, failures = future.result()
    for m, why in failures.items():
        st.error(f"{display_name(m)} cannot be used: {core.literal(why)}. To fix: retrain the run "
                 "(`python -m pipeline run`) or pick another run.", icon=":material/error:")
    for explainer in (explainers or {}).values():
        if explainer.layer_note:  # the recorded layer is gone: say which one is explained
            st.warning(f"{core.literal(explainer.layer_note)}.", icon=":material/warning:")
    if predictor is not None:
        gaps = predictor.missing_checks()
        if gaps:  # a missing run file used to drop its warning from every card silently
            st.warning("This run's answers go without some checks:\n"
                       + "\n".join(f"- {g.what}; {core.literal(g.command)} adds it"
                                    for g in gaps), icon=":material/warning:")
        if why := sequence.unavailable():  # its silence must not read as "T1"
            st.warning(f"No card says \"{FLAG_LABELS['t2']}\": {core.literal(why)}.",
                       icon=":material/warning:")
    return predictor, explainers


def run_key(run: Run) -> str:
    return f"{run.path}@{models_stamp(run)}"


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
