"""Predict & explain: upload MRI slices (or draw test images), see both models' answers and why."""

import hashlib
from datetime import datetime, timezone

import numpy as np
import streamlit as st

from dashboard import (
    answers,
    card_flags,
    charts,
    core,
    dataset_files,
    inference,
    loader,
    paging,
    runinfo,
    series_view,
    state,
    summary_table,
    uploads,
    views,
)
from dashboard import figures as F
from dashboard.about_text import SARTAJ_DRAW_NOTE, ct_note
from dashboard.flags import WARNING_SPLITS, image_warnings, seen_advice
from dashboard.report_pdf import DISCLAIMER as PLAIN_DISCLAIMER
from dashboard.report_pdf import report_pdf
from pipeline import run_files
from pipeline.artifacts import ArtifactError
from pipeline.data.discovery import folders_by_class
from pipeline.known_data import trained_on_sartaj

SAMPLES_KEY = "predict_samples"
PUT_AWAY_KEY = "predict_samples_put_away"  # the note on drawn images a switch of run put away
PAGE_KEY = "predict_page"  # the page selector: which page of cards is shown
SORT_KEY = "predict_summary_sort"  # the summary's order (`summary_table.sort_choices`)

st.title("Predict & explain")
st.warning(state.DISCLAIMER, icon=":material/medical_information:")
run = state.require_run()

# The models load in the background (app.py starts them after each page's run): the uploader is
# drawn at once, and the page waits for the models only once there is something to explain.
predictor, explainers = loader.models(run, wait=False)
if explainers is not None and predictor is None:
    st.stop()  # no model of this run can be used (the errors are shown)
class_names = run.class_names
# the loading note's place, above the uploader (at the page's end it was below a laptop's screen)
loading_note = st.empty() if explainers is None else None

upload_col, sample_col = st.columns([3, 2])
with upload_col:
    uploads.restore_after_reload()  # a reloaded tab's files, kept by the server for its URL
    uploader = uploads.uploader_key()
    new_uploader = uploads.uploader_is_new(uploader)  # first visit, or back from another page
    files = st.file_uploader(
        # type=None: a wrong file type gets our one-line reason in its card, instead of only a
        # red "!" in the uploader with the reason on hover.
        "Upload MRI slices", type=None, accept_multiple_files=True,
        key=uploader,
        help="JPEG, PNG, BMP, TIFF, GIF, WebP or DICOM (.dcm; a series as one multi-frame "
             "file or a .zip of .dcm slices), or a NIfTI volume (.nii, .nii.gz: its axial "
             "slices). Files stay in the server's memory and are never written to disk; "
             "they are kept for an hour so that reloading the tab brings them back. Up to "
             f"{core.MAX_UPLOADS} files at once.")
    # The browser refuses a file over the server's limit before the page sees it: its only trace
    # was a red chip below the uploader's scroll area, so the limit is said here, always.
    st.caption(f"At most {core.MAX_UPLOADS} files of up to "
               f"{st.get_option('server.maxUploadSize')} MB each: a larger file is refused by "
               "the uploader and not analysed.")
    # CT gets the tool's most reassuring output on the shipped runs (a clinician's review,
    # 2026-12-05): the Sartaj data's no-tumour class holds CT slices, and nothing here tells CT
    # from MRI; on another run only the generic part is known to hold
    st.caption(f"For brain MRI slices only. {ct_note(trained_on_sartaj(run.manifest))}")
    # Leaving the page empties the uploader (Streamlit drops its state): its last files are
    # kept in the session and come back with the page (dashboard/uploads.py).
    files, restored = uploads.current_files(files, new_uploader)
    if restored:
        uploads.restored_note(files)
    elif files:
        # The uploader's chips cut long names in the middle ("scan_2024_…_T1.png", full name
        # only on hover): every name in full, as plain text (never Markdown or HTML).
        st.text("\n".join(f"{k + 1}. {name}" for k, (name, _) in enumerate(files)))
