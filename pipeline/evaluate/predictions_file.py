"""A run's `<model>/predictions.csv` read back: each test image's label, answer, confidence and
whether it was right, and the checks that tell a whole file from one cut short (a copy or sync
stopped mid-file). The warnings' audit (`evaluate.flags`) and the dashboard's Error analysis
page read it here.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from pipeline import artifacts, run_files
from pipeline.csv_safe import restore_cell
from pipeline.gaps import fix_command, to_fix


def expected_rows(run_path: Path, model: str) -> int | None:
    """How many rows the model's predictions.csv must have: its metrics.json's `n` (the same
    evaluate wrote both), else the test split's size in splits.json; None when neither says."""
    for rel, count in ((f"{model}/{run_files.METRICS}", lambda o: o.get("n")),
                       (run_files.SPLITS, lambda o: len(o["test"]))):
        try:
            n = count(artifacts.read_json(Path(run_path) / rel))
        except (artifacts.ArtifactError, AttributeError, KeyError, TypeError):
            continue
        if isinstance(n, int) and not isinstance(n, bool) and n >= 0:
            return n
    return None


def predictions_damage(text: str, expected: int | None) -> str | None:
    """What shows that a predictions.csv was cut short (a copy or sync stopped mid-file), or
    None: a last line without its line end (a torn row), or a row count other than `expected`
    (`expected_rows`). Counts over what was left looked like the run's."""
    if text and not text.endswith("\n"):
        return "its last row is cut short (no line end)"
    rows = max(sum(1 for _ in csv.reader(io.StringIO(text))) - 1, 0)
    if expected is not None and rows != expected:
        return f"{rows} rows where the run's test split has {expected} images"
    return None


def predictions_fix(path: Path) -> str:
    """The "To fix" command for a run's `<model>/predictions.csv` at `path`."""
    return fix_command(Path(path).parent.parent, "evaluate")


def read_predictions(path: Path, expected: int | None = None) -> dict[str, dict[str, Any]]:
    """predictions.csv as {path: {"true": label, "predicted": label, "confidence": max p,
    "correct": bool}};
    ArtifactError (one line, with the fix) for a file that is not one, or one cut short
    (`predictions_damage` against `expected` rows)."""
    shown = artifacts.shown_path(path)
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    if why := predictions_damage(text, expected):
        raise artifacts.ArtifactError(to_fix(f"damaged file {shown}: {why}",
                                             predictions_fix(path)))
    out = {}
    for line, row in enumerate(csv.DictReader(io.StringIO(text, newline="")), start=2):
        try:
            probs = [float(v) for k, v in row.items() if k.startswith("p_")]
            out[restore_cell(row["path"])] = {"true": row["true"], "predicted": row["predicted"],
                                              "confidence": max(probs),
                                              "correct": row["correct"] == "1"}
        except (KeyError, TypeError, ValueError) as exc:
            raise artifacts.ArtifactError(to_fix(
                f"damaged file {shown} at line {line} ({type(exc).__name__}: {exc})",
                predictions_fix(path))) from None
    return out
