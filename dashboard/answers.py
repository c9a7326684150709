"""The answers of a Predict page as text and tables, without Streamlit: each image's answer
line (`verdict_line`), the downloadable CSV (`predictions_frame`, `to_csv_bytes`) and the
notes over the cards (`analysis_note`, `agreement_note`). Moved out of `core` (uploads and
their decoding) so each module stays a readable size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.csv_safe import to_csv
from pipeline.evaluate.together import qualifiers as pooled_words
from pipeline.names import TOGETHER_COLUMN, TOGETHER_LABEL, class_label, display_name, percent


def agreement(probs: Mapping[str, np.ndarray]) -> np.ndarray:
    """(N,) bool: all models predict the same class for the image."""
    preds = [np.asarray(p).argmax(axis=1) for p in probs.values()]
    if not preds:
        return np.zeros(0, dtype=bool)
    return np.all([p == preds[0] for p in preds], axis=0)


def predictions_frame(refs: Sequence[str], probs: Mapping[str, np.ndarray],
                      class_names: Sequence[str],
                      true_labels: Sequence[str | None] | None = None,
                      digests: Sequence[str] | None = None,
                      warnings: Sequence[Sequence[str]] | None = None,
                      together: np.ndarray | None = None,
                      withheld: Sequence[str] | None = None,
                      failed: Sequence[tuple[int, str, str, str]] = (),
                      together_weak_below: float | None = None) -> pd.DataFrame:
    """One row per image: each model's predicted class, confidence and probabilities (with
    `together`, (N, C) from `evaluate.together`, the models' pooled answer as "averaged_*"
    columns after them, "averaged_weak" below `together_weak_below`, as `predict`'s), and with
    `warnings` (per image, the sentences beside its answers and heatmaps) their count and text,
    so that a table read away from the page keeps them. `withheld`: per image, why its card
    hides the answers (`card_flags.withheld`), an `answers_withheld` column before them (a
    review's spreadsheet read noise's "no_tumor 0.81" as an answer). `failed`: (good images
    before it, ref, digest, error) per unreadable file: a row in its place with only its
    `error` (a review's 5 uploads left 3 rows, no trace of the others).

    The `image` column holds `refs` (`Upload.ref`: "upload 3", a slice's number), never a file
    name: this frame is the downloadable CSV, and names can identify a patient. `digests`: a
    short SHA-256 per image (`sha256` column) that matches a row to its file without its name.
    """
    rows = []
    agree = agreement(probs)
    for i, ref in enumerate(refs):
        row: dict[str, Any] = {"image": ref}
        if digests is not None:
            row["sha256"] = digests[i]
        if true_labels is not None:
            row["true"] = true_labels[i] or ""
        if withheld is not None:
            row["answers_withheld"] = withheld[i]
        named = {**probs, **({TOGETHER_COLUMN: together} if together is not None else {})}
        for model, p in named.items():
            k = int(np.argmax(p[i]))
            row[f"{model}_predicted"] = class_names[k]
            row[f"{model}_confidence"] = round(float(p[i][k]), 4)
            for c, v in zip(class_names, p[i], strict=True):
                row[f"{model}_p_{c}"] = round(float(v), 4)
        if together is not None and together_weak_below is not None:
            row[f"{TOGETHER_COLUMN}_weak"] = bool(together[i].max() < together_weak_below)
        row["models_agree"] = bool(agree[i])
        if warnings is not None:
            row["n_warnings"] = len(warnings[i])
            row["warnings"] = " | ".join(warnings[i])
        rows.append(row)
    for before, ref, digest, error in sorted(failed, key=lambda f: f[0], reverse=True):
        rows.insert(before, {"image": ref, **({"sha256": digest} if digests is not None else {}),
                             "error": error})  # in upload order
    # counts stay whole numbers where an error row leaves them blank (not "5.0")
    return pd.DataFrame(rows).astype({"n_warnings": "Int64"} if warnings and failed else {})


def analysis_note(n_files: int, seconds: float, earlier: Sequence[float | None]) -> str:
    """How long the good images took, for the caption over the cards. `earlier`: per good
    image, None when (part of) it was explained in this run, else the seconds it took when it
    was explained before (its results came from the result store: a restored upload, a rerun
    for the opacity): such an image is said to be analysed earlier, never "in 0.00 s"."""
    n = len(earlier)
    done = f"{n} of {n_files} file(s)"
    again = [s for s in earlier if s is not None]
    # "on this server": the store is shared, and a new session's first upload of an image
    # someone had analysed read as an analysis the reader never made (a review)
    if n and len(again) == n:
        return (f"{done} analysed earlier on this server (it took {sum(again):.2f} s then) and "
                "shown again from memory")
    note = f"{done} analysed in {seconds:.2f} s"
    if again:
        note += f" ({len(again)} of them analysed earlier on this server, shown again from memory)"
    return note


def agreement_note(agree: Sequence[bool], n_models: int,
                   hidden: Sequence[bool] | None = None) -> str:
    """How many of the good images the models answer alike, for the caption over the cards:
    "the models agree on 3 of 4"; "" for a one-model run, which has no one to agree with (its
    agreement column is all True, and "4 agreement(s)" read as a claim). `hidden`: per image,
    its answers are folded away (`card_flags.withheld`: it may be no MRI); those are not
    counted, and said apart (colour noise counted among "the models agree on 6 of 6", a
    presenter's review)."""
    if n_models < 2:
        return ""
    hidden = list(hidden) if hidden is not None else [False] * len(agree)
    shown = [bool(a) for a, h in zip(agree, hidden, strict=True) if not h]
    n_hidden = len(agree) - len(shown)
    why = f"{n_hidden} image{'s' if n_hidden > 1 else ''}' answers" if n_hidden > 1 else \
        "1 image's answers"
    if n_hidden and not shown:
        return f"no agreement counted ({why} hidden: may not be brain MRI)"
    note = f"the models agree on {sum(shown)} of {len(shown)}"
    return note + (f" shown ({why} hidden: may not be brain MRI)" if n_hidden else "")


# The downloads' encoding: UTF-8 with a byte-order mark. Excel opens a CSV without one in the
# machine's legacy code page, so a run title or a dataset path with "é" showed as "Ã©";
# `pandas.read_csv` drops the mark by itself, and Python's csv module reads it with
# `encoding="utf-8-sig"`. Only the dashboard's downloads: the CLI's CSVs are appended to
# and resumed, where a mark in the middle of a file would be a stray character.
CSV_ENCODING = "utf-8-sig"


def to_csv_bytes(frame: pd.DataFrame, notes: Mapping[str, str] | None = None) -> bytes:
    """The frame as CSV for download (`CSV_ENCODING`); text cells neutralised against
    spreadsheet formulas. `notes` (column -> text: `runinfo.report_notes`) become last columns,
    the same on every row, so that the file opens as it is in pandas and spreadsheets (no
    comment lines)."""
    frame = frame.assign(**{k: " ".join(str(v).splitlines()) for k, v in (notes or {}).items()})
    rows = frame.astype(object).where(frame.notna(), "").itertuples(index=False)
    return to_csv(list(frame.columns), rows).encode(CSV_ENCODING)


def verdict_line(probs: Mapping[str, np.ndarray], i: int, class_names: Sequence[str],
                 true_label: str | None = None, together: np.ndarray | None = None,
                 together_weak_below: float | None = None) -> str:
    """Short text: what each model says about image i, marked right/wrong if the truth is known;
    with `together` ((N, C), `evaluate.together`), the models' pooled answer last, said weak
    below `together_weak_below` (its validation threshold; each model's weak answers have
    their own warning under the line) and when it is neither model's answer."""
    parts = []
    named = {**probs, **({TOGETHER_LABEL: together} if together is not None else {})}
    for model, p in named.items():
        k = int(np.argmax(p[i]))
        said = (pooled_words(probs, p, i, together_weak_below)  # weak, neither model's answer
                if model == TOGETHER_LABEL else "")
        mark = (" :green[✓ right]" if class_names[k] == true_label else " :red[✗ wrong]"
                ) if true_label else ""
        # Classes as likely as the answer at the precision shown: the arg-max picked one of
        # them, which a reader must not take for a decision (a 44% / 44% tie was an answer).
        ties = [class_label(class_names[j]) for j in np.argsort(-p[i]) if j != k
                and round(100 * float(p[i][j])) == round(100 * float(p[i][k]))]
        tie = f", tied with {' and '.join(f'**{c}**' for c in ties)}" if ties else ""
        parts.append(f"{display_name(model)}: **{class_label(class_names[k])}** "
                     f"({percent(p[i][k])}{tie}{said}){mark}")
    return " · ".join(parts)
