"""Unwritable folders: every writing command says so in one line, before any expensive work.

Root ignores file modes, so as root the commands run under `setpriv` with the permission
override capabilities dropped (as the issue's attack did); otherwise plain chmod is enough.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DROP = "-dac_override,-dac_read_search"

pytestmark = pytest.mark.slow  # uses the trained smoke run


def _unprivileged(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: file modes cannot be enforced")
    return ["setpriv", f"--bounding-set={DROP}", f"--inh-caps={DROP}", *cmd]


def _set_writable(folder: Path, writable: bool) -> None:
    for path in [folder, *folder.rglob("*")]:
        mode = path.stat().st_mode
        bits = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
        path.chmod(mode | stat.S_IWUSR if writable else mode & ~bits)


@pytest.fixture
def read_only_artifacts(smoke_run: Path, tmp_path: Path) -> Iterator[Path]:
    adir = tmp_path / "artifacts"
    shutil.copytree(smoke_run.parent.parent, adir, symlinks=True)
    _set_writable(adir, False)
    try:
        yield adir
    finally:
        _set_writable(adir, True)


# TensorFlow's and absl's native log lines ("2026-12-07 12:00:00.123456: I tensorflow/...",
# "I0000 00:00:1733... cpu_feature_guard.cc", "WARNING: All log messages before absl::...")
_NATIVE_LOG = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] |[IWEF]\d{4} "
                         r"\d\d:\d\d:\d\d|WARNING: All log messages before absl)")


def _native_log(line: str) -> bool:
    return bool(_NATIVE_LOG.match(line))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(_unprivileged([sys.executable, "-m", "pipeline", *args]), cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("command", ["evaluate", "evaluate-data", "explain-eval", "train"])
def test_read_only_folders_are_refused_in_one_line(read_only_artifacts: Path, synth_data: Path,
                                                   command: str):
    adir = read_only_artifacts
    args = {
        "evaluate": ["evaluate", "--artifacts", str(adir)],
        "evaluate-data": ["evaluate", "--artifacts", str(adir),
                          "--data", str(synth_data / "Testing")],
        "explain-eval": ["explain-eval", "--artifacts", str(adir)],
        "train": ["train", "--data", str(synth_data), "--model", "custom_cnn",
                  "--profile", "smoke", "--out", str(adir)],
    }[command]
    proc = _cli(*args)
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    # one line of ours, whatever TensorFlow's native logging adds: its start-up lines differ
    # by CPU (AVX-512 machines print more), and a subprocess may print them at any log level
    ours = [line for line in proc.stderr.splitlines() if line.strip() and not _native_log(line)]
    assert len(ours) == 1 and "cannot write to the" in ours[0], proc.stderr
    assert str(adir) in ours[0]
    assert not any(p.name.startswith(".tmp-") for p in (adir / "runs").iterdir())


def _tiny_cli(raise_: BaseException):
    """A one-command typer app whose command raises `raise_`, as a real command would."""
    import typer

    tiny = typer.Typer(pretty_exceptions_enable=False)

    @tiny.command()
    def work() -> None:
        raise raise_

    @tiny.command()
    def other() -> None:  # two commands: `work` is named on the command line
        pass

    return tiny


@pytest.mark.parametrize("raised, code, said", [
    (KeyboardInterrupt(), 130, "interrupted"),
    (OSError(28, "No space left on device", "/data/out/metrics.json"), 1,
     "error: No space left on device (/data/out/metrics.json)"),
])
def test_ctrl_c_and_a_full_disk_are_one_line_in_any_command(monkeypatch, capsys, raised, code,
                                                             said):
    """Ctrl-C ended every command silently (typer turns it into exit 130), and a full disk in
    evaluate, calibrate, explain-choose or ood ended in an OSError traceback."""
    from pipeline import cli

    monkeypatch.setattr(cli, "app", _tiny_cli(raised))
    monkeypatch.setattr(sys, "argv", ["pipeline", "work"])
    with pytest.raises(SystemExit) as ended:
        cli.main()
    assert ended.value.code == code
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert lines == [said]


def test_ctrl_c_while_the_command_line_is_still_importing_is_one_line():
    """Ctrl-C in the first seconds (TensorFlow still importing) printed a 58-line traceback."""
    code = ("import runpy, sys, types\n"
            "class Importing(types.ModuleType):\n"
            "    def __getattr__(self, name):\n"
            "        raise KeyboardInterrupt\n"
            "sys.modules['pipeline.cli'] = Importing('pipeline.cli')\n"
            "runpy.run_module('pipeline', run_name='__main__')\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == "interrupted"
    assert "Traceback" not in proc.stderr