with sample_col:
    data_dir = run.data_dir
    try:
        splits_doc = state.run_json(run, run_files.SPLITS)
        entries = dataset_files.test_entries(splits_doc)
    except ArtifactError as exc:
        splits_doc, entries, why = None, [], str(exc)
    else:
        why = "" if data_dir and data_dir.is_dir() else runinfo.data_unreachable(
            run.manifest.get("data") or {})
    if entries and not why:
        st.markdown("**…or draw images from the test split**")
        # side by side where the column has room, else one under the other: in two columns
        # the box showed "any cl" at 819 px and "any c" at 911 px (a lecturer's projector)
        with st.container(horizontal=True, wrap=True, key="sample_choices"):
            state.offered("sample_class", ["any class", *class_names], "any class")
            choice = st.selectbox("Class to draw", ["any class", *class_names],
                                  key="sample_class", format_func=F.class_name,
                                  width=views.SELECT_WIDTH["class"])
            count = st.number_input("How many", 1, 6, 2, key="sample_count",
                                    width=views.SELECT_WIDTH["count"])
        b1, b2 = st.columns(2)
        if b1.button("Draw test images", key="sample_draw", icon=":material/casino:"):
            pool = [e for e in entries if choice == "any class" or e.get("label") == choice]
            if pool:
                picks = np.random.default_rng().choice(len(pool), min(count, len(pool)),
                                                       replace=False)
                st.session_state[SAMPLES_KEY] = [pool[int(k)] for k in picks]
                st.session_state.pop(PUT_AWAY_KEY, None)  # drawn again: the note is done
            else:
                st.info(f"The test split has no '{F.class_name(choice)}' image.")
        if st.session_state.get(SAMPLES_KEY) and b2.button("Clear", key="sample_clear"):
            st.session_state[SAMPLES_KEY] = []
            st.session_state.pop(PUT_AWAY_KEY, None)
        note = runinfo.test_paths_note(e["path"] for e in entries)
        st.caption(f"Images this run's models never trained on. {note}".strip()
                   + (f" {SARTAJ_DRAW_NOTE}" if trained_on_sartaj(run.manifest) else ""))
    else:
        st.caption(f"Sample picker unavailable: {why or 'splits.json lists no test images'}.")

items: list[core.Upload] = []
boxes: list = []  # per item: its known tumour box (test-split samples only), else None
samples = st.session_state.get(SAMPLES_KEY) or []
# Drawn from the test split of the run shown then: after a switch of run, one that is not in
# this run's test split (it may be a training image here) was still captioned "in this run's
# test split" and judged right or wrong as a fair test (a presenter's review). Put away.
in_test = {e.get("path") for e in entries}
if any(e.get("path") not in in_test for e in samples):
    gone = sum(e.get("path") not in in_test for e in samples)
    samples = [e for e in samples if e.get("path") in in_test]
    st.session_state[SAMPLES_KEY] = samples
    # said until images are drawn again: the rerun once the new run's models have loaded
    # (about 16 s after the switch) took it away, and a presenter saw the images just gone
    st.session_state[PUT_AWAY_KEY] = (
        f"{gone} drawn image{'s' if gone > 1 else ''} put away: drawn from another run's test "
        "split, not in this run's. Draw test images again for this run.")
if put_away := st.session_state.get(PUT_AWAY_KEY):
    st.info(put_away, icon=":material/swap_horiz:")
if why:  # the data folder is not reachable here: the samples cannot be read (the picker says)
    samples = []
if samples and data_dir:
    loaded = state.data_images(str(data_dir), tuple(e["path"] for e in samples))
    boxes_dir = inference.boxes_folder(data_dir)
    for entry, up in zip(samples, loaded, strict=True):
        up.name = f"{entry['path']} (in this run's test split)"
        # a public dataset's path, as splits.json and the Errors page show it: not a patient's
        # name, and the way to find the image again
        up.ref = f"test split {entry['path']}"
        up.true_label = entry.get("label")
        items.append(up)
        boxes.append(inference.load_box(boxes_dir, entry["path"]))
uploads.note_uploads(len(files))
if uploads.uploads_lost() and not files:
    st.warning("Your earlier uploads are gone: the server restarted or let them go (it keeps "
               "a tab's files for an hour, in memory only). Upload them again.",
               icon=":material/cloud_off:")
if len(files) > core.MAX_UPLOADS:
    st.warning(f"{len(files)} files uploaded; only the first {core.MAX_UPLOADS} are analysed.")
    files = files[:core.MAX_UPLOADS]
seen_in = state.membership(run)
# what a training or validation image's card says to do instead, per split (the run picker's
# labels of the official-testing runs, as code spans: a run's title is the user's text)
advice = {s: seen_advice(s, bool(entries and not why),
                               [core.literal(r) for r in state.official_test_runs(run)])
          for s in WARNING_SPLITS} if seen_in and files else {}


