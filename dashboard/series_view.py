"""A DICOM series on the Predict page: a slice slider and every slice's answers.

A multi-frame DICOM file or a zip of .dcm slices arrives as one `core.Upload` with `slices`.
`series_panel` draws the slider (widget state is the truth about which slice is shown) and a
table of each slice's answers, and returns the chosen slice as an Upload of its own, which the
page then explains and draws like any single image. Slices are keyed by the hash of their pixels
(`core.pixel_digest`); nothing of the DICOM file but its pixels ever gets this far.
Inference is `dashboard.inference.explain` (results cached per slice), drawing is here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

from dashboard import core, inference, views
from dashboard.inference import Settings
from pipeline.artifacts import Run


def slice_names(n: int) -> list[str]:
    """How a series' slices are named in its table and CSV: "slice 1" ... "slice n"."""
    return [f"slice {k + 1}" for k in range(n)]


def series_panel(i: int, upload: core.Upload, run: Run, predictor: Any,
                 explainers: dict[str, Any], settings: Settings, class_names: Sequence[str],
                 prefix: str, notes: Sequence[str] = ()) -> core.Upload:
    """The slider and per-slice answers of series upload `i`; returns the chosen slice.

    `notes`: the header lines of the slices' CSV (run, time, model-file hashes, disclaimer)."""
    assert upload.slices is not None
    n = len(upload.slices)
    with st.container(border=True, key=f"{prefix}_series_{i}"):
        st.markdown(f"**{core.literal(upload.name)}** · a series of {n} slices")
        if upload.note:
            st.caption(upload.note)
        k = st.slider("Slice shown below", 1, n, value=(n + 1) // 2,
                      key=f"{prefix}_slice_{upload.digest[:16]}",
                      help="Every slice is analysed; the table gives each one's answers, the "
                           "card below shows the chosen slice's heatmaps.")
        slices = [upload.slice_view(s) for s in range(n)]
        results = inference.explain(run, predictor, explainers, slices, settings)
        if results.probs:
            names = slice_names(n)
            flags = [sum(views.image_flags(results, j), []) for j in range(n)]
            frame = core.summary_frame([core.thumbnail_url(s.image) for s in slices], names,
                                       results.probs, class_names, flags)
            st.dataframe(frame.rename(columns={"file": "slice"}), hide_index=True,
                         key=f"{prefix}_series_table_{i}", height=min(36 * n + 40, 400),
                         column_config={"image": st.column_config.ImageColumn("image",
                                                                              width="small")})
            csv = core.to_csv_bytes(core.predictions_frame(names, results.probs, class_names),
                                    notes)
            st.download_button("Slices CSV", csv, file_name=f"slices-{upload.digest[:12]}.csv",
                               mime="text/csv", key=f"{prefix}_series_csv_{i}",
                               on_click="ignore", icon=":material/download:")
    return slices[k - 1]
