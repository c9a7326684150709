"""The Overview's table of the "unlike the training data" score, from a run's ood.json: how well
it tells the test images from foreign images and from shifted copies of themselves."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from dashboard.figures.common import FigureDataError, _fmt, _num, model_label

# ood.json keys: (AUROC per kind, share flagged per kind, how the rows of that group are named)
GROUPS = (("auroc", "flagged", "foreign: {}"), ("shift_auroc", "shift_flagged", "shifted: {}"))


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.0%}"


def _model_rows(name: str, e: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """One model's (AUROC, share flagged) as text per row label, in ood.json's order."""
    out = {"test images (the reference)":
           ("–", _pct(_num(e.get("test_flagged"), f"{name} test share flagged")))}
    for auc_key, flag_key, row in GROUPS:
        aucs, flagged = e.get(auc_key), e.get(flag_key)
        shares = flagged if isinstance(flagged, Mapping) else {}
        for kind, value in (aucs.items() if isinstance(aucs, Mapping) else ()):
            out[row.format(kind.replace("_", " "))] = (
                _fmt(_num(value, f"{name} {kind} AUROC")),
                _pct(_num(shares.get(kind), f"{name} {kind} share flagged")))
    return out


def ood_table(report: Mapping[str, Any]) -> pd.DataFrame | None:
    """One row per kind of image (the test images themselves, each foreign kind, each shift),
    two columns per model: AUROC against the test images and the share the flag marks. Runs
    fitted before the shifted AUROCs existed get foreign rows only; None when no model has a
    score. Values that are not numbers raise FigureDataError."""
    models = report.get("models") if isinstance(report, Mapping) else None
    if not isinstance(models, Mapping):
        raise FigureDataError(f"ood.json needs a 'models' dict, got {models!r}")
    rows: dict[str, dict[str, str]] = {}
    for name, e in models.items():
        if not isinstance(e, Mapping):
            raise FigureDataError(f"ood.json entry of {name!r} is not a dict: {e!r}")
        for row, (auc, share) in _model_rows(name, e).items():
            rows.setdefault(row, {})[f"{model_label(name)} AUROC"] = auc
            rows[row][f"{model_label(name)} flagged"] = share
    if not rows:
        return None
    frame = pd.DataFrame.from_dict(rows, orient="index").fillna("–")
    return frame.rename_axis("images").reset_index()


FOREIGN_NOTE = ("AUROC: how well each model's score tells the test images from those images "
                "(1.0: always, 0.5: not at all); flagged: the share the flag marks (set to "
                "mark about 5 % of validation images). Foreign: images no MRI model should "
                "trust (noise, gradients, photo tiles, synthetic phantoms).")
SHIFTED_NOTE = ("Shifted: the test images under each robustness shift at its middle severity; "
                "still brain MRI, so a low AUROC there means the flag stays silent on such a "
                "change, and the answer's trust rests on the robustness figures above.")


def ood_caption(table: pd.DataFrame) -> str:
    """The caption under `ood_table`'s table; "Shifted" is explained only when the table has
    shifted rows (runs fitted before the shifted AUROCs have none)."""
    shifted = any(str(row).startswith("shifted: ") for row in table["images"])
    return FOREIGN_NOTE + (" " + SHIFTED_NOTE if shifted else "")