def note_seen(upload: core.Upload) -> None:
    """A file from the dataset's Testing/ folder may be a training image of this run (271 of
    394 are, on the main split): say so, or its answer reads as a fair test. A single image
    when decoded, a series' chosen slice for its card, and every slice of its table (a series
    was never looked up, though `predict` looks up each slice; its table had no split note).
    The run's own image, pixel for pixel, gets its dataset label as a drawn one does (a
    student's upload of a `Testing/` file showed no true class)."""
    seen = (series_view.seen_in_run(run, seen_in, upload)
            if seen_in and upload.ok and not upload.slices else None)
    upload.mark_seen(seen, advice, len(run.model_names))
    upload.true_label = upload.true_label or (seen_in.label(seen, splits_doc) if seen else None)


for k, (name, data) in enumerate(files):
    upload = state.decode_cached(name, hashlib.sha256(data).hexdigest(), data)
    upload.ref = f"upload {k + 1}"  # its number in the list under the uploader, never its name
    note_seen(upload)
    items.append(upload)
    boxes.append(None)

if explainers is None and items:
    predictor, explainers = loader.models(run)  # waits (with a spinner) for the models
    if predictor is None:
        st.stop()
# The controls are drawn on every run, uploads or not: a widget left out of one run loses its
# state, and the browser then showed defaults while heatmaps were drawn with the old settings.
settings = views.controls(explainers or {}, class_names, prefix="predict",
                         defaults=state.default_methods(run))
if not items:
    st.info("Upload one or more brain MRI slices above"
            + (", or draw test images," if entries and not why else "")
            + " to see both models' predictions and heatmaps.", icon=":material/upload:")
    if explainers is None:
        loader.wait_for_models(run, loading_note)  # ends with a rerun once they are ready
    st.stop()
# the results' section (downloads, summary, cards) in the page's outline: the cards' h3 titles
# otherwise followed the page's h1 directly
charts.hidden_heading("Results")
run_title = run.report_name
folders = folders_by_class(run.manifest)  # a download names a renamed class folder
hashes = loader.model_hashes(run)  # hashed once per run, not per image
notes = runinfo.report_notes(run_title, datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                             hashes, PLAIN_DISCLAIMER)
# A series (multi-frame DICOM, zip of .dcm) stands for the slice its slider chose: explained and
# drawn like any image; its slider and slice table are drawn with its card, further down.
series = {i: u for i, u in enumerate(items) if u.slices}
items = [u.slice_view(series_view.chosen_slice(u, "predict") - 1) if i in series else u
         for i, u in enumerate(items)]
for i in series:  # the chosen slice: a training image of the run is said so, as an upload is
    note_seen(items[i])
good = [u for u in items if u.ok]
# Every image is explained, not only the page of cards shown: the summary's flag counts and the
# flag filter need each image's heatmap flags too (evidence outside the head, an empty map),
# and the probabilities come out of the same pass; results are kept in the result store, so
# turning the page costs no new explanation.
results = None
if good:
    with st.spinner(f"Explaining {len(good)} image(s) with {len(explainers)} model(s)…"):
        results = inference.explain(run, predictor, explainers, items, settings)
    # Rows named by number and the SHA-256 of the file's bytes, which `sha256sum <file>`
    # reproduces without any of our code (a pixel digest would need our decoder); a slice
    # of a series has its pixels' digest, as on its PDF page.
    # each image's warnings as its card counts them (a training or validation image's split
    # note, the answers', the heatmaps'): the summary, the CSV and the flag filter
    flags = [image_warnings(*card_flags.image_flags(results, k), u.seen, u.seen_split, u.seen_exact)
             for k, u in enumerate(good)]
    hidden = [card_flags.withheld(f) for f in flags]  # why a card folds its answers, or ""
    # an unreadable file's row holds its reason without its name (the CSV never names files)
    failed = [(sum(v.ok for v in items[:k]), u.ref, runinfo.short_hash(u.digest),
               (u.error or "could not be read").removeprefix(f"{u.name}: "))
              for k, u in enumerate(items) if not u.ok]
    frame = answers.predictions_frame([u.ref for u in good], results.probs, class_names,
                                   [u.true_label for u in good],
                                   [runinfo.short_hash(u.digest) for u in good], flags,
                                   together=results.together, withheld=hidden, failed=failed,
                                   together_weak_below=results.together_weak_below)
    # the caption over the downloads, and the downloads in a row that wraps: in columns of
    # 3:1:1 the two buttons overlapped at a projector's size (a lecturer's review, 911 px)
    c1 = st.container()
    c2 = c3 = st.container(horizontal=True, wrap=True, key="predict_downloads")
    # results from the store (a restored upload, a rerun) say when they were analysed, not
    # "in 0.00 s"
    agree = answers.agreement_note(frame["models_agree"].tolist()[:len(good)], len(results.probs),
                                hidden)
    c1.caption(" · ".join(filter(None, [
        answers.analysis_note(len(items), results.seconds, results.earlier), agree,
        "model files (SHA-256): " + ", ".join(f"{m} {runinfo.short_hash(h)}"
                                              for m, h in hashes.items())])))
    # built when clicked, not on every rerun (what it holds is bound now)
    csv_notes = ({**notes, "probabilities": results.calibration_note}
                 if results.calibration_note else notes)
    c2.download_button("Predictions CSV",
                       lambda frame=frame, csv_notes=csv_notes: answers.to_csv_bytes(frame,
                                                                                  csv_notes),
                       file_name="predictions.csv",
                       mime="text/csv", key="predict_csv", on_click="ignore",
                       icon=":material/download:")

