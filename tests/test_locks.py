"""`pipeline.locks` on its own (no TensorFlow): a lock file a killed holder leaves behind is
taken over by the next writer and removed when it is done (removing it earlier, from outside
the lock, could let two writers in: the `locks` module docstring), and whether a lock is held
is asked of the lock, not of the pid its file names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import run_files
from pipeline.interrupted import interrupted_runs
from pipeline.locks import HOLDER, exclusive, held, holder

ROOT = Path(__file__).resolve().parents[1]
HOLD = """
import sys
from pathlib import Path
from pipeline.locks import exclusive
with exclusive(Path(sys.argv[1]), "busy", "evaluate"):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_killed_holders_lock_file_blocks_nothing_and_the_next_writer_removes_it(tmp_path):
    lock = tmp_path / ".writer.lock"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        assert held(lock) is True
        with (pytest.raises(ValueError, match=f"held by `evaluate`, pid {proc.pid}, since "),
              exclusive(lock, f"held by {HOLDER}")):
            pass
    finally:
        proc.kill()  # SIGKILL: no `finally` of its own runs, its lock file stays
        proc.wait(timeout=60)
    assert json.loads(lock.read_text())["pid"] == proc.pid
    assert held(lock) is False
    with exclusive(lock, f"held by {HOLDER}", "calibrate"):  # the kernel dropped its lock
        assert holder(lock) == holder(lock) | {"pid": os.getpid(), "command": "calibrate"}
    assert not lock.exists()  # taken over, then removed when done


def test_an_interrupted_run_whose_lock_file_names_a_live_pid_is_still_named(tmp_path):
    """`train`'s note left out an interrupted run whose stale lock file named a pid that was
    alive again (another process's now: PID 1 in every container); the lock decides."""
    folder = tmp_path / "runs" / ".tmp-20260101-000000-abcdef"
    folder.mkdir(parents=True)
    (folder / "run.json").write_text("{}")
    lock = folder / run_files.WRITER_LOCK
    lock.write_text(json.dumps({"pid": os.getpid(), "command": "train", "since": "01:00:00"}))
    assert held(lock) is False
    assert [r.run_id for r in interrupted_runs(tmp_path)] == ["20260101-000000-abcdef"]
    with exclusive(lock, f"held by {HOLDER}", "train --resume"):  # being resumed: left out
        assert held(lock) is True and interrupted_runs(tmp_path) == []
    assert held(tmp_path / "no.lock") is False
