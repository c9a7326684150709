"""Writing files so that a reader never sees half of one: a temporary file in the same folder,
fsynced, then renamed into place (`os.replace` is atomic within one file system). Run files,
reports and journals are all written so; `pipeline.artifacts` builds run folders with it."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, obj: Any, allow_nan: bool = True) -> None:
    """Write JSON via a temporary file and os.replace, so readers never see half a file.

    allow_nan=False refuses NaN/inf (ValueError) instead of writing the non-standard `NaN`,
    for files whose numbers must all be defined (evaluation results, tuning results).
    """
    text = json.dumps(obj, indent=2, default=_json_default, allow_nan=allow_nan)
    write_text_atomic(path, text + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write text to a temporary file in the same folder, fsync, then os.replace into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); run files are meant to be read by others
        # (a shared artifacts folder, a dashboard under another user): use the umask's mode.
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_umask() -> int:
    # The only portable way to read it is to set it and put it back: done once, at import, as
    # a process-wide change would race with files created by other threads (the dashboard's).
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
