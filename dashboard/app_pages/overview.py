"""Overview & comparison: the run's facts and both models' test metrics side by side."""

import streamlit as st

from dashboard import charts, core, image_counts, records, runinfo, state
from dashboard import figures as F
from pipeline import run_files
from pipeline.evaluate.flags import FILE as FLAGS_FILE
from pipeline.evaluate.flags import audit_caption, flag_table, not_singling_out, t2_tumours
from pipeline.known_data import trained_on_sartaj
from pipeline.names import NO_TUMOR, SHIFT_VALIDATION_NOTE

CONFUSION_WIDTH = 400  # px: each confusion matrix; two a row from a main column of 800 px
CHART_FIX = "The file may come from another version; re-run the evaluation."




def results_download(run) -> None:  # noqa: ANN001 (a pipeline Run)
    """The run's results.md, the very file `python -m pipeline figures` writes: run id, test
    set kind, date, interval methods, then every table the run has (a student's citable copy;
    the tables here had no export with those facts)."""
    from pipeline.results_md import results_markdown

    st.download_button(
        "Results as Markdown", results_markdown(run).encode(),
        file_name=f"results-{run.run_id}.md", mime="text/markdown", key="results_md",
        on_click="ignore", icon=":material/download:",
        help="Every table of this run with its run id, test set, date and interval methods: "
             "the results.md that `python -m pipeline figures` writes.")


st.title("Overview & comparison")
state.page_disclaimer()
run = state.require_run()
facts = runinfo.run_facts(run.manifest)
sartaj = trained_on_sartaj(run.manifest)  # its data's facts said only of its runs
fix = state.evaluate_fix(run)

# the manifest's text as code spans (`core.literal`): a run id is the run's, not ours
st.caption(f"Run {core.literal(facts.run_id)} · created {runinfo.readable_time(facts.created)} · "
           f"profile {core.literal(facts.profile or '?')}")

for warning in facts.weights_warnings:
    st.warning(warning, icon=":material/warning:")

problems = runinfo.run_problems(run)
if problems:
    with st.expander(f":material/build: {len(problems)} thing(s) missing from this run",
                     expanded=any(p.severity == "error" for p in problems)):
        for p in problems:
            st.markdown(f"- **{p.what}** — to fix: {p.fix}")

sizes = runinfo.split_sizes(facts)
# the images the run used, which the split tiles add up to; the dataset folder's count beside
# them did not, with nothing said of the rest (unreadable files, label conflicts, copies of
# test images): `image_counts` says what the run left out and why
used = image_counts.images_used(facts)
# one column per figure: a spare empty column cut the first label at 800 px
cols = st.columns(1 + len(sizes))
if used is None:  # a manifest without the split counts: the folder's count, named so
    cols[0].metric("Images in dataset", facts.n_images)
else:
    cols[0].metric("Images used", used,
                   help=f"The images in this run's splits, of the {facts.n_images} image files "
                        "in its dataset folder.")
for col, (name, n) in zip(cols[1:], sizes.items(), strict=False):
    col.metric(f"{name.capitalize()} images", n)
st.caption(f"Data: {core.literal(facts.data_shown)} ({core.literal(facts.data_layout)} layout) "
           f"· classes: {runinfo.classes_words(facts)}")
if counted := image_counts.overview_caption(facts):  # left out, and the copies' leakage story
    st.caption(counted)
st.dataframe(runinfo.model_facts_table(facts), hide_index=True, key="model_facts",
             height="content")

st.header("Headline metrics")
metrics = state.per_model_json(run, run_files.METRICS, fix)
comparison = None
if len(run.model_names) > 1:
    comparison = state.section_json(run, run_files.COMPARISON, fix)
if comparison:
    verdict = F.comparison_verdict(comparison)  # today's words, from the stored figures
    if verdict:
        (st.success if comparison.get("significant") else st.info)(
            verdict, icon=":material/balance:")
    mc = comparison.get("mcnemar") or {}
    pair = list(comparison.get("models") or run.model_names)[:2]
    if isinstance(mc, dict) and mc and len(pair) == 2:
        gap = F.difference_sentence(comparison)  # by how much, with its interval
        st.caption(F.mcnemar_sentence(comparison, pair) + (f" {gap}" if gap else ""))
    if pooled := records.together_note(run):  # the models' answers pooled, on the same images
        st.caption(pooled + " Each Predict card ends its answer line with this pooled answer.")
