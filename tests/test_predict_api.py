"""The Python API as a notebook calls it (README "From Python"): what `predict_files` and a
`Predictor` are handed, and the one-line refusals of what they cannot use (a review of the API)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.artifacts import open_run
from pipeline.predict import Predictor, predict_files

pytestmark = pytest.mark.slow  # uses the trained smoke run


@pytest.fixture(scope="module")
def predictor(smoke_run: Path) -> Predictor:
    return Predictor(open_run(smoke_run), models="custom_cnn")


def _scan(synth_data: Path) -> Path:
    return sorted((synth_data / "Testing").rglob("*.png"))[0]


def test_predict_files_takes_one_file_name_as_one_file(predictor: Predictor, synth_data: Path):
    """A str was read as a list of its letters: one failure per character."""
    scan = _scan(synth_data)
    want, _ = predict_files(predictor, [scan])
    for one in (str(scan), scan):
        rows, failures = predict_files(predictor, one)
        assert failures == [] and [r["path"] for r in rows] == [str(scan)]
        assert rows[0]["models"] == want[0]["models"]
