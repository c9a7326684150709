"""One writer at a time: exclusive locks on the files and folders commands write.

`exclusive` is the one mechanism: an `fcntl.flock` on a lock file, whose content names the
holder (pid, command, start time) so a refused command can say who holds it. The kernel drops
the lock when its process ends, however it ends, so a lock file left by a killed process (a
dead pid) never blocks anyone: the next command takes it, and removes it when it is done, as
every holder does; removing it sooner, without holding its lock, could let two writers in
(another may take the old file between the look and the unlink, a third then locks a new
one). Whether a lock is held is asked of the lock (`held`), never of the pid it names. A
command that opened the old file just before it was removed notices (the path no longer names
the file it locked) and tries again, so two writers never both hold a lock.

Used by `predict --out` (`stream.only_csv_writer`), `explain --out` (`explain.journal`, a lock on
the folder itself) and every command that writes into a run folder (`run_writer`: train and
train --resume on `runs/.tmp-<id>/`, evaluate, calibrate, ood, explain-eval, explain-choose on
the run). Readers (predict, explain, figures, the dashboard) take none. Where the file system
has no locks (some network file systems, Windows) commands go on unguarded.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline import run_files

HOLDER = "{holder}"  # in a refusal's words: replaced by who holds the lock (`holder_words`)
PROBE_GRACE_S = 0.1  # how long `acquire` tries again before refusing (`held` probes briefly)


def lock_or_refuse(fd: int, busy: str) -> None:
    """An exclusive lock on the open file `fd`, or ValueError(`busy`) when another process holds
    it; nothing where the file system has no locks."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ValueError(busy) from None
    except OSError:
        pass  # no locks on this file system


def holder(lock: Path) -> dict[str, Any] | None:
    """What the lock file `lock` says of the process that took it ({"pid", "command",
    "since"}), or None (no file, not written yet, damaged)."""
    try:
        record = json.loads(lock.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("pid"), int) else None


def holder_words(record: dict[str, Any] | None) -> str:
    """"`evaluate`, pid 4242, since 06:41:07 UTC" (what a refusal names), or "pid unknown"."""
    if record is None:
        return "pid unknown"
    command = f"`{record['command']}`, " if record.get("command") else ""
    since = f", since {record['since']}" if record.get("since") else ""
    return f"{command}pid {record['pid']}{since}"


def held(lock: Path) -> bool | None:
    """Whether a process holds the lock on the file `lock` now, asked of the lock itself (a
    shared, non-blocking `flock`, let go at once); None where that cannot be told (no file
    system locks, an unreadable file). The pid a lock file names is no answer: a killed
    holder's file stays, and its pid may since be another process's (PID 1 in every
    container), which hid an interrupted run from `train`'s note."""
    try:
        import fcntl
    except ImportError:  # Windows
        return None
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # closing lets the probe's shared lock go
    return False


def alive(pid: int) -> bool:
    """Whether a process `pid` exists here (a display hint only: the lock itself decides)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, another user's
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_ino, here.st_dev) == (there.st_ino, there.st_dev)


def _lock_or_refuse_soon(fd: int) -> None:
    """`lock_or_refuse`, tried again for up to `PROBE_GRACE_S`: a `held` probe keeps the lock
    for microseconds, a writer for the length of a command."""
    deadline = time.monotonic() + PROBE_GRACE_S
    while True:
        try:
            lock_or_refuse(fd, "")
            return
        except ValueError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


def acquire(lock: Path, busy: str, command: str = "") -> int | None:
    """Take the exclusive lock on the file `lock` (created), writing this process's pid,
    `command` and start time into it; returns its descriptor for `release` (None where there
    are no locks: Windows, or a place the command cannot write, which its own check says).
    ValueError(`busy`, its `HOLDER` replaced by `holder_words`) when another process holds it."""
    try:
        import fcntl  # noqa: F401  (present: locks work here)
    except ImportError:  # Windows: unguarded
        return None
    for _ in range(20):  # a retry only when the holder removed the file as we opened it
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except (FileNotFoundError, NotADirectoryError):
            raise
        except OSError:  # a read-only or full place: the command's own write check says so
            return None
        try:
            _lock_or_refuse_soon(fd)
        except ValueError:
            os.close(fd)
            raise ValueError(busy.replace(HOLDER, holder_words(holder(lock)))) from None
        if _same_file(fd, lock):
            break
        os.close(fd)
    else:  # pragma: no cover - twenty removals in a row
        raise ValueError(busy.replace(HOLDER, "pid unknown"))
    record = {"pid": os.getpid(), "command": command,
              "since": time.strftime("%H:%M:%S UTC", time.gmtime())}
    with contextlib.suppress(OSError):  # the record is for messages; the lock is what counts
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    return fd


def release(fd: int | None, lock: Path) -> None:
    """Let go of a lock `acquire` took: the file removed while still held, and only if it is
    still this one (a run's moves with it when `finalize` renames the folder)."""
    if fd is None:
        return
    if _same_file(fd, lock):
        lock.unlink(missing_ok=True)
    os.close(fd)


@contextlib.contextmanager
def exclusive(lock: Path, busy: str, command: str = "") -> Iterator[None]:
    """Hold the exclusive lock on the file `lock` (`acquire`, then `release`); ValueError(`busy`)
    naming the holder where it says `HOLDER`."""
    fd = acquire(lock, busy, command)
    try:
        yield
    finally:
        release(fd, lock)


def run_name(folder: Path) -> str:
    """A run folder's name as commands say it: the run id for train's `.tmp-<id>/`."""
    from pipeline.artifacts import TMP_PREFIX

    return folder.name.removeprefix(TMP_PREFIX)


@contextlib.contextmanager
def run_writer(folder: Path, command: str) -> Iterator[None]:
    """Hold the run folder `folder`'s writer lock (`run_files.WRITER_LOCK`) while `command`
    writes into it; ArtifactError, one line naming the other process, when another command is
    writing it. Two `train --resume` of one run deleted each other's feature cache; two
    `evaluate`, or `calibrate` beside `evaluate`, left a run whose files came from both."""
    from pipeline.artifacts import ArtifactError, shown_path

    lock = folder / run_files.WRITER_LOCK
    try:
        fd = acquire(lock, f"run {run_name(folder)} is being written by another command "
                           f"({HOLDER}): one command at a time per run; run this again once it "
                           "has finished", command)
    except (FileNotFoundError, NotADirectoryError):  # gone: renamed into place, or removed
        raise ArtifactError(f"run {run_name(folder)} is not in {shown_path(folder.parent)} any "
                            "more: another command finished or removed it") from None
    except ValueError as exc:
        raise ArtifactError(str(exc)) from None
    try:
        yield
    finally:
        release(fd, lock)
