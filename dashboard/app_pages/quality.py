"""Explanation quality: do the heatmaps point at the tumour, and do they depend on the model?"""

import streamlit as st

from dashboard import charts, core, records, runinfo, state
from dashboard import figures as F
from dashboard.figures import quality_text as T
from dashboard.figures.external import external_table
from pipeline import run_files
from pipeline.explain.agreement import record_line, record_sentence
from pipeline.explain.alarm import OUTSIDE_HEAD_BLIND, OUTSIDE_HEAD_MESSAGE
from pipeline.explain.choice import recorded_choices
from pipeline.known_data import trained_on_sartaj

CHART_FIX = "Re-run `python -m pipeline explain-eval`."

st.title("Explanation quality")
state.page_disclaimer()
run = state.require_run()
st.caption("A heatmap can look convincing and still be wrong. These tests measure how far the "
           "explanations of this run can be trusted, on images of its test split.")

expl = state.per_model_json(run, run_files.EXPLANATIONS,
                            state.run_fix(run, "explain-eval"))
if not expl:
    st.stop()

# what each model's masks are: tumour boxes on the real runs, drawn tumours on the phantoms
masks = next((e.get("masks_dir") for e in expl.values() if e.get("masks_dir")), None)
boxes = state.box_facts(run, masks)
region = {m: "box" if runinfo.masks_are_boxes(e.get("masks_dir"), e.get("data_dir"), boxes)
          else "mask" for m, e in expl.items()}

summary = F.quality_summary(expl, {m: run.model_info(m).get("gradcam_layer")
                                   for m in expl})
# a table that wraps its cells: in a grid "Multi-layer LayerCAM (fusion)" and the masks folder
# were cut at a projector's 1024 px (a presenter's review)
st.table(summary)
st.caption("The explained images are a sample of the test split, those with a tumour box "
           "first: their accuracy is not the run's test accuracy (Overview).")


st.header("Localisation")
if any(e.get("pointing_game") is not None for e in expl.values()):
    charts.chart(
        F.localisation_figure, expl, key="quality_loc", fix=CHART_FIX,
        caption=F.LOCALISATION_CAPTION)
    centre = T.centre_sentence(expl)
    if centre:
        st.caption(centre)
    word = "box" if all(r == "box" for r in region.values()) else "mask"
    by_class = T.class_pointing_sentence(expl, word)
    if by_class:
        st.caption(by_class)
    relabelled = boxes and T.relabelled_sentence(expl, boxes.relabelled, boxes.source)
    if relabelled:
        st.caption(relabelled)
    apart = records.apart_record(run)  # do the two models' peaks agree, and what it meant
    if apart:
        st.caption(record_sentence(apart, word))
    coverage = boxes and T.box_coverage_sentence(expl, boxes.tumour_test, boxes.source,
                                                 boxes.train_boxed)
    if coverage:
        st.info(coverage, icon=":material/info:")
    # what a high score does not prove (a student's review, 2026-12-05)
    guided = [F.model_label(m) for m, info in run.manifest.get("models", {}).items()
              if (info.get("guidance") or {}).get("weight")]
    st.caption((f"{' and '.join(guided)} {'was' if len(guided) == 1 else 'were'} trained with "
                "a penalty on heat outside the tumour boxes of the training images "
                "(explanation guidance), so a high score here is partly what "
                f"{'it was' if len(guided) == 1 else 'they were'} trained for. " if guided
                else "")
               + "A default method and layer chosen by pointing game on validation boxes "
               "(explain-choose) is chosen for this score too: a high score is not independent "
               "proof that an answer rests on the tumour.")
    # what each default was chosen from (explain_choice.json's table; a review missed it)
    chosen = {m: e for m, e in recorded_choices(run.path)[0].items() if m in run.model_names}
    tables = {m: F.choice_table(e, run.model_info(m).get("gradcam_layer"))
              for m, e in chosen.items()}
    if any(t is not None for t in tables.values()):
        with st.expander("How each model's default method and layer were chosen",
                         icon=":material/rule:"):
            for m, table in tables.items():
                if table is not None:
                    st.markdown(f"**{F.model_label(m)}**")
                    st.dataframe(table, hide_index=True, key=f"quality_choice_{m}")
                    st.caption(F.choice_caption(chosen[m]))
    for m, e in expl.items():
        if e.get("n_empty_heatmaps"):
            st.warning(f"{F.model_label(m)}: {e['n_empty_heatmaps']} of {e.get('n', '?')} test "
                       "heatmaps are empty (no positive evidence for the explained class). They "
                       f"count as misses with no energy in the {region[m]}.",
                       icon=":material/warning:")
