"""An `explain --out` folder's state: the journal of rows so far, the settings it was made
with, the one-writer lock, and the fold into explain.json (`batch.explain_files` writes it;
the module docstring of `explain.batch` says why a journal)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RESULT = "explain.json"
JOURNAL = "explain.partial.jsonl"  # rows so far, until they are folded into RESULT
# header keys a resumed run must match: what they change is in the overlays and rows
SETTINGS = ("run_id", "models", "target", "alpha", "outline", "caption", "size", "shard")


def settings_difference(then: dict[str, Any], now: dict[str, Any]) -> str | None:
    """The first of `SETTINGS` that differs between two headers, in words ("alpha 0.4 then,
    0.6 now"); None when they agree."""
    def words(key: str, value: Any) -> str:
        if key == "models":
            return ", ".join(sorted(value)) if isinstance(value, dict) else repr(value)
        if key == "target" and value is None:
            return "each model's predicted class"
        return "none" if value is None else str(value)

    for key in SETTINGS:
        a, b = then.get(key), now.get(key)
        if a == b:
            continue
        if key == "caption":
            def kind(v: Any) -> str:
                return "captioned" if v else "bare (--bare)"
            return f"overlays {kind(a)} then, {kind(b)} now"
        if key == "models" and isinstance(a, dict) and set(a) == set(b):
            name = next(m for m in sorted(b) if a[m] != b[m])

            def used(m: Any) -> str:
                return (f"{m.get('method')} at {m['layer']}" if m.get("layer")
                        else str(m.get("method"))) if isinstance(m, dict) else repr(m)
            return f"{name} explained by {used(a[name])} then, {used(b[name])} now"
        return f"{key} {words(key, a)} then, {words(key, b)} now"
    return None


def earlier(out: Path) -> tuple[dict[str, Any] | None, list[dict], list[dict], bool]:
    """(header, rows, errors, from_journal) of an earlier run into `out`: its journal (a torn
    last line cut off), else its finished explain.json, else (None, [], [], False)."""
    from pipeline.artifacts import read_json
    from pipeline.stream import whole_lines

    journal, final = out / JOURNAL, out / RESULT
    lines = whole_lines(journal).decode("utf-8").splitlines()
    if lines:
        header, rows, errors = None, [], []
        for k, line in enumerate(lines):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{journal} is damaged at line {k + 1} ({exc.msg}): remove it "
                                 "to start over, or choose another --out") from None
            if k == 0:
                header = obj.get("explain") if isinstance(obj, dict) else None
            elif isinstance(obj, dict) and "image" in obj:
                rows.append(obj["image"])
            elif isinstance(obj, dict) and "error" in obj:
                errors.append(obj["error"])
        if not isinstance(header, dict):
            raise ValueError(f"{journal} does not start with explain's settings: remove it to "
                             "start over, or choose another --out")
        header.setdefault("caption", False)  # journaled before captions: bare overlays
        return _sized(header), rows, errors, True
    if not final.exists():
        return None, [], [], False
    doc = read_json(final)  # ArtifactError (a ValueError) in one line when damaged
    if not isinstance(doc, dict) or any(key not in doc for key in SETTINGS
                                        if key not in ("caption", "size")):
        raise ValueError(f"{final} does not record the settings it was made with (written "
                         "before explain could resume): remove it to start over, or choose "
                         "another --out")
    header = {k: v for k, v in doc.items() if k not in ("images", "errors")}
    header.setdefault("caption", False)  # written before captions: bare overlays
    return _sized(header), list(doc.get("images") or []), list(doc.get("errors") or []), False


def _sized(header: dict[str, Any]) -> dict[str, Any]:
    """`header` with its overlays' size: one written before --size existed made captioned
    overlays of the default size (`render.CAPTION_MIN_SIDE`); bare ones have none."""
    from pipeline.explain.render import CAPTION_MIN_SIDE

    header.setdefault("size", CAPTION_MIN_SIDE if header.get("caption") else None)
    return header


def journal_lines(items: list[tuple[str, Any]]) -> str:
    """Journal lines: {"explain": header}, {"image": row} or {"error": {...}}, one per line."""
    return "".join(json.dumps({key: value}) + "\n" for key, value in items)


@contextlib.contextmanager
def only_writer(out: Path) -> Iterator[int | None]:
    """Hold an exclusive lock on the folder `out` (ValueError when another process holds it);
    yields the folder's descriptor (for fsync), None where folders cannot be opened or locked
    (some network file systems, Windows): the run then goes on unguarded."""
    try:
        import fcntl  # noqa: F401  (present: locks work here)

        fd = os.open(out, os.O_RDONLY)
    except (ImportError, OSError):
        yield None
        return
    from pipeline.locks import lock_or_refuse

    try:
        lock_or_refuse(fd, f"another explain is writing to {out}: one run at a time per --out")
        yield fd
    finally:
        os.close(fd)


def fold(out: Path) -> tuple[int, int]:
    """Journal -> explain.json (atomic), then the journal removed; (images, errors)."""
    from pipeline.artifacts import write_json_atomic

    header, rows, errors, _ = earlier(out)
    assert header is not None
    write_json_atomic(out / RESULT, {**header, "images": rows, "errors": errors})
    (out / JOURNAL).unlink()
    return len(rows), len(errors)
