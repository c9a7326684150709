"""A DICOM series on the Predict page: a slice slider and every slice's answers.

A multi-frame DICOM file or a zip of .dcm slices arrives as one `core.Upload` with `slices`.
`chosen_slice` says which slice the user asked for, before anything is explained, so the page
explains and draws it like any single image; `series_panel` draws the slider and a table of each
slice's answers just above that slice's card, so a series' controls sit with its card, on the
card's page only. Slices are keyed by the hash of their pixels (`core.pixel_digest`); nothing of
the DICOM file but its pixels ever gets this far. Inference is `dashboard.inference.explain`
(results cached per slice), drawing is here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import streamlit as st

from dashboard import answers, card_flags, core, inference, summary_table, views
from dashboard.flags import image_warnings
from dashboard.inference import Settings
from dashboard.report_pdf import report_pdf
from pipeline.artifacts import Run
from pipeline.data.membership import FILE as MEMBERSHIP_FILE
from pipeline.data.membership import Membership, Seen


@st.cache_data(max_entries=1024, show_spinner=False)
def _find(run_path: str, stamp: int, digest: str, _membership: Membership,
          _image: np.ndarray) -> Seen | None:
    return _membership.find(_image)


def seen_in_run(run: Run, membership: Membership, upload: core.Upload) -> Seen | None:
    """`membership.find` for `upload`'s image, kept per run, split_hashes.json version and
    pixel digest: 31 ms a 512-px image, and a series' table looks up every slice (64 at most)
    on every rerun."""
    try:
        stamp = (run.path / MEMBERSHIP_FILE).stat().st_mtime_ns
    except OSError:
        stamp = 0
    return _find(str(run.path), stamp, upload.digest, membership, upload.image)


def slice_names(upload: core.Upload) -> list[str]:
    """How a series' analysed slices are named in its table and CSV: "slice 1" ... "slice n",
    by their number in the file (a long series' analysed slices skip some)."""
    return [f"slice {k}" for k in upload.slice_numbers()]


def slider_key(upload: core.Upload, prefix: str) -> str:
    """The slice slider's widget key: one per series (the hash of its file), not per position,
    so that removing another upload leaves each series' choice with its series."""
    return f"{prefix}_slice_{upload.digest[:16]}"


def _kept_key(upload: core.Upload, prefix: str) -> str:
    return f"{prefix}_slice_kept_{upload.digest[:16]}"


def chosen_slice(upload: core.Upload, prefix: str) -> int:
    """The slice (1-based) the user asked for: the slider's state, else the last choice kept,
    else the middle slice.

    The slider is drawn only with its card, and a card on another page of cards is not drawn;
    Streamlit drops the state of a widget left out of a script run, so the choice is also kept
    under a key of its own, which brings it back when the card's page is shown again."""
    assert upload.slices is not None
    numbers = upload.slice_numbers()
    # the slider holds the slice's number in the file (`Upload.slice_numbers`)
    shown = st.session_state.get(slider_key(upload, prefix))
    if shown is None:
        shown = st.session_state.get(_kept_key(upload, prefix), numbers[(len(numbers) - 1) // 2])
    k = int(np.searchsorted(numbers, int(shown)))  # the nearest analysed one at or above
    k = min(k, len(numbers) - 1)
    st.session_state[_kept_key(upload, prefix)] = numbers[k]
    return k + 1


def sort_key(upload: core.Upload, prefix: str) -> str:
    """The slice table's "Sort the slices by" box: one per series, as `slider_key`; kept
    across pages (`state.KEPT_PREFIXES`); an order the run does not offer starts afresh."""
    return f"{prefix}_slice_sort_{upload.digest[:16]}"


def series_panel(i: int, upload: core.Upload, run: Run, predictor: Any,
                 explainers: dict[str, Any], settings: Settings, class_names: Sequence[str],
                 prefix: str, notes: Mapping[str, str] | None = None,
                 note_seen: Callable[[core.Upload], None] | None = None,
                 run_title: str = "", model_hashes: Mapping[str, str] | None = None) -> None:
    """The slider and per-slice answers of series upload `i`, drawn above its card.

    `notes`: the slices' CSV's provenance columns (run, time, model-file hashes, disclaimer).
    `note_seen`: marks a slice found in the run's splits (`core.Upload.mark_seen`), as the page
    marks a single upload: the table's flags and the CSV's warnings then carry a training or
    validation slice's note, as the summary's do for an image. The table sorts as the summary
    does (`summary_table.sort_choices`), by its own keyed box.
    The slider's state was read by `chosen_slice` earlier in this run; moving it reruns the page,
    which then explains and draws the newly chosen slice.
    `run_title`, `model_hashes`: the Slices PDF's heading and model files, as on every report."""
    assert upload.slices is not None
    n = len(upload.slices)
    key = slider_key(upload, prefix)
    # Set through the Session State API, not `value=`: the kept choice when the card comes back
    # from another page, and no "default value and Session State" warning on every rerun.
    numbers = upload.slice_numbers()
    st.session_state[key] = numbers[chosen_slice(upload, prefix) - 1]
    with st.container(border=True, key=f"{prefix}_series_{i}"):
        st.markdown(f"**{core.literal(upload.name)}** · a series of {max(upload.total, n)} "
                    "slices")
        if upload.note:
            st.caption(upload.note)
        # a select slider: a long series' analysed slices are not every slice of the file,
        # and the slider shows the same numbers as the table and the card
        st.select_slider("Slice shown below", options=numbers, key=key,
                         help="Every slice listed is analysed; the table gives each one's "
                              "answers, the card below shows the chosen slice's heatmaps.")
        slices = [upload.slice_view(s) for s in range(n)]
        for s in slices if note_seen else ():
            note_seen(s)
        results = inference.explain(run, predictor, explainers, slices, settings)
        if results.probs:
            names = slice_names(upload)
            flags = [image_warnings(*card_flags.image_flags(results, j), s.seen, s.seen_split,
                                    s.seen_exact) for j, s in enumerate(slices)]
            thumbs = [summary_table.thumbnail_url(s.image) for s in slices]
            hidden = [card_flags.withheld(f) for f in flags]  # why a slice's answers fold
            frame = summary_table.summary_frame(thumbs, names, results.probs, class_names,
                                                flags, results.together, hidden,
                                                together_weak_below=results.together_weak_below)
            orders = summary_table.sort_choices(list(results.probs), series=True)
            key = sort_key(upload, prefix)
            if st.session_state.get(key) not in orders:  # a model this run lacks, or unset
                st.session_state[key] = summary_table.UPLOAD_ORDER
            order_by = st.selectbox("Sort the slices by", list(orders), key=key,
                                    format_func=orders.__getitem__,
                                    width=views.SELECT_WIDTH["sort"])
            summary_table.draw_summary(
                frame.rename(columns={"file": "slice"}).iloc[
                    summary_table.sort_order(order_by, names, results.probs, flags)],
                "slice", label=f"Every analysed slice of {upload.name}, sorted by "
                               f"{orders[order_by]}")
            csv = answers.to_csv_bytes(answers.predictions_frame(names, results.probs, class_names,
                                                           warnings=flags,
                                                           together=results.together,
                                                           withheld=hidden, together_weak_below=(
                                                               results.together_weak_below)),
                                    {**(notes or {}), "probabilities": results.calibration_note}
                                    if results.calibration_note else notes)
            row = st.container(horizontal=True, wrap=True, key=f"{prefix}_series_downloads_{i}")
            row.download_button("Slices CSV", csv, file_name=f"slices-{upload.digest[:12]}.csv",
                                mime="text/csv", key=f"{prefix}_series_csv_{i}",
                                on_click="ignore", icon=":material/download:")
            # every slice's page: its heatmaps are computed above already (the table's answers
            # come from the same pass), so the PDF costs only drawing, done when clicked
            row.download_button(
                "Slices PDF",
                lambda: report_pdf([views.report_page(s, j, results, class_names, settings)
                                    for j, s in enumerate(slices)], run_title,
                                   views.colour_scale(), model_hashes=model_hashes),
                file_name=f"slices-{upload.digest[:12]}.pdf", mime="application/pdf",
                key=f"{prefix}_series_pdf_{i}", on_click="ignore",
                icon=":material/picture_as_pdf:",
                help="One page per analysed slice of this series, each with both models' "
                     "heatmaps (the card's settings).")
