"""The README's "From Python" block runs as printed, on the shipped reference run."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- python-api:"


def readme_block() -> str:
    """The fenced Python block right after the README's python-api marker."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    after = text[text.index(MARKER):]
    return re.search(r"```python\n(.*?)```", after, re.S).group(1)


@pytest.mark.slow
def test_the_readme_python_block_runs_on_the_shipped_run(synth_data: Path, monkeypatch) -> None:
    code = readme_block()
    assert '"scan.jpg"' in code
    scan = next(p for p in sorted(synth_data.rglob("*.png")) if "mask" not in str(p))
    monkeypatch.chdir(ROOT)  # the block names the run folder relative to the project
    scope: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.replace('"scan.jpg"', repr(os.fspath(scan))), "README", "exec"), scope)
    lines = out.getvalue().splitlines()
    run = scope["run"]
    assert [line.split()[0] for line in lines] == run.model_names
    assert set(scope["predictor"].temperatures()) == set(run.model_names)  # calibrated, as shown
    for p in scope["probs"].values():
        assert p.shape == (1, len(run.class_names)) and np.isclose(p.sum(), 1, atol=1e-4)
    heatmap = scope["heatmap"]
    size = int(run.model_info("custom_cnn")["image_size"])
    assert heatmap.shape == (size, size) and 0 <= heatmap.min() <= heatmap.max() <= 1
