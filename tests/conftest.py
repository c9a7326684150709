"""Shared fixtures. The expensive one, `smoke_run`, trains both models once per test session."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Tests never touch the network: explicit `imagenet` requests fail fast instead of downloading.
os.environ.setdefault("BRAIN_MRI_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]


def _made_once(tmp_path_factory: pytest.TempPathFactory, name: str,
               make: Callable[[Path], None]) -> Path:
    """A folder `make(folder)` fills, made once per session: under pytest-xdist the first worker
    to ask makes it in the folder every worker's temporary folder sits in (a lock file makes
    the others wait, as pytest-xdist's documentation does it), so the workers of `make test`
    do not each train the same smoke run: 28-30 s alone on a loaded 2-core machine, 60-90 s
    beside other trainings (measured), saved by a worker that reaches it after the other made
    it; one that asks while the other makes it waits about as long as making it itself."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.mktemp(name)
        make(folder)
        return folder
    import fcntl  # POSIX (Linux, macOS); one process needs no lock
    shared = tmp_path_factory.getbasetemp().parent  # this session's; every worker's parent
    folder, done = shared / name, shared / f"{name}.done"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also on a failure
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a worker that failed making it
            folder.mkdir()
            make(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic phantom dataset (Kaggle layout + masks/), made once per session and
    shared by the workers: tests only read it."""
    from pipeline.synth import generate

    return _made_once(tmp_path_factory, "synth",
                      lambda folder: generate(folder / "phantoms", per_class=40, size=128,
                                              seed=7)) / "phantoms"


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

    def make(artifacts: Path) -> None:
        run_dir = train_run(profile("smoke"), synth_data, artifacts, list(DEFAULT_MODELS))
        evaluate_run(run_dir)
        explain_eval(run_dir, max_images=8)

    made = _made_once(tmp_path_factory, "smoke-artifacts", make)
    # Trained once, copied per worker: tests write into it (explain-eval --replace, calibrate),
    # each worker's tests into their own copy, as when each worker trained its own.
    artifacts = tmp_path_factory.mktemp("artifacts")
    shutil.copytree(made, artifacts, dirs_exist_ok=True, symlinks=True)
    return artifacts / "runs" / (artifacts / "latest").read_text().strip()


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
