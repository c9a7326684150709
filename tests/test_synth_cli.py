"""`synth` and `audit` on the edges a CLI review hit: a huge --per-class, an interrupted synth."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import pipeline.synth.dataset as dataset
from pipeline.cli import app
from pipeline.synth import MAX_PER_CLASS, SynthError, generate


class Planned(Exception):
    """Raised in place of planning the files: the run got past the argument checks."""


def _no_planning(monkeypatch: pytest.MonkeyPatch, log: list | None = None) -> None:
    def plan(*args: object) -> None:
        if log is not None:
            log.append("plan")
        raise Planned

    monkeypatch.setattr(dataset, "_plan", plan)


def test_synth_refuses_a_huge_per_class_at_once(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """--per-class 1000000000 listed every file first, growing memory ~10 MB/s with no output:
    refused now in one line naming the bound, before any folder or plan."""
    _no_planning(monkeypatch)
    out = tmp_path / "huge"
    done = CliRunner().invoke(app, ["synth", str(out), "--per-class", "1000000000", "--quiet"])
    assert done.exit_code == 2, done.output
    assert done.stderr.splitlines() == [
        f"error: --per-class must be 1 to {MAX_PER_CLASS}, got 1000000000"], done.stderr
    with pytest.raises(SynthError, match=f"per_class must be an integer in \\[1, {MAX_PER_CLASS}"):
        generate(out, per_class=MAX_PER_CLASS + 1)
    assert not out.exists()


def test_synth_progress_starts_before_the_files_are_planned(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log: list = []
    _no_planning(monkeypatch, log)
    with pytest.raises(Planned):
        generate(tmp_path / "p", per_class=3, size=64, progress=lambda *a: log.append(a))
    assert log == [("synth phantoms", 0, 12), "plan"]