if metrics:
    # The table, then the chart below it: side by side (3:2) they were clipped from 1024 px
    # with the sidebar open, the headline a presenter shows first.
    try:
        st.dataframe(F.metrics_table(metrics, comparison), key="metrics_table",
                     height="content")
        # same-source figures invite over-trust unless their limit stands beside them (a
        # clinician's review, 2026-12-05); the official run's test images are another source
        st.caption(f"Values on the test split; brackets: {F.interval_words(comparison)}."
                   + (" This run's test split is the dataset's own Testing/ folder: "
                      f"{SHIFT_VALIDATION_NOTE}."
                      if facts.splits.get("official_test") and sartaj
                      # the Sartaj Testing/ folder's story, not another dataset's test folder
                      else " This run's test split is the dataset's own test folder, kept "
                      "apart from training as the dataset came."
                      if facts.splits.get("official_test")
                      else
                      " Its images come from the same sources as the training images: for "
                      "images mostly from other sources, pick an 'Official Testing split' run "
                      "in the sidebar if there is one (accuracy there can be far lower)."))
        distinct = F.copies_sentence(metrics)
        if distinct:
            st.caption(distinct)
    except F.FigureDataError as exc:
        st.warning(f"Cannot show the metrics table: {exc}", icon=":material/warning:")
    charts.chart(F.ci_figure, metrics, comparison, key="ci_fig", fix=CHART_FIX)
    results_download(run)
    with st.expander("What these figures mean", icon=":material/menu_book:"):
        st.markdown(F.glossary_markdown())

tabs = st.tabs(["Per class", "Confusion matrices", "Training curves", "ROC & PR",
                "Calibration", "Tumour vs no tumour"])
with tabs[0]:
    if metrics:
        charts.chart(F.per_class_figure, metrics, key="per_class_fig", fix=CHART_FIX)
        st.caption("Precision: of the images called this class, how many were. Recall: of the "
                   "images of this class, how many were found. F1 balances the two. n under "
                   "each class: its test images, the recall's denominator.")
with tabs[1]:
    mode = st.segmented_control("Show", ["Counts", "Row-normalised"], default="Counts",
                                key="cm_mode")
    cms = state.per_model_json(run, run_files.CONFUSION, fix)
    # side by side where they fit, else one under the other: in two columns at a projector's
    # 911 px each matrix was 218 px wide, half its class names left out
    with st.container(horizontal=True, wrap=True, key="cm_row"):
        for m, cm in cms.items():
            charts.chart(F.confusion_figure, cm, normalise=mode == "Row-normalised",
                         title=F.model_label(m), key=f"cm_{m}", fix=CHART_FIX,
                         width=CONFUSION_WIDTH)
    st.caption("Rows are the true class, columns the predicted class; the diagonal is correct.")
with tabs[2]:
    histories = state.per_model_json(
        run, run_files.HISTORY, "history.json is written by training; retrain the run")
    if histories:
        charts.chart(F.training_curves_figure, histories, key="curves_fig", fix=CHART_FIX)
        st.caption("Solid: training split, dashed: validation split. The star marks the epoch "
                   "whose weights were kept; a dotted line marks where fine-tuning starts.")
        # why training loss sits far above validation loss, from this run's own recipe
        for sentence in (F.loss_gap_sentences(histories, run.manifest)
                         + F.last_epoch_sentences(histories)):
            st.caption(sentence)
with tabs[3]:
    curves = state.per_model_json(run, run_files.CURVES, fix)
    if curves:
        charts.chart(F.roc_figure, curves, key="roc_fig", fix=CHART_FIX, name="ROC curves")
        charts.chart(F.pr_figure, curves, metrics, key="pr_fig", fix=CHART_FIX,
                     name="precision-recall curves")
        st.caption("One class against the rest. Curves hugging the top-left (ROC) or top-right "
                   "(PR) corner separate that class well. Dotted: chance, the diagonal (ROC) "
                   "and, in PR, each class's share of the test images, the precision of "
                   "answering at random.")
        areas = F.curve_areas(curves)
        if areas is not None:  # the curves' numbers as text, not only in hover labels
            st.dataframe(areas, key="curve_areas", height="content")
with tabs[4]:
    if metrics:
        charts.chart(F.reliability_figure, metrics, key="reliability_fig", fix=CHART_FIX)
        st.caption("When a model says 90% it should be right 90% of the time: points on the "
                   "diagonal. Below the diagonal = over-confident. Marker size = images in bin.")
        for sentence in F.ece_floor_sentences(metrics):
            st.caption(sentence)
        for sentence in F.scaling_worse_sentences(metrics):
            st.warning(sentence, icon=":material/warning:")
