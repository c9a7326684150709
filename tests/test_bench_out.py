"""`bench --out`: a folder the reports cannot go to is refused before anything is measured."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app


def _bad_outs(tmp_path: Path) -> list[tuple[Path, str]]:
    """An existing file, and a folder below it (mkdir fails as on a read-only mount: root,
    which runs the tests here, ignores permission bits)."""
    a_file = tmp_path / "report.txt"
    a_file.write_text("mine")
    return [(a_file, "is a file, not a folder"), (a_file / "bench", "cannot write to")]


def test_bench_refuses_an_unwritable_out_before_measuring(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only --out was found only at the first write, after all the measuring (1 min 50 s
    of a quick bench, hours of a full one, lost): one line, exit 2, nothing measured now."""
    import pipeline.bench.runner as runner

    measured: list[object] = []
    monkeypatch.setattr(runner, "_measure", lambda *args: measured.append(args))
    for out, message in _bad_outs(tmp_path):
        done = CliRunner().invoke(app, ["bench", "--quick", "--out", str(out)])
        assert done.exit_code == 2, done.output
        assert done.stderr.splitlines() == [done.stderr.strip()] and message in done.stderr, \
            done.stderr
        assert "output folder" in done.stderr and "Traceback" not in done.output
        assert measured == [], out
    assert (tmp_path / "report.txt").read_text() == "mine"


def test_bench_explain_only_refuses_an_unwritable_out_before_measuring(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.artifacts
    import pipeline.bench.methods_latency as methods_latency

    measured: list[object] = []
    monkeypatch.setattr(pipeline.artifacts, "resolve_run", lambda artifacts, run: tmp_path)
    monkeypatch.setattr(methods_latency, "explain_methods_bench",
                        lambda *args, **kwargs: measured.append(args))
    for out, message in _bad_outs(tmp_path):
        done = CliRunner().invoke(app, ["bench", "--explain-only", "--out", str(out)])
        assert done.exit_code == 2 and message in done.stderr, done.output
        assert len(done.stderr.splitlines()) == 1 and measured == [], done.stderr
