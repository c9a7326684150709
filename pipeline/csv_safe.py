"""CSV text that spreadsheets cannot run: user-supplied cells are neutralised (CSV injection).

A file called `=HYPERLINK("http://x")&A1.png` or `@SUM(1+1).png` becomes a formula when a
predictions CSV is opened in Excel or LibreOffice. Following OWASP's guidance, a text cell that
starts with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading single quote, which
spreadsheets show as text; the csv module quotes the rest. Numbers are written as numbers.
Our own readers undo it with `restore_cell` (a text that starts with a quote gets one more, so
the round trip is exact).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """`value` unchanged unless it is text a spreadsheet would read as a formula."""
    if isinstance(value, str) and value.startswith((*FORMULA_STARTS, "'")):
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
