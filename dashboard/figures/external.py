"""The Explanation-quality page's table of `explain-eval --data DIR` results: a researcher's own
folders, measured against their own masks, one row per model, folder and method. Each file is
`<run>/<model>/explanations-external/<name>.json` (`pipeline.explain.external`); nothing in the
dashboard read them before (a review, 2026-12-06). A pure function, so tests call it directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from dashboard.figures.common import model_label
from pipeline.explain import METHOD_LABELS  # the registry's labels; no TensorFlow import


def _share(value: Any) -> str:
    return "–" if not isinstance(value, int | float) or isinstance(value, bool) else f"{value:.2f}"


def _pointing(result: Mapping[str, Any]) -> str:
    """"0.86 (6 of 7, 0.49–0.97)": the share, its count and its Wilson interval."""
    value, n = result.get("pointing_game"), result.get("n_localisation")
    if not isinstance(value, int | float) or not isinstance(n, int) or not n:
        return "–"
    ci = result.get("pointing_game_ci")
    spread = f", {ci[0]:.2f}–{ci[1]:.2f}" if isinstance(ci, list) and len(ci) == 2 else ""
    return f"{value:.2f} ({round(value * n)} of {n}{spread})"


def _images(result: Mapping[str, Any]) -> str:
    """"120 (97)": the folder's images, those with a mask in brackets."""
    n, masked = result.get("n"), result.get("n_localisation")
    return f"{'?' if n is None else n} ({'?' if masked is None else masked})"


def _copies(result: Mapping[str, Any]) -> str:
    """How many images are the run's training or validation images or copies of them
    (`n_seen`, exact or near; a file written before it counted byte-identical ones,
    `n_exact`)."""
    overlap = (result.get("source") or {}).get("overlap_with_training") or {}
    n = overlap.get("n_seen", overlap.get("n_exact"))
    return "not checked" if n is None else ("none" if n == 0 else f"{n} (not held out)")


# The table's headers. Drawn by `st.table`, which wraps, in ten columns: twelve in a grid that
# kept each cell on one line were 1409 px wide at 1280 px (818 px of room), so the last five
# columns were a sideways scroll away. Figures that belong together share a column.
POINTING = "Pointing game (hits of n, 95% CI)"
BASELINES = "Centre of head / chance"


def external_table(results: Mapping[str, Sequence[Mapping[str, Any]]]) -> pd.DataFrame | None:
    """One row per model and external result file; None when there is none."""
    rows = []
    for model, files in results.items():
        for r in files:
            rows.append({
                "Model": model_label(model),
                "Folder": _folder(r),
                "Method": METHOD_LABELS.get(str(r.get("method")), str(r.get("method"))),
                "Images (with a mask)": _images(r),
                POINTING: _pointing(r),
                BASELINES: (f"{_share(r.get('pointing_game_centre'))} / "
                            f"{_share(r.get('pointing_game_chance'))}"),
                "Energy in mask": _share(r.get("energy_in_mask")),
                "Flagged outside the head": r.get("n_outside_head_flagged"),
                "Copies of training images": _copies(r),
                "Measured": str(r.get("created") or "")[:10],
            })
    return pd.DataFrame(rows) if rows else None


def _folder(result: Mapping[str, Any]) -> str:
    source = result.get("source") or {}
    return str(source.get("folder") or source.get("name") or "?")


def by_folder(results: Mapping[str, Sequence[Mapping[str, Any]]]
              ) -> dict[str, dict[str, list[Mapping[str, Any]]]]:
    """folder -> model -> its results for that folder (one per method measured there): the
    two-heatmap record per folder takes each model's default among them."""
    out: dict[str, dict[str, list[Mapping[str, Any]]]] = {}
    for model, files in results.items():
        for r in files:
            out.setdefault(_folder(r), {}).setdefault(model, []).append(r)
    return out
