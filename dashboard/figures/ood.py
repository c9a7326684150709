"""The Overview's table of the "unlike the training data" score, from a run's ood.json: how well
it tells the test images from foreign images and from shifted copies of themselves."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from dashboard.figures.common import FigureDataError, _fmt, _num, model_label
from pipeline.ood import FAR_MARGIN

# ood.json keys: (AUROC per kind, share flagged per kind, share far unlike per kind, how the rows
# of that group are named)
GROUPS = (("auroc", "flagged", "far", "foreign: {}"),
          ("shift_auroc", "shift_flagged", "shift_far", "shifted: {}"))


def _pct(value: float) -> str:
    """"25%"; "<1%" for a share above 0 that rounds to 0 (1 of 394 read "0%": a review)."""
    if math.isnan(value):
        return "n/a"
    return "<1%" if 0 < value < 0.005 else f"{value:.0%}"


def _model_rows(name: str, e: Mapping[str, Any]) -> dict[str, tuple[str, str, str | None]]:
    """One model's (AUROC, share flagged, share far unlike) as text per row label, in ood.json's
    order; the last None for a score fitted before the far threshold existed."""
    has_far = "test_far" in e

    def far(value: Any, what: str) -> str | None:
        return _pct(_num(value, f"{name} {what} share far unlike")) if has_far else None

    out = {"test images (the reference)":
           ("–", _pct(_num(e.get("test_flagged"), f"{name} test share flagged")),
            far(e.get("test_far"), "test"))}
    for auc_key, flag_key, far_key, row in GROUPS:
        aucs, flagged, fars = e.get(auc_key), e.get(flag_key), e.get(far_key)
        shares = flagged if isinstance(flagged, Mapping) else {}
        fars = fars if isinstance(fars, Mapping) else {}
        for kind, value in (aucs.items() if isinstance(aucs, Mapping) else ()):
            out[row.format(kind.replace("_", " "))] = (
                _fmt(_num(value, f"{name} {kind} AUROC")),
                _pct(_num(shares.get(kind), f"{name} {kind} share flagged")),
                far(fars.get(kind), kind))
    return out


def ood_table(report: Mapping[str, Any]) -> pd.DataFrame | None:
    """One row per kind of image (the test images themselves, each foreign kind, each shift),
    two or three columns per model: AUROC against the test images, the share the flag marks and
    the share it finds far unlike (`ood.FAR`; no column for scores fitted before it existed).
    Runs fitted before the shifted AUROCs existed get foreign rows only; None when no model has
    a score. Values that are not numbers raise FigureDataError."""
    models = report.get("models") if isinstance(report, Mapping) else None
    if not isinstance(models, Mapping):
        raise FigureDataError(f"ood.json needs a 'models' dict, got {models!r}")
    rows: dict[str, dict[str, str]] = {}
    for name, e in models.items():
        if not isinstance(e, Mapping):
            raise FigureDataError(f"ood.json entry of {name!r} is not a dict: {e!r}")
        for row, (auc, share, far) in _model_rows(name, e).items():
            rows.setdefault(row, {})[f"{model_label(name)} AUROC"] = auc
            rows[row][f"{model_label(name)} flagged"] = share
            if far is not None:
                rows[row][f"{model_label(name)} far"] = far
    if not rows:
        return None
    frame = pd.DataFrame.from_dict(rows, orient="index").fillna("–")
    return frame.rename_axis("images").reset_index()


FOREIGN_NOTE = ("AUROC: how well each model's score tells the test images from those images "
                "(1.0: always, 0.5: not at all); flagged: the share the flag marks (set to "
                "mark about 5 % of validation images). Foreign: images no MRI model should "
                "trust (noise, gradients, photo tiles, synthetic phantoms).")
FAR_NOTE = (f"Far: the share found far unlike the training data (a score beyond {FAR_MARGIN:g} "
            "times the most unusual validation image's), whose answers the cards fold away.")
SHIFTED_NOTE = ("Shifted: the test images under each robustness shift at its middle severity; "
                "still brain MRI, so a low AUROC there means the flag stays silent on such a "
                "change, and the answer's trust rests on the robustness figures above.")


def ood_caption(table: pd.DataFrame) -> str:
    """The caption under `ood_table`'s table; "Shifted" is explained only when the table has
    shifted rows (runs fitted before the shifted AUROCs have none), "Far" only when it has far
    columns (scores fitted before the far threshold have none)."""
    shifted = any(str(row).startswith("shifted: ") for row in table["images"])
    far = any(str(c).endswith(" far") for c in table.columns)
    return (FOREIGN_NOTE + (" " + FAR_NOTE if far else "")
            + (" " + SHIFTED_NOTE if shifted else ""))
