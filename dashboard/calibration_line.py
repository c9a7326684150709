"""The line under a card's probabilities, in the CSV and in the PDF: what the percentages are
(temperature-scaled on validation images) and how far off they ran on the run's test images.
A pure function, tested directly; `records.calibration_note` gathers its inputs for a run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.names import display_name


def calibration_note(temperatures: Mapping[str, float | None],
                     tests: Mapping[str, Mapping[str, Any] | None],
                     other_source: bool = False) -> str:
    """The line under a card's probabilities (and in the CSV and PDF): they are temperature-
    scaled (`temperatures`: per model, the T the run applies, `Predictor.temperature`) on
    validation images like the training data, and run high on images of other sources; with
    each model's test ECE scaled and unscaled (`tests`: per model, metrics.json), said of the
    run's test split, of the same source or (`other_source`) the dataset's official Testing/
    folder. "" when no model is scaled. A T below 1 sharpens: on the official Testing/ folder
    it took the ECE from 0.07-0.08 to 0.12-0.15 (h64's review), and the cards said nothing of
    it."""
    scaled = {m: t for m, t in temperatures.items() if isinstance(t, (int, float))}
    if not scaled:
        return ""
    # each model's facts together, named once: said apart ("T = …" then "ECE …" per model) the
    # line took three lines under a card at 1280 px (336 characters), two now (259, measured in
    # Chromium by tests/test_dashboard_browser.py)
    parts, measured = [], False
    for m, t in scaled.items():
        test = tests.get(m) or {}
        after, before = test.get("ece"), test.get("ece_uncalibrated")
        part = f"{display_name(m)} T = {t:.2f}"
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (after, before)):
            part += f", ECE {after:.3f} ({before:.3f} unscaled)"
            measured = True
        parts.append(part)
    line = ("Percentages temperature-scaled on validation images like the training data: they "
            f"run high on other sources. {'; '.join(parts)}.")
    if measured:
        line += (" ECE on the official Testing/ folder, another source." if other_source
                 else " ECE on test images of the same source.")
    return line