# (item index, upload, index among the good images or None): one per card, in upload order
cards: list[tuple[int, core.Upload, int | None]] = []
n_good = 0
for i, upload in enumerate(items):
    cards.append((i, upload, n_good if upload.ok else None))
    n_good += int(upload.ok)
if results is not None and results.probs:
    # Every analysed image's page, whichever page of cards is shown (and whatever the flag
    # filter hides); built only when clicked, the overlays rendered then. The list is bound
    # now: the callable runs after this script run, when `cards` holds only the filtered ones.
    c3.download_button(
        "Report PDF, all",
        lambda analysed=tuple(c for c in cards if c[2] is not None): report_pdf(
            [views.report_page(u, j, results, class_names, settings, boxes[i])
             for i, u, j in analysed], run_title, views.colour_scale(), model_hashes=hashes),
        file_name="reports.pdf", mime="application/pdf", key="predict_pdf_all",
        on_click="ignore", icon=":material/picture_as_pdf:",
        help="One page per analysed image, every page of cards; a series gives the page of "
             "the slice its card shows (its Slices PDF has a page for every slice). File names "
             "are left out: they can identify a patient.")
    if len(good) >= 2:  # many uploads: a compact summary first, then the cards
        # an HTML table: a thumbnail in a grid cell was read out as its data URL
        thumbs = [summary_table.thumbnail_url(u.image) for u in good]
        names = [u.name for u in good]
        # its headers cannot be clicked to sort (the grid's could): a keyed box, whose state is
        # the order's one truth (kept across pages, `state.KEPT_CHOICES`)
        orders = summary_table.sort_choices(list(results.probs))
        if st.session_state.get(SORT_KEY) not in orders:  # a model this run lacks, or unset
            st.session_state[SORT_KEY] = summary_table.UPLOAD_ORDER
        order_by = st.selectbox("Sort the table by", list(orders), key=SORT_KEY,
                                format_func=orders.__getitem__, width=views.SELECT_WIDTH["sort"])
        summary = summary_table.summary_frame(thumbs, names, results.probs, class_names, flags,
                                             results.together, hidden,
                                             refs=[u.ref for u in good],
                                             together_weak_below=results.together_weak_below)
        summary_table.draw_summary(
            summary.iloc[summary_table.sort_order(order_by, names, results.probs, flags)],
            "file", label=f"Summary of the analysed images, sorted by {orders[order_by]}")
        if st.toggle("Show only images with flags or disagreement", key="predict_only_flagged"):
            # files that could not be read keep their cards: each says why
            cards = [c for c in cards if c[2] is None or flags[c[2]]]
            if not cards:
                st.info("No image has a flag or a disagreement.", icon=":material/check:")
page = 1
if len(cards) > paging.CARDS_PER_PAGE:
    # The page asked for, kept within the pages there are now: the flag filter or fewer uploads
    # can leave fewer pages than the one shown. Set before the selector is drawn, so that it
    # shows the page whose cards are below it.
    page = paging.clamp_page(st.session_state.get(PAGE_KEY), len(cards))
    st.session_state[PAGE_KEY] = page
    n_pages = paging.page_count(len(cards))
    page = st.radio("Cards shown", list(range(1, n_pages + 1)), key=PAGE_KEY, horizontal=True,
                    format_func=lambda k: paging.page_label(k, len(cards)),
                    help=f"{paging.CARDS_PER_PAGE} cards to a page; the table above lists "
                         "every image, and 'Report PDF, all' has a page for each.")
for i, upload, j in paging.page_items(cards, page):
    if i in series:
        series_view.series_panel(i, series[i], run, predictor, explainers, settings, class_names,
                                 "predict", notes, note_seen, run_title, hashes)
    views.image_card(i, upload, j, results, class_names, settings, prefix="predict", box=boxes[i],
                     run_title=run_title, model_hashes=hashes, folders=folders)
