"""The many-uploads summary and a series' table of slices, with their thumbnails, as an HTML
table: in `st.dataframe` a thumbnail's accessible name was its data URL (screen readers read
"data:image/png;base64,iVBOR…", thousands of characters, for every row) and a grid cell takes no
alt text. Here each thumbnail is an <img> whose alt is the image's name, escaped like every
other cell (names are user-supplied).

`summary_html` is pure, so tests parse its output; `draw_summary` puts it on the page. An HTML
table has no clickable headers: `sort_choices` and `sort_order` are what the Predict page's
keyed "Sort the table by" box offers and does (the box's state is the one truth of the order).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

import cv2
import numpy as np
import pandas as pd
import streamlit as st

from dashboard.answers import agreement
from pipeline.evaluate.together import qualifiers as pooled_words
from pipeline.names import TOGETHER_LABEL, class_label, display_name, percent

# Thumbnails are drawn this tall (px), at most; `thumbnail_url` makes them 72 px on their
# longer side, so they stay sharp on a 1.5x screen
THUMB_PX = 44
# Taller summaries scroll inside their box (a series can have 100 slices)
MAX_HEIGHT_PX = 400
CSS_CLASS = "thumbs-table"
UPLOAD_ORDER = "order"  # `sort_choices`' first choice: the rows as uploaded


def thumbnail_url(image: np.ndarray, side: int = 72) -> str:
    """A small PNG of `image` as a data URL (for the summary table's image column)."""
    import base64

    h, w = image.shape[:2]
    scale = side / max(h, w)
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA)
    ok, png = cv2.imencode(".png", cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    return "data:image/png;base64," + base64.b64encode(png.tobytes()).decode() if ok else ""


# what a model's flags add to its answer in the table, as the card's answer line says them: a
# clinician's review (2026-12-07) read "glioma (84%)" where the card said "84%, weak"
QUALIFIERS = {"weak": "weak", "far": "far unlike its training data",
              "unlike": "unlike its training data"}


def qualifiers(flags: Sequence[str], model: str) -> str:
    """", weak, unlike its training data": `QUALIFIERS` of the flags (`dashboard.flags.Flag`,
    which know their kind and models) about `model`, in `QUALIFIERS`' order; "" for none."""
    kinds = {getattr(f, "kind", None) for f in flags if model in getattr(f, "models", ())}
    return "".join(f", {words}" for kind, words in QUALIFIERS.items() if kind in kinds)


def summary_frame(thumbs: Sequence[str], names: Sequence[str],
                  probs: Mapping[str, np.ndarray], class_names: Sequence[str],
                  flags: Sequence[Sequence[str]],
                  together: np.ndarray | None = None,
                  hidden: Sequence[str] | None = None,
                  refs: Sequence[str] | None = None,
                  together_weak_below: float | None = None) -> pd.DataFrame:
    """One row per analysed image for the many-uploads summary: thumbnail, each model's answer
    with its confidence (with `together`, (N, C) from `evaluate.together`, the models' pooled
    answer after them, as the card's answer line has it: weak below `together_weak_below`,
    or neither model's answer, `together.qualifiers`; a model's weak or unlike flag said
    beside its confidence, `qualifiers`), agreement, how many flags it raised,
    and the file name last (a long name first pushed the answers off a narrow window).
    `hidden`: per image, why its card hides the answers (`card_flags.withheld`: "may be CT,
    not MRI"), or "": such a row says that in place of its answers and agreement. `refs`: how
    the CSV and the PDF name each image (`Upload.ref`): an "upload" column before the file's
    name gives an upload's number ("3" for "upload 3"; the dataset's folders share names, and
    a review could not match rows to the CSV's)."""
    agree = agreement(probs)
    named = {**probs, **({TOGETHER_LABEL: together} if together is not None else {})}
    rows = []
    for i, name in enumerate(names):
        row: dict[str, Any] = {"image": thumbs[i]}
        why = hidden[i] if hidden else ""
        for model, p in named.items():
            k = int(np.argmax(p[i]))
            said = (pooled_words(probs, p, i, together_weak_below) if model == TOGETHER_LABEL
                    else qualifiers(flags[i], model))  # the summary dropped the pool's "weak"
            row[display_name(model)] = (f"hidden: {why}" if why else
                                        f"{class_label(class_names[k])} ({percent(p[i][k])}"
                                        f"{said})")
        row["models agree"] = "–" if why else bool(agree[i])
        row["flags"] = len(flags[i])
        if refs is not None:
            row["upload"] = refs[i].removeprefix("upload ") if refs[i].startswith("upload ") \
                else ""
        row["file"] = name
        rows.append(row)
    return pd.DataFrame(rows)


def sort_choices(models: Sequence[str], series: bool = False) -> dict[str, str]:
    """The summary's orders, value -> label, upload order first. The grid sorted by any column,
    but its answer cells are text ("Glioma (87%)"): these sort by what a reader looks for.
    `series`: a series' table of slices, whose first order is the slices' and has no file
    name (its slices' names are their order)."""
    choices = {UPLOAD_ORDER: "slice order" if series else "upload order",
               "flags": "most flags first", "disagree": "disagreements first"}
    for m in models:
        choices[f"confidence:{m}"] = f"{display_name(m)}: least confident first"
        choices[f"answer:{m}"] = f"{display_name(m)}: by answer"
    if not series:
        choices["name"] = "file name"
    return choices


def _natural(name: str) -> list[Any]:
    """A name's sort key with its numbers as numbers: "scan 2" before "scan 10"."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.casefold())
            for part in re.split(r"(\d+)", name) if part]


def sort_order(choice: str, names: Sequence[str], probs: Mapping[str, np.ndarray],
               flags: Sequence[Sequence[str]]) -> list[int]:
    """The rows' order for `choice` (a key of `sort_choices`), as indices into the images;
    ties, and a choice not offered (a model gone from the run), keep the upload order.
    "answer:<model>": grouped by that model's class in the run's order, most confident first."""
    kind, _, model = choice.partition(":")
    p = probs.get(model)
    keys: list[Any]
    if kind == "flags":
        keys = [-len(f) for f in flags]
    elif kind == "disagree":
        keys = [bool(a) for a in agreement(probs)]
    elif kind == "confidence" and p is not None:
        keys = [float(np.max(row)) for row in p]
    elif kind == "answer" and p is not None:
        keys = [(int(np.argmax(row)), -float(np.max(row))) for row in p]
    elif kind == "name":
        keys = [_natural(n) for n in names]
    else:
        return list(range(len(names)))
    return sorted(range(len(names)), key=keys.__getitem__)  # stable: ties keep upload order


def _cell(value: object) -> str:
    """A cell's text: booleans in words (the grid drew a tick box), all of it escaped."""
    if isinstance(value, bool):
        value = "yes" if value else "no"
    return escape(str(value))


def summary_html(frame: pd.DataFrame, name_column: str, image_column: str = "image",
                 label: str = "") -> str:
    """`frame` (`summary_frame`'s rows) as an HTML table: the `image_column` holds data
    URLs, drawn as images whose alt text is that row's `name_column`; every other column as
    escaped text. `label` names the table for screen readers (aria-label)."""
    head = "".join(f'<th scope="col">{_cell(c)}</th>' for c in frame.columns)
    rows = []
    for _, row in frame.iterrows():
        cells = []
        for column, value in row.items():
            if column == image_column:
                src = str(value) if str(value).startswith("data:image/") else ""
                cells.append(f'<td><img src="{escape(src)}" alt="{_cell(row[name_column])}" '
                             f'style="max-height:{THUMB_PX}px;max-width:{THUMB_PX}px"></td>')
            else:
                cells.append(f"<td>{_cell(value)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<div class="{CSS_CLASS}" style="max-height:{MAX_HEIGHT_PX}px" tabindex="0" '
            f'role="region" aria-label="{_cell(label)}"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def draw_summary(frame: pd.DataFrame, name_column: str, label: str) -> None:
    """Draw `summary_html(frame, name_column, label=label)` on the page."""
    st.html(summary_html(frame, name_column, label=label))
