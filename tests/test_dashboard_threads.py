"""Several sessions at once: shared cached models must give every caller its own right answer."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from dashboard import loader as dash_loader
from pipeline.artifacts import open_run
from pipeline.images import read_image

pytestmark = pytest.mark.slow


def _test_paths(smoke_run: Path, n: int) -> list[Path]:
    manifest = json.loads((smoke_run / "manifest.json").read_text())
    test = json.loads((smoke_run / "splits.json").read_text())["test"]
    return [Path(manifest["data"]["dir"]) / e["path"] for e in test[:n]]


def test_cached_models_are_shared_and_thread_safe(smoke_run: Path):
    run = open_run(smoke_run)
    stamp = dash_loader.models_stamp(run)
    loader = dash_loader.ModelLoader()
    predictor, explainers, failures = loader.request(str(smoke_run), stamp).result()
    assert failures == {}
    again = loader.request(str(smoke_run), stamp).result()
    assert again[0] is predictor and again[1] is explainers  # loaded once per process

    images = [read_image(p) for p in _test_paths(smoke_run, 6)]
    assert len(images) >= 4

    def work(i: int) -> tuple[int, dict, dict]:
        probs = predictor.predict_images([images[i]])
        maps = {m: ex(predictor.prepare(m, images[i])[None], method="gradcam").heatmaps[0]
                for m, ex in explainers.items()}
        return i, probs, maps

    expected = {i: work(i) for i in range(len(images))}  # one at a time
    jobs = [i for _ in range(3) for i in range(len(images))]
    with ThreadPoolExecutor(max_workers=6) as pool:
        for i, probs, maps in pool.map(work, jobs):
            _, want_probs, want_maps = expected[i]
            for m in probs:
                np.testing.assert_allclose(probs[m], want_probs[m], atol=1e-5)
                np.testing.assert_allclose(maps[m], want_maps[m], atol=1e-4)
    # distinct images really give distinct answers, so mixing them up would have been caught
    assert not np.allclose(expected[0][2]["custom_cnn"], expected[1][2]["custom_cnn"])


def test_asking_for_another_run_drops_the_first_runs_models(smoke_run: Path, tmp_path: Path):
    """Peak memory: the server holds one run's models, never two."""
    import gc
    import shutil
    import weakref

    other = tmp_path / "runs" / "other-run"
    shutil.copytree(smoke_run, other)
    loader = dash_loader.ModelLoader()
    first = loader.request(str(smoke_run), 1).result()
    model = weakref.ref(next(iter(first[0].models.values())))
    del first
    gc.collect()
    assert model() is not None  # still held by the loader
    second = loader.request(str(other), 2)
    gc.collect()
    assert model() is None  # dropped before the other run's models are built
    assert second.result()[2] == {}


def test_loading_warms_up_each_model_s_own_default(smoke_run: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch):
    """The first upload after loading traced TensorFlow graphs (the warm-up traced Grad-CAM
    while each model's default was LayerCAM): loading must leave nothing to trace."""
    import shutil

    from dashboard import core, inference
    from pipeline.explain import cams

    run_dir = tmp_path / "runs" / smoke_run.name
    shutil.copytree(smoke_run, run_dir)
    (run_dir / "explain_choice.json").write_text(json.dumps({"models": {
        "custom_cnn": {"method": "layercam", "layer": None},
        "mobilenetv2": {"method": "hirescam", "layer": None}}}))
    predictor, explainers, failures = dash_loader.build_models(str(run_dir))
    assert failures == {}
    assert {m: ex.method for m, ex in explainers.items()} == {
        "custom_cnn": "layercam", "mobilenetv2": "hirescam"}
    built: list[str] = []
    real = cams._gradcam_graph
    monkeypatch.setattr(cams, "_gradcam_graph", lambda *a: built.append("graph") or real(*a))
    traced: list[str] = []
    for ex in explainers.values():  # a graph already built may still trace on a new call
        for key, value in list(ex._cache.items()):
            fn = getattr(value, "experimental_get_tracing_count", None)
            if fn is not None:
                traced.append(f"{key}:{fn()}")
    path = _test_paths(smoke_run, 1)[0]
    upload = core.Upload(path.name, "warm-test", read_image(path))
    run = open_run(run_dir)
    # the page's settings: the layer boxes show each explainer's default layer
    settings = inference.Settings(method=None,  # each model's own default
                                  layers={m: ex.layer for m, ex in explainers.items()})
    results = inference.explain(run, predictor, explainers, [upload], settings)
    assert not results.errors
    assert {m: rs[0].method for m, rs in results.per_model.items()} == {
        "custom_cnn": "layercam", "mobilenetv2": "hirescam"}
    assert built == []  # every graph this upload needed was built while loading
    after = [f"{key}:{value.experimental_get_tracing_count()}"
             for ex in explainers.values() for key, value in ex._cache.items()
             if hasattr(value, "experimental_get_tracing_count")]
    assert after == traced  # and none was traced again


