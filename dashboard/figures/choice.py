"""How each model's default explanation was chosen: explain_choice.json's candidate table.

`explain-choose` scores every method at each candidate layer by the pointing game on validation
images with a tumour box (never test images) and keeps the table behind its choice in the run
(issue 17). The Explanation quality page showed only the choice; a student comparing methods
could not see what it was chosen from (a review). `choice_table` is that table as the page
shows it, best first; `choice_caption` the rule and the baselines in words. Pure: dicts in,
a DataFrame and a string out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from dashboard.figures.quality import method_label
from dashboard.layer_names import method_layer_option

CHOSEN = "chosen"  # the chosen row's mark in the last column


def _number(x: Any) -> float | None:
    ok = isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
    return float(x) if ok else None


def choice_table(entry: Mapping[str, Any], recorded_layer: str | None = None
                 ) -> pd.DataFrame | None:
    """One model's candidates (a first column marking the chosen one, then method, layer,
    pointing game, energy in box, tied with the best by the rule's test), best pointing game
    first; None for an entry without a usable table (a choice made before tables were kept,
    or a damaged file). `recorded_layer`: the manifest's Grad-CAM layer, named "last conv
    block" as on Predict."""
    rows = entry.get("table")
    if not isinstance(rows, list):
        return None
    out = []
    for r in rows:
        pointing = _number(r.get("pointing_game")) if isinstance(r, Mapping) else None
        if pointing is None:
            continue
        energy = _number(r.get("energy_in_mask"))
        layer = r.get("layer")
        chosen = r.get("method") == entry.get("method") and layer == entry.get("layer")
        out.append({
            # first: a last column was cut off at 1280 px
            "": CHOSEN if chosen else "",
            "method": method_label(str(r.get("method"))),
            "layer": method_layer_option(str(r.get("method")), layer, recorded_layer)
            if isinstance(layer, str) and layer else "input pixels",
            "pointing game": f"{pointing:.1%}",
            "energy in box": "–" if energy is None else f"{energy:.2f}",
            "tied": "yes" if r.get("tied_with_best") else "no",  # with the best, by the rule
            "_sort": -pointing})
    if not out:
        return None
    frame = pd.DataFrame(out).sort_values("_sort", kind="stable").drop(columns="_sort")
    return frame.reset_index(drop=True)


def choice_caption(entry: Mapping[str, Any]) -> str:
    """"Chosen on 352 validation images with a tumour box (never test images): <rule>. Chance
    3%; a heatmap peaking at the image's centre 20%." from the entry's own fields."""
    n = entry.get("n_images")
    said = (f"Chosen on {n} validation images with a tumour box" if isinstance(n, int)
            else "Chosen on validation images with a tumour box") + " (never test images)"
    rule = entry.get("rule")
    if isinstance(rule, str) and rule:
        said += f": {rule}"
    said += "."
    chance, centre = _number(entry.get("chance")), _number(entry.get("pointing_game_centre"))
    if chance is not None:
        said += f" Chance {chance:.0%}"
        said += (f"; a heatmap that always peaks at the image's centre {centre:.0%}."
                 if centre is not None else ".")
    return said
