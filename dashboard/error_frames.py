"""The Error analysis page's tables (logic, no Streamlit): a run's predictions.csv files read,
merged per test image and filtered for the error gallery.

Split from `dashboard.core`, which keeps uploads, prediction tables and dataset files; the frames
come from `dashboard.state.predictions` (cached per run), and only `app_pages/errors.py` shows
them.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from pipeline.artifacts import ArtifactError
from pipeline.csv_safe import restore_cell
from pipeline.evaluate.predictions_file import predictions_damage
from pipeline.names import class_label, display_name

PREDICTION_COLUMNS = ("path", "true", "predicted", "correct")


def parse_predictions(text: str, class_names: Sequence[str], where: str,
                      expected: int | None = None) -> pd.DataFrame:
    """Validated predictions.csv as a frame (`correct` as bool); ArtifactError if damaged,
    or cut short (`predictions_file.predictions_damage`: a torn last row, not `expected` rows)."""
    if why := predictions_damage(text, expected):
        raise ArtifactError(f"damaged file {where}: {why}")
    try:
        frame = pd.read_csv(io.StringIO(text), dtype={"path": str, "true": str,
                                                      "predicted": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"damaged file {where}: {exc}") from exc
    missing = [c for c in PREDICTION_COLUMNS if c not in frame.columns]
    if missing:
        raise ArtifactError(f"damaged file {where}: columns {missing} missing "
                            f"(has {list(frame.columns)})")
    unknown = sorted(set(frame["true"]).union(frame["predicted"]) - set(class_names))
    if unknown:
        raise ArtifactError(f"{where} names classes {unknown} that the run does not have "
                            f"({list(class_names)})")
    frame["correct"] = frame["correct"].astype(str).str.lower().isin(("1", "true"))
    frame["path"] = frame["path"].map(restore_cell)  # written formula-safe (pipeline.csv_safe)
    return frame


def merge_predictions(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per test image: `path`, `true`, and per model `<m>_pred`, `<m>_conf`, `<m>_ok`."""
    merged: pd.DataFrame | None = None
    for m, f in frames.items():
        probs = [c for c in f.columns if c.startswith("p_")]
        part = pd.DataFrame({
            "path": f["path"], "true": f["true"], f"{m}_pred": f["predicted"],
            f"{m}_conf": f[probs].max(axis=1) if probs else np.nan, f"{m}_ok": f["correct"],
        })
        if merged is None:
            merged = part
        else:
            merged = merged.merge(part.drop(columns="true"), on="path", how="inner")
    return merged if merged is not None else pd.DataFrame(columns=["path", "true"])


def error_table(rows: pd.DataFrame, models: Sequence[str]) -> pd.DataFrame:
    """`merge_predictions` rows as the Error analysis table shows them: headers in words
    ("Custom CNN answer", "... confidence"), classes as people read them, confidence in %."""
    out = pd.DataFrame({"Test image": rows["path"],
                        "True class": rows["true"].map(class_label)})
    for m in models:
        out[f"{display_name(m)} answer"] = rows[f"{m}_pred"].map(class_label)
        out[f"{display_name(m)} confidence"] = [
            f"{c:.0%}" if pd.notna(c) else "–" for c in rows[f"{m}_conf"]]
    return out.reset_index(drop=True)


def filter_errors(merged: pd.DataFrame, models: Sequence[str], wrong_by: str,
                  true_classes: Sequence[str] | None = None,
                  predicted_classes: Sequence[str] | None = None) -> pd.DataFrame:
    """Rows of `merge_predictions` output selected for the error gallery.

    `wrong_by`: "any" (at least one model wrong), "all" (every model wrong), "disagree"
    (models predict different classes), or a model name (that model wrong).
    `predicted_classes` matches any model's prediction.
    """
    df = merged
    oks = df[[f"{m}_ok" for m in models]]
    if wrong_by == "any":
        mask = ~oks.all(axis=1)
    elif wrong_by == "all":
        mask = ~oks.any(axis=1)
    elif wrong_by == "disagree":
        preds = df[[f"{m}_pred" for m in models]]
        mask = preds.nunique(axis=1) > 1
    elif wrong_by in models:
        mask = ~df[f"{wrong_by}_ok"]
    else:
        raise ValueError(f"wrong_by must be any, all, disagree or one of {list(models)}; "
                         f"got {wrong_by!r}")
    if true_classes:
        mask &= df["true"].isin(true_classes)
    if predicted_classes:
        pmask = np.zeros(len(df), dtype=bool)
        for m in models:
            pmask |= df[f"{m}_pred"].isin(predicted_classes).to_numpy()
        mask &= pmask
    return df[mask].reset_index(drop=True)