def test_an_unexpected_loading_error_is_a_failure_not_a_crash(smoke_run: Path,
                                                              monkeypatch: pytest.MonkeyPatch):
    """An exception while loading reached every page as a crash (the Predict page then drew no
    uploader); it must become each model's one-line failure, with the cause."""
    def broken(path: str, warm: bool = True):
        raise RuntimeError("graph could not be built")

    monkeypatch.setattr(dash_loader, "build_models", broken)
    predictor, explainers, failures = dash_loader.load_models(str(smoke_run))
    assert predictor is None and explainers == {}
    assert set(failures) == set(open_run(smoke_run).model_names)
    assert all("RuntimeError: graph could not be built" in why for why in failures.values())


def test_a_failed_warm_up_leaves_the_models_usable(smoke_run: Path,
                                                   monkeypatch: pytest.MonkeyPatch):
    from dashboard import inference

    def broken(*args):
        raise RuntimeError("warm-up broke")

    monkeypatch.setattr(inference, "warm_up", broken)
    predictor, explainers, failures = dash_loader.load_models(str(smoke_run))
    assert failures == {}
    assert predictor is not None and set(explainers) == set(open_run(smoke_run).model_names)


def _stub_loads(monkeypatch: pytest.MonkeyPatch, tensorflow_imported: bool):
    """`load_models` replaced by a stub that records its calls; TensorFlow imported or not."""
    import threading

    calls: list[str] = []
    started = threading.Event()

    def load(path: str):
        calls.append(path)
        started.set()
        return None, {}, {"m": "stub"}

    monkeypatch.setattr(dash_loader, "load_models", load)
    monkeypatch.setattr(dash_loader, "tensorflow_imported", lambda: tensorflow_imported)
    return calls, started


def test_the_first_load_leaves_the_browser_time_before_importing_tensorflow(
        monkeypatch: pytest.MonkeyPatch):
    """A fresh browser fetches the page's widget scripts from the server just after the first
    run; TensorFlow's import holds the interpreter for up to 0.45 s at a time, and the first
    visit to Predict waited behind it (3.3-4.7 s). Before TensorFlow's first import, loading
    starts only after the grace, or at once when an upload waits (`hurry`)."""
    calls, started = _stub_loads(monkeypatch, tensorflow_imported=False)
    loader = dash_loader.ModelLoader(grace_s=600)  # far longer than this test waits
    future = loader.request("run-a", 1)
    assert not started.wait(0.3)  # still in the grace: nothing imported, nothing loaded
    assert calls == [] and not future.done()
    loader.hurry()
    assert future.result(timeout=60) == (None, {}, {"m": "stub"})
    assert calls == ["run-a"]
    assert dash_loader.FIRST_LOAD_GRACE_S <= 3  # a grace, never a long wait for the models


def test_loads_after_tensorflow_s_import_have_no_grace(monkeypatch: pytest.MonkeyPatch):
    calls, _ = _stub_loads(monkeypatch, tensorflow_imported=True)
    loader = dash_loader.ModelLoader(grace_s=600)
    assert loader.request("run-b", 1).result(timeout=60)[2] == {"m": "stub"}  # no hurry needed
    assert calls == ["run-b"]


def test_a_page_waiting_for_the_models_ends_the_grace(monkeypatch: pytest.MonkeyPatch):
    """`models(run)` (an upload to explain, the Error analysis page) must not sit out the
    grace: it calls `hurry` before waiting."""
    import threading
    from types import SimpleNamespace

    calls, _ = _stub_loads(monkeypatch, tensorflow_imported=False)
    loader = dash_loader.ModelLoader(grace_s=600)
    monkeypatch.setattr(dash_loader, "model_loader", lambda: loader)
    monkeypatch.setattr(dash_loader, "models_stamp", lambda run: 1)
    monkeypatch.setattr(dash_loader.st, "error", lambda *a, **k: None)
    run = SimpleNamespace(path="run-c")
    assert dash_loader.models(run, wait=False) == (None, None)  # the page draws, no waiting
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(dash_loader.models(run)), daemon=True)
    waiter.start()
    waiter.join(timeout=60)
    assert got == [(None, {})], "models(run) sat out the first-load grace"
    assert calls == ["run-c"]
