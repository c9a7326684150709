"""Error analysis: misclassified test images and model disagreements, with both heatmaps."""

import streamlit as st

from dashboard import charts, error_frames, inference, loader, paging, runinfo, state, views
from dashboard import figures as F
from pipeline.data.discovery import folders_by_class

# Cards per page: the choices and the first one shown. Two cards to a row (a grid), four to a
# page: six cards one under another made a page about 6,000 pixels tall.
PAGE_SIZES = (2, 4, 6, 8)
# two full-width cards a page at first (four, one under another, made a 6,500 px page); more
# with two to a row on a wide screen
PAGE_SIZE = 2
# cards side by side: one first, two on a wide screen. Two by default squeezed the heatmaps
# to ~110 px at 1280 px with the sidebar open (a student's review), and at a projector's size
# their download buttons overlapped and captions broke mid-word (a lecturer's)
GRIDS = (1, 2)

st.title("Error analysis")
state.page_disclaimer()
run = state.require_run()
fix = state.evaluate_fix(run)
frames = state.predictions(run, fix)
if not frames:
    st.stop()
# "wrong" is against the dataset's folder names: a gallery of errors taught the wrong lesson
# where a label is wrong (a clinician's review, 2026-12-05)
st.caption("Right and wrong are judged against the dataset's labels (its folder names), which "
           "were not verified by a radiologist: some of these errors may be label errors.")
models = list(frames)
merged = error_frames.merge_predictions(frames)
class_names = run.class_names

# each count as wide as its label, wrapping where the row has no room: in columns the labels
# were cut to "Custom CNN…" at 819 px
with st.container(horizontal=True, wrap=True, gap="large", key="err_counts"):
    for m in models:
        st.metric(f"{F.model_label(m)} errors", int((~merged[f"{m}_ok"]).sum()),
                  help=f"of {len(merged)} test images", width="content")
    if len(models) > 1:
        st.metric("Both wrong", int((~merged[[f"{m}_ok" for m in models]].any(axis=1)).sum()),
                  width="content")
        st.metric("Models disagree", len(error_frames.filter_errors(merged, models, "disagree")),
                  width="content")

views_options = ["any", "all", *models] + (["disagree"] if len(models) > 1 else [])
labels = {"any": "wrong by any model", "all": "wrong by every model", "disagree":
          "models disagree", **{m: f"wrong by {F.model_label(m)}" for m in models}}
# a row where they fit, wrapping where not: in three columns the box showed "wrong by any mo"
# at 819 and 911 px (a lecturer's projector)
# a choice another run does not offer (a model, "disagree", a class) is dropped where drawn
state.offered("err_by", views_options, "any")
for key in ("err_true", "err_pred"):
    state.offered(key, class_names, [])
with st.container(horizontal=True, wrap=True, key="err_filters"):
    wrong_by = st.selectbox("Show images", views_options, format_func=labels.get, key="err_by",
                            width=views.SELECT_WIDTH["filter"])
    true_sel = st.multiselect("True class", class_names, key="err_true",
                              placeholder="all classes", format_func=F.class_name,
                              width=views.SELECT_WIDTH["classes"])
    pred_sel = st.multiselect("Predicted class (by any model)", class_names, key="err_pred",
                              placeholder="all classes", format_func=F.class_name,
                              width=views.SELECT_WIDTH["classes"])
rows = error_frames.filter_errors(merged, models, wrong_by, true_sel, pred_sel)
if (not runinfo.run_facts(run.manifest).splits.get("official_test")  # else all from Testing/
        and (note := runinfo.test_paths_note(merged["path"]))):
    st.caption(note)
# Drawn before any early stop, so their widget state is never dropped (see the Predict page).
settings = views.controls({}, class_names, prefix="err", show_layers=False,
                         defaults=state.default_methods(run), true_class=True)

if rows.empty:
    st.success("No test image matches these filters.", icon=":material/check_circle:")
    st.stop()

with st.expander(f"Table of the {len(rows)} matching images"):
    st.dataframe(error_frames.error_table(rows, models), hide_index=True, key="err_table")

data_dir = run.data_dir
if not (data_dir and data_dir.is_dir()):
    why = runinfo.data_unreachable(run.manifest.get("data") or {})
    st.info(f"The images and heatmaps cannot be shown: {why}. The table above lists them.",
            icon=":material/info:")
    st.stop()

predictor, explainers = loader.models(run)
if predictor is None:
    st.stop()
p1, p2, p3, _ = st.columns([1, 1, 1, 1], vertical_alignment="bottom")
per_page = p1.selectbox("Cards per page", PAGE_SIZES, index=PAGE_SIZES.index(PAGE_SIZE),
                        key="err_page_size")
grid_n = p3.selectbox("Cards per row", GRIDS, key="err_grid",
                      help="Two per row for a wide screen; one for a laptop or a projector.")
n_pages = paging.page_count(len(rows), per_page)
# other filters (or another run): the first page of what they match, not the page number the
# old ones were on (a review landed on page 2 of a new filter, its first matches unseen)
asked = (run.run_id, wrong_by, tuple(true_sel), tuple(pred_sel))
if st.session_state.get("err_page_for", asked) != asked:
    st.session_state["err_page"] = 1
st.session_state["err_page_for"] = asked
# fewer pages than the page shown (more cards per page): the last one; set before the widget is
# drawn, so the box shows the page the cards are from
st.session_state["err_page"] = paging.clamp_page(st.session_state.get("err_page", 1), len(rows),
                                                 per_page)
page = p2.number_input(f"Page (of {n_pages})", 1, n_pages, key="err_page")
shown = rows.iloc[(page - 1) * per_page: page * per_page]
uploads = state.data_images(str(data_dir), tuple(shown["path"]))
for up, (_, row) in zip(uploads, shown.iterrows(), strict=True):
    up.name = row["path"]
    up.true_label = row["true"]
boxes_dir = inference.boxes_folder(data_dir)  # optional tumour boxes beside the dataset
boxes = [inference.load_box(boxes_dir, p) for p in shown["path"]]
good = [u for u in uploads if u.ok]
results = None
if good:
    with st.spinner(f"Explaining {len(good)} image(s)…"):
        results = inference.explain(run, predictor, explainers, uploads, settings)
# the cards' section in the page's outline: their h3 titles otherwise followed the page's h1
charts.hidden_heading("Matching images")
j = 0
for i, up in enumerate(uploads):
    if i % grid_n == 0:  # a new row of the grid: cards of one row start at one height
        grid = st.columns(grid_n)
    with grid[i % grid_n]:
        # its PDF names the run and the model files, as the Predict page's (it said neither:
        # a review)
        views.image_card(i, up, j if up.ok else None, results, class_names, settings,
                         prefix="err", box=boxes[i], compact=grid_n > 1,
                         folders=folders_by_class(run.manifest), run_title=run.report_name,
                         model_hashes=loader.model_hashes(run))
    j += int(up.ok)
