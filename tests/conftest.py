"""Shared fixtures. The expensive one, `smoke_run`, trains both models once per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Tests never touch the network: explicit `imagenet` requests fail fast instead of downloading.
os.environ.setdefault("BRAIN_MRI_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic phantom dataset (Kaggle layout + masks/), made once per session."""
    from pipeline.synth import generate

    out = tmp_path_factory.mktemp("synth") / "phantoms"
    generate(out, per_class=40, size=128, seed=7)
    return out


@pytest.fixture(scope="session")
def smoke_run(synth_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished, evaluated smoke run (both models) in a temporary artifacts folder.

    The artifacts folder is `smoke_run.parent.parent`; its `latest` file names this run.
    """
    from pipeline.config import profile
    from pipeline.evaluate import evaluate_run
    from pipeline.explain import explain_eval
    from pipeline.names import DEFAULT_MODELS
    from pipeline.train import train_run

    artifacts = tmp_path_factory.mktemp("artifacts")
    cfg = profile("smoke")
    run_dir = train_run(cfg, synth_data, artifacts, list(DEFAULT_MODELS))
    evaluate_run(run_dir)
    explain_eval(run_dir, max_images=8)
    return run_dir


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The real dataset from $BRAIN_MRI_DATA; tests using it skip when it is not set."""
    value = os.environ.get("BRAIN_MRI_DATA")
    if not value:
        pytest.skip("BRAIN_MRI_DATA is not set (CI sets it to ../shared/data/...)")
    path = Path(value)
    if not path.is_dir():
        pytest.skip(f"BRAIN_MRI_DATA={value} is not a folder")
    return path.resolve()  # absolute: tests link to it from temporary folders


@pytest.fixture(scope="session", autouse=True)
def _component_scan_once() -> Iterator[None]:
    """Each new AppTest scans every installed package's metadata for Streamlit components
    (0.13 s of a 0.135 s AppTest of a one-line app, measured; the suite makes hundreds): the
    packages installed do not change while the tests run, so the scan runs once per worker
    and every AppTest gets its result."""
    from streamlit.components.v2 import manifest_scanner

    found = manifest_scanner.scan_component_manifests()
    patch = pytest.MonkeyPatch()
    patch.setattr(manifest_scanner, "scan_component_manifests", lambda max_workers=None: found)
    yield
    patch.undo()
