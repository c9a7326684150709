"""`synth` and `audit` on the edges a CLI review hit: a huge --per-class, an interrupted synth."""

from __future__ import annotations

import json
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


def _interrupted(out: Path) -> None:
    """A synth stopped after a few phantoms, as Ctrl-C or SIGTERM leaves it."""
    def stop(stage: str, done: int, total: int) -> None:
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate(out, per_class=10, size=64, progress=stop, workers=1)
    assert json.loads((out / "synth.json").read_text())["complete"] is False


def test_rerunning_an_interrupted_synth_says_so_in_the_clis_words(tmp_path: Path) -> None:
    """It said "already holds synthetic phantoms; pass overwrite=True (--overwrite)": Python's
    wording, and nothing about the set being partial."""
    runner = CliRunner()
    partial = tmp_path / "partial"
    _interrupted(partial)
    done = runner.invoke(app, ["synth", str(partial), "--size", "64", "--quiet"])
    assert done.exit_code == 2 and len(done.stderr.splitlines()) == 1, done.output
    assert "partial output of an interrupted synth" in done.stderr, done.stderr
    assert "rerun synth with --overwrite" in done.stderr and "overwrite=" not in done.stderr

    whole = tmp_path / "whole"
    generate(whole, per_class=1, size=64)
    done = runner.invoke(app, ["synth", str(whole), "--size", "64", "--quiet"])
    assert done.exit_code == 2 and "overwrite=" not in done.stderr, done.stderr
    assert "already holds synthetic phantoms; rerun with --overwrite" in done.stderr
    assert "partial output" not in done.stderr

    done = runner.invoke(app, ["synth", str(partial), "--per-class", "1", "--size", "64",
                               "--quiet", "--overwrite"])
    assert done.exit_code == 0 and "wrote 4 phantoms" in done.output, done.output


def test_audit_warns_of_an_interrupted_synths_partial_output(tmp_path: Path) -> None:
    runner = CliRunner()
    partial, whole = tmp_path / "partial", tmp_path / "whole"
    _interrupted(partial)
    generate(whole, per_class=2, size=64)
    warning = "warning: the folder holds the partial output of an interrupted synth"
    done = runner.invoke(app, ["audit", str(partial)])
    assert done.exit_code == 0 and warning in " ".join(done.stdout.split()), done.output
    report = json.loads(runner.invoke(app, ["audit", str(partial), "--json"]).stdout)
    assert "rerun synth with --overwrite" in report["interrupted_synth"]
    done = runner.invoke(app, ["audit", str(whole)])
    assert done.exit_code == 0 and "partial output" not in done.output, done.output
    assert json.loads(runner.invoke(app, ["audit", str(whole), "--json"]).stdout)[
        "interrupted_synth"] is None

    for png in partial.rglob("*.png"):  # stopped before its first phantom: no images to count
        png.unlink()
    done = runner.invoke(app, ["audit", str(partial)])
    assert done.exit_code == 2 and len(done.stderr.splitlines()) == 1, done.output
    assert "hold no images" in done.stderr, done.stderr
    assert "; the folder holds the partial output of an interrupted synth" in done.stderr
