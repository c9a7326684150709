"""CSV text that spreadsheets cannot run: user-supplied cells are neutralised (CSV injection).

A file called `=HYPERLINK("http://x")&A1.png` or `@SUM(1+1).png` becomes a formula when a
predictions CSV is opened in Excel or LibreOffice. Following OWASP's guidance, a text cell that
starts with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading single quote, which
spreadsheets show as text; the csv module quotes the rest. Numbers are written as numbers.
Our own readers undo it with `restore_cell` (a text that starts with a quote gets one more, so
the round trip is exact).

A file name that is not valid UTF-8 (Python keeps its odd bytes as lone surrogates) is written
with each such byte as `\\xNN` (`utf8_text`): UTF-8 cannot encode a lone surrogate, and one such
name failed a whole predictions CSV.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def utf8_text(value: str) -> str:
    """`value` as UTF-8 can store it: the bytes of a non-UTF-8 file name (kept by Python as lone
    surrogates, `os.fsdecode`) as `\\xNN`, like `ls -b`. Readers that match names against a CSV
    compare through this function too."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        try:
            raw = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a surrogate no file name yields (e.g. from JSON's \\ud800)
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return raw.decode("utf-8", "backslashreplace")


def safe_cell(value: Any) -> Any:
    """`value` unchanged unless it is text a spreadsheet would read as a formula (or a name
    UTF-8 cannot store: `utf8_text`)."""
    if isinstance(value, str):
        value = utf8_text(value)
        if value.startswith((*FORMULA_STARTS, "'")):
            return "'" + value
    return value


def restore_cell(value: Any) -> Any:
    """The original of a `safe_cell` result (for reading our own CSVs back)."""
    if isinstance(value, str) and value[:1] == "'" and value[1:2] in (*FORMULA_STARTS, "'"):
        return value[1:]
    return value


def to_csv(header: Sequence[str] | None, rows: Iterable[Sequence[Any]]) -> str:
    """CSV text (header, unless None, then rows) with every text cell through `safe_cell`."""
    buf = io.StringIO(newline="")
    # RFC 4180 line ends: with "\r\n" as terminator the csv module also quotes a field holding
    # a bare "\r" (a file name can), which would otherwise split the row.
    writer = csv.writer(buf, lineterminator="\r\n")
    if header is not None:
        writer.writerow([safe_cell(h) for h in header])
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
    return buf.getvalue()
