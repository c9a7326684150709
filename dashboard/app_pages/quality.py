"""Explanation quality: do the heatmaps point at the tumour, and do they depend on the model?"""

import pandas as pd
import streamlit as st

from dashboard import charts, state
from dashboard import figures as F

CHART_FIX = "Re-run `python -m pipeline explain-eval`."

st.title("Explanation quality")
run = state.require_run()
st.caption("A heatmap can look convincing and still be wrong. These tests measure how far the "
           "explanations of this run can be trusted, on images of its test split.")

expl = state.per_model_json(run, "explanations.json",
                            f"run `python -m pipeline explain-eval --run {run.run_id}`")
if not expl:
    st.stop()

summary = pd.DataFrame({F.model_label(m): {
    "method": e.get("method", "?"), "layer": e.get("layer") or "-",
    "images": e.get("n", "?"), "with a tumour mask": e.get("n_localisation", "?"),
    "explained class": "true class" if e.get("target_mode", "true") == "true" else "predicted",
    "model accuracy on them": (f"{e['accuracy']:.1%}" if isinstance(e.get("accuracy"), float)
                               else "?"),
} for m, e in expl.items()}).astype(str)
st.dataframe(summary, key="quality_summary")


st.subheader("Localisation")
if any(e.get("pointing_game") is not None for e in expl.values()):
    charts.chart(
        F.localisation_figure, expl, key="quality_loc", fix=CHART_FIX,
        caption="Does the heatmap point at the tumour? Pointing game: share of images whose "
                "hottest pixel lies inside the tumour mask; energy: share of the heatmap's total "
                "weight inside it. Grey bars are what a randomly placed heatmap would score.")
else:
    reasons = {e.get("localisation_reason") for e in expl.values() if e.get("localisation_reason")}
    st.info("Localisation cannot be measured for this run: "
            + ("; ".join(sorted(reasons)) if reasons else "the dataset has no tumour masks")
            + ". (The synthetic phantoms come with masks; the Kaggle images do not.)",
            icon=":material/info:")

st.subheader("Faithfulness: deletion and insertion")
charts.chart(
    F.faithfulness_curves_figure if F.has_curves(expl) else F.faithfulness_figure, expl,
    key="quality_faith", fix=CHART_FIX,
    caption="Does the heatmap show what the model actually uses? Removing the pixels it ranks "
            "highest should make the prediction fall faster than removing random ones (lower "
            "deletion curve), and putting them back first should restore it faster (higher "
            "insertion curve); dotted or grey = random heatmaps.")

st.subheader("Sanity check: randomised weights")
charts.chart(
    F.sanity_figure, expl, key="quality_sanity", fix=CHART_FIX,
    caption="Does the heatmap depend on what the model learned? It is compared with the heatmap "
            "of a copy whose weights were re-initialised: a correlation near 0 is good; near 1 "
            "means the map only reflects the image itself (an edge detector, not an "
            "explanation).")

rows = {m: e.get("rows") for m, e in expl.items() if isinstance(e.get("rows"), list)}
if rows:
    with st.expander("Per-image results"):
        model = st.selectbox("Model", list(rows), format_func=F.model_label, key="quality_rows")
        frame = pd.DataFrame(rows[model])
        st.dataframe(frame, hide_index=True, key="quality_rows_table")