with tabs[5]:
    if metrics:
        if all(m.get("tumor_vs_no_tumor") for m in metrics.values()):
            charts.chart(F.tumour_figure, metrics, key="tumour_fig", fix=CHART_FIX)
            # where the test images come from decides what the figures promise
            # the Sartaj folders' sources and the shipped model card only on a Sartaj run
            source = ("the dataset's own Testing/ folder, mostly from other sources than the "
                      "training images (shift validation)"
                      if facts.splits.get("official_test") and sartaj else
                      "the dataset's own test folder" if facts.splits.get("official_test") else
                      "this run's test split, from the same sources as its training images: on "
                      "slices from another source they can be far lower"
                      + (" (the model card has the official Testing/ folder's)" if sartaj
                         else ""))
            st.caption("Tumour vs no tumour: any tumour class counts as 'tumour'. Sensitivity "
                       "= share of tumour slices called a tumour; specificity = share of "
                       f"no-tumour slices called 'no tumour'. Each bar gives its count (k "
                       "of n); whiskers: the 95% Wilson interval of that share, wide where n "
                       f"is small. Measured on {source}.")
        sizes = F.size_group_table(metrics)
        if sizes is not None:
            st.subheader("By pixel size (a hint of the image's source)")
            st.dataframe(sizes, hide_index=True, key="size_groups", height="content")
            # the Sartaj data's fact only for a run trained on it (a review, 2026-12-06)
            st.caption("Test images of the training split's commonest pixel size against all "
                       + ("others. In the public dataset nearly every tumour image is a 512×512 "
                          "export of one collection, so size marks the source."
                          if sartaj else
                          "others. Where a dataset gathers images from several sources, pixel "
                          "size often marks the source, and a model can learn it as a cue."))
            for gap in F.size_gaps(metrics):
                st.warning(gap, icon=":material/warning:")
        else:
            st.info(f"This run has no '{F.class_name(NO_TUMOR)}' class, so there is no screening "
                    "view.")

# Robustness (evaluate --robustness): shown only for runs that have it.
if (run.path / run_files.ROBUSTNESS).is_file():
    st.header("Robustness to image shifts")
    robust_fix = state.run_fix(run, "evaluate", "--robustness")
    robustness = state.section_json(run, run_files.ROBUSTNESS, robust_fix)
    if robustness:
        n = robustness.get("n_images")
        n = f"{n} " if isinstance(n, int) and not isinstance(n, bool) else ""
        drawn = charts.chart(
            F.robustness_figure, robustness, key="robustness_fig", fix=robust_fix,
            caption=f"Shift validation, not a clean test: shifted copies of the {n}test images "
                    "(bias field, gamma, noise, blur, lower resolution, JPEG, rotation/flip, "
                    "crop/padding, burnt-in text; three severities each), as another scanner or "
                    "export might produce. Solid line: the model's accuracy on the unshifted "
                    "images; dotted: 5 points below it (target: the moderate severity above it). "
                    "The axis is zoomed to the scores, so bars do not start at 0.")
        if drawn:  # its numbers in words: a zoomed axis makes one image look like a lot
            for sentence in (F.noise_sentence(robustness), F.severe_drops_sentence(robustness)):
                if sentence:
                    st.caption(sentence)
            levels = F.levels_table(robustness)
            if levels is not None:
                with st.expander("How strong each severity is", icon=":material/tune:"):
                    st.dataframe(levels, hide_index=True, key="robustness_levels",
                                 height="content")

# Do the warnings catch the errors? (flags.json, written by `ood`): shown only where measured.
if (run.path / FLAGS_FILE).is_file():
    st.header("Do the warnings catch the errors?")
    flags_fix = state.run_fix(run, "ood")
    flag_report = state.section_json(run, FLAGS_FILE, flags_fix)
    shown = {m: F.model_label(m) for m in run.model_names}
    rows = flag_table(flag_report, shown) if flag_report else []
    if rows:
        # a table that wraps, not a grid that scrolls: "errors flagged", the column that answers
        # the section's question, was off-screen at a projector's size (a lecturer's review)
        st.table(rows, hide_index=True)
        st.caption(audit_caption(flag_report))
        for sentence in not_singling_out(flag_report, shown):  # from the table's own numbers
            st.info(sentence, icon=":material/info:")
        if words := t2_tumours(flag_report.get("models"), shown):  # what that hint warns of
            st.caption(f"On these test images {words}.")
    elif flag_report is not None:
        st.warning(f"{FLAGS_FILE} holds no flag measurements. To fix: {flags_fix}",
                   icon=":material/warning:")

# The "unlike the training data" score (ood.json, written by `train` or `ood`): where it exists.
if (run.path / run_files.OOD_REPORT).is_file():
    st.header("How well \"unlike the training data\" tells images apart")
    ood_fix = state.run_fix(run, "ood")
    ood_report = state.section_json(run, run_files.OOD_REPORT, ood_fix)
    try:
        ood_rows = F.ood_table(ood_report) if ood_report else None
    except F.FigureDataError as exc:
        st.warning(f"Cannot show this table: {exc}. To fix: {ood_fix}", icon=":material/warning:")
        ood_rows = None
    if ood_rows is not None:
        # a table that wraps (its height is its content's): in a grid, at a projector's
        # 1024 px, the MobileNetV2 columns were off to the right (a presenter's review)
        st.table(ood_rows, hide_index=True)
        st.caption(F.ood_caption(ood_rows))
