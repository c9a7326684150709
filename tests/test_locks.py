"""`pipeline.locks` on its own (no TensorFlow): a lock file a killed holder leaves behind is
taken over by the next writer and removed when it is done; removing it earlier, from outside
the lock, could let two writers in (see `locks` module docstring)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.locks import HOLDER, exclusive, holder

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
        with (pytest.raises(ValueError, match=f"held by `evaluate`, pid {proc.pid}, since "),
              exclusive(lock, f"held by {HOLDER}")):
            pass
    finally:
        proc.kill()  # SIGKILL: no `finally` of its own runs, its lock file stays
        proc.wait(timeout=60)
    assert json.loads(lock.read_text())["pid"] == proc.pid
    with exclusive(lock, f"held by {HOLDER}", "calibrate"):  # the kernel dropped its lock
        assert holder(lock) == holder(lock) | {"pid": os.getpid(), "command": "calibrate"}
    assert not lock.exists()  # taken over, then removed when done
