"""Explanation quality: do the heatmaps point at the tumour, and do they depend on the model?"""

import pandas as pd
import streamlit as st

from dashboard import figures as F
from dashboard import state

st.title("Explanation quality")
run = state.require_run()
st.caption("A heatmap can look convincing and still be wrong. These tests measure how much "
           "the explanations can be trusted, on test images of this run.")

expl = state.per_model_json(run, "explanations.json",
                            f"run `python -m pipeline explain-eval --run {run.run_id}`")
if not expl:
    st.stop()

summary = pd.DataFrame({F.model_label(m): {
    "method": e.get("method", "?"), "layer": e.get("layer", "?"), "images": e.get("n", "?"),
} for m, e in expl.items()})
st.dataframe(summary, key="quality_summary")


def _figure(build, key: str, meaning: str) -> None:
    try:
        st.plotly_chart(build(expl), key=key, config={"displaylogo": False})
    except F.FigureDataError as exc:
        st.warning(f"Cannot draw this chart: {exc}. Re-run `explain-eval`.",
                   icon=":material/warning:")
        return
    st.caption(meaning)


st.subheader("Localisation")
if any(e.get("pointing_game") is not None for e in expl.values()):
    _figure(F.localisation_figure, "quality_loc",
            "Pointing game: share of images whose hottest pixel lies inside the tumour mask; "
            "energy: share of the heatmap's total weight inside the mask (higher is better).")
else:
    st.info("No tumour masks for this dataset, so localisation cannot be measured "
            "(the synthetic phantoms have masks; the Kaggle images do not).")

st.subheader("Faithfulness: deletion and insertion")
_figure(F.faithfulness_figure, "quality_faith",
        "Deleting the pixels the heatmap ranks highest should make the prediction collapse faster "
        "than deleting random pixels (lower deletion AUC), and inserting them first should "
        "restore it faster (higher insertion AUC); grey bars are the random baseline.")

st.subheader("Sanity check: randomised weights")
_figure(F.sanity_figure, "quality_sanity",
        "Correlation between heatmaps of the trained model and of a copy with randomised "
        "weights: near zero means the explanation really depends on what the model learned; "
        "near one means it only reflects the image (an edge detector, not an explanation).")