else:
    reasons = {e.get("localisation_reason") for e in expl.values() if e.get("localisation_reason")}
    st.info("Localisation cannot be measured for this run: "
            + ("; ".join(sorted(reasons)) if reasons else "the dataset has no tumour masks")
            # the Sartaj boxes named only for a run trained on that data (a review, 2026-12-06)
            + (". (The synthetic phantoms come with masks; for the Sartaj images pass the tumour "
               "boxes: `explain-eval --masks ../shared/data/brain-tumor-mri-sartaj-boxes/masks`.)"
               if trained_on_sartaj(run.manifest) else
               ". (Tumour masks make it measurable: one per image at the same relative path, "
               "non-zero = tumour, passed as `explain-eval --masks MASKS`.)"),
            icon=":material/info:")

st.header("Shortcut alarm: evidence outside the head")
rates = {m: e.get("outside_head_alarm_rate") for m, e in expl.items()}
# a rate of exactly 0 is written as the integer 0: measured too
if any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in rates.values()):
    charts.chart(
        F.shortcut_figure, expl, key="quality_shortcut", fix=CHART_FIX,
        caption="Share of images whose heatmap has more than half of the heat in its hottest "
                "10% outside the head (the head found by the preprocessing's crop, in the "
                "model's frame). A model that looks at text, borders or markers instead of the "
                "head is flagged; a high share means its answers may rest on a shortcut. "
                + OUTSIDE_HEAD_BLIND)
    for m, e in expl.items():
        if (e.get("outside_head_alarm_rate") or 0) > 0:
            st.warning(f"{F.model_label(m)}: {e['n_outside_head_flagged']} of {e.get('n', '?')} "
                       f"test heatmaps have their {OUTSIDE_HEAD_MESSAGE}.",
                       icon=":material/warning:")
else:
    st.info("Not measured for this run: re-run `python -m pipeline explain-eval`.",
            icon=":material/info:")

st.header("Faithfulness: deletion and insertion")
# the chance line: 1 / the number of classes, a guess's probability
n_classes = len(run.class_names) if F.has_curves(expl) else None
if n_classes:
    charts.chart(F.faithfulness_curves_figure, expl, n_classes, key="quality_faith",
                 fix=CHART_FIX, caption=T.faithfulness_caption(expl, n_classes))
else:
    charts.chart(F.faithfulness_figure, expl, key="quality_faith", fix=CHART_FIX,
                 caption=T.faithfulness_caption(expl))

st.subheader("ROAD: removal without a trace")
if F.has_road(expl):
    charts.chart(F.road_figure, expl, key="quality_road", fix=CHART_FIX,
                 caption=T.road_caption(expl))
else:
    st.info("ROAD was not measured for this run: " + CHART_FIX, icon=":material/info:")

st.header("Sanity check: randomised weights")
if charts.chart(F.sanity_figure, expl, key="quality_sanity", fix=CHART_FIX,
                caption=T.sanity_caption(expl)):
    reading = T.sanity_reading(expl)
    if reading:
        st.warning(reading, icon=":material/warning:")

rows = {m: e.get("rows") for m, e in expl.items() if isinstance(e.get("rows"), list)}
if rows:
    with st.expander("Per-image results"):
        state.offered("quality_rows", list(rows), next(iter(rows)))
        model = st.selectbox("Model", list(rows), format_func=F.model_label, key="quality_rows")
        st.dataframe(F.per_image_table(rows[model], run.class_names, region[model]),
                     hide_index=True,
                     key="quality_rows_table")

st.header("Your own folders")
external = external_table(state.external_explanations(run))
if external is None:
    st.caption("`python -m pipeline explain-eval --run RUN --data DIR --masks MASKS` measures "
               "these explanations on a folder of your own images with tumour masks (README, "
               "\"Explanations on your own images\"); each folder's results appear here.")
else:
    # a table that wraps, not a grid that scrolls: its ten columns fit at 1280 px (the grid's
    # twelve, one line each, were 1409 px wide in 818)
    st.table(external, hide_index=True)
    st.caption("explain-eval on folders outside the run, one row per model, folder and method, "
               "each against that folder's own masks: pointing game with its count and 95% "
               "interval, beside a map always at the head's centre and chance (the masks' mean "
               "area). Images that are copies of the run's training or validation images are "
               "not held out: there the figures show what the model learnt.")
    # the Predict page's two-heatmap warning, measured on each folder both defaults explained
    for folder, record in records.external_apart_records(run).items():
        st.caption(f"{core.literal(folder)}: {record_line(record)}.")
