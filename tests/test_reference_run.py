"""The shipped reference run: complete, small enough, documented from its own files, reproducible.

These tests read the run committed under artifacts/ (README "Results on real MRI"). The last one
re-predicts test images of the real dataset and needs BRAIN_MRI_DATA (CI sets it).
"""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.artifacts import open_run, resolve_run
from pipeline.report import results_table

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
MAX_SHIPPED_MB = 40  # issue #9: every shipped run together


@pytest.fixture(scope="module")
def reference():
    if not (ARTIFACTS / "latest").is_file():
        pytest.skip("no shipped reference run (artifacts/latest missing)")
    return open_run(resolve_run(ARTIFACTS, "latest"))


def test_reference_run_is_complete_and_from_imagenet(reference):
    m = reference.manifest
    assert set(m["models"]) == {"custom_cnn", "mobilenetv2"}
    assert m["models"]["mobilenetv2"]["weights"] == "imagenet"
    assert m["data"]["dir_relative"] and m["splits"]["dedupe"] is True
    for name in reference.model_names:
        for rel in ("model.keras", "history.json", "metrics.json", "confusion_matrix.json",
                    "predictions.csv", "explanations.json"):
            assert (reference.path / name / rel).is_file(), f"{name}/{rel} missing"
    assert (reference.path / "comparison.json").is_file()


def test_shipped_runs_stay_under_the_size_budget():
    # Only what git ships counts: a developer's own local runs are ignored files.
    proc = subprocess.run(["git", "ls-files", "-z", "artifacts/runs"], cwd=ROOT,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"not a git checkout: {proc.stderr.strip()}")
    tracked = [ROOT / rel for rel in proc.stdout.split("\0") if rel]
    assert tracked, "no shipped run files tracked by git"
    total_mb = sum(p.stat().st_size for p in tracked) / 2**20
    assert total_mb < MAX_SHIPPED_MB, f"shipped runs take {total_mb:.1f} MB"


def _shipped_run_dirs() -> list[Path]:
    """The run folders git ships (a developer's own local runs are ignored files)."""
    proc = subprocess.run(["git", "ls-files", "artifacts/runs/*/manifest.json"], cwd=ROOT,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"not a git checkout: {proc.stderr.strip()}")
    return sorted((ROOT / rel).parent for rel in proc.stdout.splitlines() if rel)


def test_readme_and_model_card_quote_each_shipped_run_s_own_table(reference):
    # the official-testing run's table is quoted too, and was checked by nobody
    runs = _shipped_run_dirs()
    assert reference.path.resolve() in {p.resolve() for p in runs}
    assert len(runs) >= 2, runs  # the main split's run and the official-testing run
    readme = (ROOT / "README.md").read_text()
    card = (ARTIFACTS / "MODEL_CARD.md").read_text()
    for run_dir in runs:
        run = open_run(run_dir)
        table = results_table(run)
        # the sentence under the table too: the README's differed from what `figures` writes
        for line in (ln for ln in table.splitlines() if ln.startswith(("|", "Test images:"))):
            assert line in readme, f"README is out of date with run {run.run_id}: {line}"
            assert line in card, f"MODEL_CARD.md is out of date with run {run.run_id}: {line}"
        assert run.run_id in card


@pytest.mark.slow
def test_shipped_models_reproduce_their_recorded_predictions(reference, real_data):
    from pipeline.predict import Predictor, predict_files

    root = reference.data_dir
    if root is None:
        pytest.skip("the reference run's dataset folder is not reachable")
    rows = list(csv.DictReader((reference.path / "mobilenetv2" / "predictions.csv").open()))
    picked = rows[:: max(1, len(rows) // 12)][:12]
    results, failures = predict_files(Predictor(reference), [root / r["path"] for r in picked])
    assert not failures
    classes = reference.class_names
    for row, res in zip(picked, results, strict=True):
        got = res["models"]["mobilenetv2"]
        assert got["label"] == row["predicted"], row["path"]
        recorded = np.array([float(row[f"p_{c}"]) for c in classes])
        now = np.array([got["probs"][c] for c in classes])
        assert np.allclose(now, recorded, atol=1e-3), (row["path"], now, recorded)


def test_docs_figures_hold_each_shipped_run_s_results_md():
    """docs/figures/results.md is what `figures` writes for the main run (the official run's in
    official-testing/): README links it as the citable table, so it must not drift."""
    from pipeline.results_md import results_markdown

    for run_dir in _shipped_run_dirs():
        run = open_run(run_dir)
        official = isinstance(run.manifest["splits"].get("official_test"), dict)
        doc = ROOT / "docs" / "figures" / ("official-testing" if official else "") / "results.md"
        assert doc.read_text() == results_markdown(run), (
            f"{doc.relative_to(ROOT)} is out of date: python -m pipeline figures --run "
            f"{run.run_id} --out {doc.parent.relative_to(ROOT)}")
