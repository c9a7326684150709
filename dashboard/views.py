"""Drawing pieces shared by the Predict and Error-analysis pages (controls, image cards).

Nothing here computes a prediction: `dashboard.inference.explain` does, and these functions draw
its `Results` with the `Settings` that `controls` returns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
import streamlit as st

from dashboard import card_flags, core, flags, layer_names, records, state
from dashboard import figures as F
from dashboard.answers import agreement, verdict_line
from dashboard.inference import (
    TRUE_CLASS,
    ImageResult,
    Results,
    Settings,
    box_in_frame,
    layer_text,
    peak_in_box,
)
from dashboard.report_pdf import Page, PageModel, report_pdf
from pipeline.explain import (
    LAYER_METHODS,
    METHOD_LABELS,
    METHODS,
    get_method,
    heatmap_to_rgb,
    methods_in_words,
    render_overlay,
    target_words,
    to_png,
)
from pipeline.explain.alarm import OUTSIDE_HEAD_ALARM
from pipeline.explain.overlay_text import overlay_caption, overlay_note
from pipeline.explain.render import (
    CAPTION_MIN_SIDE,
    caption_strip,
    outline_words,
    peak_words,
)
from pipeline.modality import is_small
from pipeline.names import HEATMAP_ALPHA

# tumour box outline on overlays (RGB): magenta, which viridis never takes (green was its middle)
BOX_COLOUR = (255, 0, 255)
BOX_COLOUR_NAME = "magenta"

# the method box's first choice: each model's own default method and layer (Settings.method None)
DEFAULT_METHOD = "default"
# the menu says which methods take longer (the registry's `cost`); captions and tables name the
# method alone (the menu's "Score-CAM (slower)" had reached every caption: a review)
CHOICE_LABELS = {DEFAULT_METHOD: "Each model's default",
                 **{m: f"{label} · slower" if get_method(m).cost == "slow" else label
                    for m, label in METHOD_LABELS.items()}}

# every picture of a card (original, overlays) is drawn this size, square, so that they show
# at one height and their captions line up; small model inputs are enlarged to stay readable
# Widths (px) of select boxes set in rows that wrap (`st.container(horizontal=True, wrap=True)`):
# each box as wide as its longest choice, so none is cut, side by side where the row has room
# and one under another where not (columns cut them at 819 and 911 px: "any cl", "wrong by any
# mo", half a layer's name)
SELECT_WIDTH = {"class": 170, "count": 110, "filter": 250, "classes": 220, "layer": 400,
                "sort": 320}
DISPLAY_SIDE = 320
# the outline toggle's share of the hottest pixels (`explain --outline PCT` takes any)
OUTLINE_PERCENT = 10.0


def controls(explainers: dict[str, Any], class_names: Sequence[str], prefix: str,
             show_layers: bool = True, defaults: dict[str, str] | None = None,
             true_class: bool = False) -> Settings:
    """Method, target class, opacity, outline and (in an expander) the layer of each model.
    `true_class`: the class box also offers each image's true class (`inference.TRUE_CLASS`:
    the Error analysis page, whose images all have one).

    The method box starts on "Each model's default" (`Settings.method` None): every model is
    explained with its own default method, named in the box's help from `defaults` (model ->
    method, `state.default_methods`; else the explainers' own).

    Call it on every run of a page, before any `st.stop()`: widget state is the one truth about
    what the user asked for, and Streamlit drops the state of a widget left out of a run.
    """
    # Two rows of two: four in one row cut labels and values ("Each mode…", "O") at 1024 px
    c1, c2 = st.columns(2, vertical_alignment="bottom")
    c3, c4 = st.columns(2, vertical_alignment="bottom")
    # First shown: each model's own default (the run's recorded choice per model,
    # Explainer.method), so two models with different chosen methods each get theirs.
    if defaults is None:
        defaults = {m: ex.method for m, ex in explainers.items()}
    named = "; ".join(f"{F.model_label(m)}: {METHOD_LABELS.get(d, d)}" for m, d in defaults.items())
    choice = c1.selectbox("Explanation method", [DEFAULT_METHOD, *METHODS],
                          key=f"{prefix}_method",
                          format_func=lambda m: CHOICE_LABELS.get(m, m),
                          help="'Each model's default' is the method and layer chosen for each "
                               "model on validation images with a tumour box (" + (
                                   named or "Grad-CAM when none was chosen") + "). "
                               # from the registry: a new method is described with the others
                               + methods_in_words() + ".")
    method = None if choice == DEFAULT_METHOD else choice
    targets = ["predicted class", *([TRUE_CLASS] if true_class else []), *class_names]
    state.offered(f"{prefix}_target", targets, "predicted class")  # kept if this run has it
    target = c2.selectbox("Explain which class", targets,
                          key=f"{prefix}_target", format_func=F.class_name,
                          help="'predicted class' explains each model's own answer; "
                               + ("'true class' each image's real class (where is the "
                                  "evidence for what it is?); " if true_class else "")
                               + "choose a class to ask 'what would make this look like X?'.")
    alpha = c3.slider("Heatmap opacity", 0.0, 1.0, HEATMAP_ALPHA, 0.05, key=f"{prefix}_alpha")
    outline = c4.toggle(f"Outline the hottest {OUTLINE_PERCENT:g}%", key=f"{prefix}_outline",
                        help=outline_words(OUTLINE_PERCENT))
    layers: dict[str, str | None] = {}
    if show_layers:
        # side by side where they fit, else one under the other: a layer's name, plain words and
        # technical name, was cut in half a page's width at 819 and 911 px
        with (st.expander("Layers (advanced)"),
              st.container(horizontal=True, wrap=True, key=f"{prefix}_layers")):
            for m, ex in explainers.items():
                options = list(ex.valid_layers)
                index = options.index(ex.layer) if ex.layer in options else len(options) - 1
                # the run's chosen layer again after a switch of run (`state.RESET_ON_SWITCH`)
                state.offered(f"{prefix}_layer_{m}", options, options[index])
                layers[m] = st.selectbox(
                    f"{F.model_label(m)} layer", options, index=index, key=f"{prefix}_layer_{m}",
                    width=SELECT_WIDTH["layer"],
                    disabled=(method or ex.method) not in LAYER_METHODS,
                    format_func=lambda name, ex=ex: layer_names.layer_option(
                        layer_text(ex, name), name),
                    help="Deeper layers: coarser maps about whole structures; earlier layers: "
                         "finer, more edge-like maps. Not used by SmoothGrad. Each layer is "
                         "named in plain words, then by its technical name in brackets (the "
                         "name `--layer` takes on the command line), or by that name alone "
                         "where the words would only repeat it.")
    return Settings(method, None if target == "predicted class" else target, alpha, outline,
                    layers)


def colour_scale() -> np.ndarray:
    """A strip of the heatmaps' colour map, low (left) to high (right), for a legend."""
    ramp = np.tile(np.linspace(0, 1, 256, dtype=np.float32), (14, 1))
    return heatmap_to_rgb(ramp)


def overlay(prepared: np.ndarray, heatmap: np.ndarray, settings: Settings,
            box: np.ndarray | None = None) -> np.ndarray:
    """The heatmap over what the model saw, DISPLAY_SIDE square (enlarged bicubic, or shrunk);
    `box` (a mask in the model's frame) is outlined in `BOX_COLOUR`."""
    base = core.square_for_display(prepared, DISPLAY_SIDE)
    out = render_overlay(base, heatmap, alpha=settings.alpha,
                         outline_top_percent=OUTLINE_PERCENT if settings.outline else None)
    if box is not None and np.any(box):
        big = cv2.resize(np.asarray(box, np.uint8), (out.shape[1], out.shape[0]),
                         interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, BOX_COLOUR, max(1, round(out.shape[0] / 160)))
    return out


def _outside_alarm() -> float:
    """The shortcut alarm's threshold (`explain.alarm`, which imports no Keras)."""
    return OUTSIDE_HEAD_ALARM


def explained(r: ImageResult, class_names: Sequence[str]) -> tuple[str, str, str]:
    """What one overlay explains, as its caption and report page name it: the method in words,
    what it explains ("for 'glioma'", or that a class-agnostic method's map is the same for
    every class: `methods.target_words`), and ", <layer>" (empty for a layer-free method)."""
    layer = f", {r.layer_words or r.layer}" if r.layer else ""
    target = target_words(r.method, F.class_name(class_names[r.target]))
    return METHOD_LABELS.get(r.method, r.method), target, layer


def frame_box(box: np.ndarray | None, upload: core.Upload, r: ImageResult) -> np.ndarray | None:
    """The image's known tumour box in the model's frame of `r` (None: no box)."""
    if box is None or upload.image is None:
        return None
    return box_in_frame(box, upload.image, r)


def captioned_picture(img: np.ndarray, upload: core.Upload, j: int, results: Results,
                      class_names: Sequence[str], m: str, outline: bool = False,
                      run_title: str = "",
                      folders: Mapping[str, Sequence[str]] | None = None) -> np.ndarray:
    """Model m's overlay `img` of good image j as the card's download: a picture that travels
    alone, so with `explain`'s caption (answer, heatmap, warnings, the split note) and small
    print (how to read it, the disclaimer); the bare overlay went without any of them. `outline`:
    `img` has the white line of the outline toggle, which the caption then names. `run_title`:
    the run as the PDF names it, which the split note names too (alone, "this run's" said
    nothing of which run). `folders`: the run's class folders of other names, named beside
    the class ("'no tumour' (class folder: Healthy)"), as `explain`'s captions name them."""
    r, probs, low = results.per_model[m][j], results.probs[m][j], results.low_below.get(m)
    k = int(np.argmax(probs))
    entry = {"predicted": class_names[k], "target": class_names[r.target], "method": r.method,
             "probs": dict(zip(class_names, (float(p) for p in probs), strict=True)),
             "peak": peak_words(r.heatmap), "weak": low is not None and probs[k] < low,
             "colour": j < len(results.colour) and results.colour[j],
             "photo": j < len(results.photo) and results.photo[j],
             "unlike": results.unlike(j).get(m), "far": results.far(j).get(m),
             "outside_head_flag": r.outside_head_flag}
    answers = {int(np.argmax(p[j])) for p in results.probs.values()}
    lines = overlay_caption(m, entry, upload.seen_split or None, upload.seen_exact,
                            disagree=len(answers) > 1,
                            apart=card_flags.heatmaps_apart(results, j) is not None,
                            may_be_ct=j < len(results.ct) and results.ct[j],
                            may_be_t2=j < len(results.t2) and bool(results.t2[j]),
                            outline=OUTLINE_PERCENT if outline else None,
                            far_models=[n for n, v in results.far(j).items() if v],
                            run=run_title or None, folders=folders,
                            true_label=upload.true_label,
                            small=is_small(upload.image, card_flags.input_sides(results, j)))
    scale = CAPTION_MIN_SIDE / min(img.shape[:2])
    if scale > 1:  # as large as explain's, so its caption reads at the same size
        img = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)),
                         interpolation=cv2.INTER_CUBIC)
    return np.concatenate([img, caption_strip(img.shape[1], lines,
                                              overlay_note(upload.radiological))], axis=0)


def report_page(upload: core.Upload, j: int, results: Results, class_names: Sequence[str],
                settings: Settings, box: np.ndarray | None = None,
                overlays: dict[str, np.ndarray] | None = None) -> Page:
    """Good image j's report page, without drawing anything: the original, each model's overlay
    (rendered here with `settings` and `box`, unless its card already drew it: `overlays`,
    model -> picture), probabilities (the models' pooled answer's too) and every flag. The
    Predict page's "Report PDF, all" builds one per analysed image with it, whichever page of
    cards is shown."""
    answers, shortcuts = card_flags.image_flags(results, j)
    models: list[PageModel] = []
    for m, rs in results.per_model.items():
        r = rs[j]
        img = (overlays or {}).get(m)
        if img is None:
            img = overlay(r.prepared, r.heatmap, settings, frame_box(box, upload, r))
        method, target, layer = explained(r, class_names)
        where = peak_words(r.heatmap)
        # the default map's test record for its class travels with the page, as on the card
        record = r.default and flags.pointing_record_words(
            results.pointing_records.get(m), class_names[r.target])
        models.append(PageModel(
            F.model_label(m), img, f"{method} {target}{layer}"
            + (f"; hottest at the image's {where}" if where else "")
            + (f". {record[0]}" if record else ""),
            {c: float(p) for c, p in zip(class_names, r.probs, strict=True)}))
    # the split note travels with the page (a training image's PDF is no test either); what the
    # card leads with leads its flags: the PDF draws them until the page is full (a review)
    notes = [upload.seen] if upload.seen else []
    lead = flags.leading_flags(answers, list(results.per_model))
    rest = [f for f in answers if not any(f is g for g in lead)]
    pooled = None if results.together is None else {  # the models' answers pooled
        c: float(p) for c, p in zip(class_names, results.together[j], strict=True)}
    below = results.together_weak_below
    return Page(upload.digest, upload.image, models, [*lead, *notes, *rest, *shortcuts],
                upload.true_label, results.calibration_note, upload.radiological, pooled,
                results.together_note,
                pooled_weak=bool(pooled and below is not None and max(pooled.values()) < below),
                withheld=card_flags.withheld(answers), ref=upload.ref)


def image_card(i: int, upload: core.Upload, j: int | None, results: Results | None,
               class_names: Sequence[str], settings: Settings, prefix: str,
               box: np.ndarray | None = None, run_title: str = "",
               model_hashes: dict[str, str] | None = None, compact: bool = False,
               folders: Mapping[str, Sequence[str]] | None = None) -> Page | None:
    """One file: its error message, or probabilities, agreement and both models' heatmaps.

    The original and the overlays are drawn DISPLAY_SIDE square, side by side in equal columns,
    so they show at one height with their captions in line; under them, the report button and
    the colour scale with its numbers. `box`: the image's known tumour box (a mask in its own
    pixel grid), drawn on each overlay with whether the heatmap's peak hit it. A heatmap whose
    energy is mostly outside the head (the shortcut alarm), or an empty one, gets a short label
    under its overlay (the sentence in its tooltip) and one plain-words note for the card below
    the images. The card's warnings (`flags.image_warnings`) are folded in one expander
    labelled with their count and kinds, except those it leads with instead of an agreement
    badge (`flags.leading_flags`); an image that may be no MRI has its answers and heatmaps
    folded behind "Show the answers anyway". `compact`: a card half the page wide (the Error
    page's grid): probabilities one row per class, the colour scale on a row of its own.
    `folders`: class -> the run's class folders of other names (`discovery.folders_by_class`),
    which the overlay's download names beside the class as `explain`'s captions do.
    Returns the image's report page (`report_page`, with the overlays drawn here; None for a
    file that could not be explained), and offers it as a PDF (with `model_hashes`: display
    name -> SHA-256 of the model file)."""
    # `fold`: what is drawn after an image that may be no MRI goes into its expander
    with st.container(border=True, key=f"{prefix}_card_{i}"), contextlib.ExitStack() as fold:
        # "· upload 3", as the CSV and PDF name it (folders share names); a slice's place once
        title = f"**{core.literal(upload.name)}**" + (
            f" · {upload.ref.partition(' · ')[0]}" if upload.ref.startswith("upload ") else "")
        if upload.true_label:
            title += f" · true class: **{F.class_name(upload.true_label)}**"
        # a heading (h3, drawn small by static/layout.css): a screen reader's user jumps from
        # card to card by headings; a paragraph left only the page's title to jump to
        st.subheader(title, anchor=False)
        if upload.note:
            st.caption(upload.note)
        if upload.seen and upload.seen_split not in flags.WARNING_SPLITS:  # a test image's
            st.info(upload.seen, icon=":material/history:")  # (a warning's is folded below)
        if not upload.ok or j is None or results is None:
            st.warning(core.literal(upload.error or "This file could not be processed."),
                       icon=":material/broken_image:")
            return None
        probs = results.probs
        if not probs:
            st.error("No model could process this image: "
                     + "; ".join(f"{F.model_label(m)}: {core.literal(e)}"
                                 for m, e in results.errors.items()),
                     icon=":material/error:")
            return None
        agree = bool(agreement({m: p[j:j + 1] for m, p in probs.items()})[0])
        answers, shortcuts = card_flags.image_flags(results, j)
        # what the summary counts for it: the boxes the card leads with and its fold's label
        warnings = flags.image_warnings(answers, shortcuts, upload.seen, upload.seen_split,
                                        upload.seen_exact)
        # An image that may be no brain MRI, or that every model finds unlike its training
        # data, leads with that and gets no agreement badge: two models agreeing on colour
        # noise got a check mark, which read as reassurance to a room (a lecturer's review)
        lead = flags.leading_flags(answers, list(probs))
        for flag in lead:
            st.warning(flag, icon=":material/report:")
        answers = [f for f in answers if not any(f is g for g in lead)]
        folded = [f for f in warnings if not any(f is g for g in lead)]
        nested = any(getattr(f, "kind", "") in flags.NOT_MRI_KINDS for f in lead)
        if nested:  # its answers and heatmaps mean nothing if it is no MRI: folded, keyed
            fold.enter_context(st.expander("Show the answers anyway", key=f"{prefix}_anyway_{i}",
                                           icon=":material/visibility:"))
        elif not lead:
            # agreement is no comfort beside a warning (two models agree on noise, too): green
            # only when the card has none, a split note included (a presenter's review found it
            # green over "in this run's validation split")
            st.badge("models agree" if agree else "models disagree",
                     icon=":material/check:" if agree else ":material/call_split:",
                     color=("gray" if folded else "green") if agree else "orange")
        # the models' answers pooled (`evaluate.together`) last on the line, what that is and
        # its test record in the line's tooltip: a table row and a caption more pushed the
        # heatmaps below a 1280x720 screen (tests/test_dashboard_browser.py)
        pooled = results.together
        below = results.together_weak_below
        st.markdown(verdict_line(probs, j, class_names, upload.true_label, pooled, below),
                    help=None if pooled is None else records.together_help(
                        results.together_note, below))
        # Every other warning (a training image's split note, the answers', the heatmaps') in
        # one expander labelled with their count and kinds (`summary_line`): two to five
        # full-width boxes put the heatmaps a screen below the answer at 1280×720 (a lecturer's
        # review), and in a half-width card they made it far taller than its neighbour. Keyed,
        # so a rerun keeps it as the reader left it; no expander in the "anyway" one, which
        # folds them already (Streamlit nests none).
        folder = (st.expander(flags.summary_line(folded), icon=":material/report:",
                              key=f"{prefix}_warnings_{i}")
                  if folded and not nested else contextlib.nullcontext())
        with folder:
            for flag in folded:
                if getattr(flag, "kind", "") == "seen":
                    st.info(flag + (f" {upload.seen_advice}" if upload.seen_advice else ""),
                            icon=":material/history:")
                else:
                    st.warning(flag, icon=":material/report:")
        drawn: dict[str, np.ndarray] = {}  # model -> its overlay, for the report page
        models = [*results.per_model, *results.errors]
        st.markdown(F.probability_table({m: p[j] for m, p in probs.items()}, class_names,
                                        by_class=compact))
        if results.calibration_note:  # what the percentages are, and how far off they ran
            st.caption(results.calibration_note)
        cols = st.columns(1 + len(models))
        with cols[0]:
            shown, framed = core.original_for_display(
                upload.image, any(rs[j].crop for rs in results.per_model.values()), DISPLAY_SIDE)
            said = core.ORIGINAL_FRAMED if framed else "Original"
            st.image(shown, width="stretch", caption=said, alt=said)  # alt: an accessibility review
        # named by the image's hash like its PDF, never by the upload's name (it can identify a
        # patient, and a saved overlay travels further than the page)
        stem = f"overlay-{upload.digest[:12]}"
        outside: dict[str, float] = {}  # model -> share outside the head, flagged heatmaps
        empty: list[str] = []  # models whose heatmap is empty
        for col, m in zip(cols[1:], models, strict=False):
            with col:
                if m in results.errors:
                    st.error(f"{F.model_label(m)} could not explain: "
                             f"{core.literal(results.errors[m])}",
                             icon=":material/error:")
                    continue
                r = results.per_model[m][j]
                in_frame = frame_box(box, upload, r)
                img = drawn[m] = overlay(r.prepared, r.heatmap, settings, in_frame)
                method, target, _ = explained(r, class_names)
                default = " · this model's default" if r.default else ""
                where = peak_words(r.heatmap)
                # the hottest place in words: the picture's text for a screen reader, and its
                # meaning for anyone who cannot tell the colours apart
                peak = f" · hottest at the image's {where}" if where else ""
                said = f"{F.model_label(m)} · {method} {target}{default}{peak}"
                st.image(img, width="stretch", caption=said, alt=f"Heatmap: {said}")
                if r.layer:  # st.image's caption takes no tooltip: the layer gets its own line
                    st.caption(f"Layer{'s' if r.fused > 1 else ''}: {r.layer_words or r.layer}",
                               help=f"Technical name: `{r.layer}`")
                # flags as short captions, not badges: a badge cut "Outside the head 65%" to
                # "Outside the brai…" in the grid's narrow columns, where a caption wraps
                if r.empty:
                    empty.append(m)
                    st.caption(f":material/info: {flags.EMPTY_LABEL}",
                               help=flags.empty_help(method, target))
                if in_frame is not None and in_frame.any():
                    st.markdown(flags.box_hit_words(
                        peak_in_box(r, in_frame), class_names[r.target], upload.true_label,
                        f"the tumour box ({BOX_COLOUR_NAME})"))
                # how often this model's default maps of this class found the tumour on test
                record = r.default and flags.pointing_record_words(
                    results.pointing_records.get(m), class_names[r.target])
                if record:
                    st.caption(record[0], help=record[1])
                if r.outside_head_flag and r.outside_head is not None:
                    outside[m] = r.outside_head
                    st.caption(f":orange[:material/warning: "
                               f"{flags.outside_label(r.outside_head)}]",
                               help=flags.outside_help(r.outside_head, _outside_alarm()))
                st.download_button(  # captioned and encoded only when clicked, not per rerun
                    "Overlay PNG", lambda img=img, m=m: to_png(
                        captioned_picture(img, upload, j, results, class_names, m,
                                          settings.outline, run_title, folders)),
                    file_name=f"{stem}_{m}_{r.method}.png", mime="image/png",
                    key=f"{prefix}_png_{i}_{m}", on_click="ignore", icon=":material/download:")
        page = report_page(upload, j, results, class_names, settings, box, drawn)
        # under the first overlay, about one picture wide (as wide as both overlays, its numbers
        # were outsized); in a compact card, whose pictures are narrow, under both overlays
        below = st.columns([1, max(len(models), 1)] if compact else [1] * (1 + len(models)))
        with below[1 if len(below) > 1 else 0]:
            st.image(F.colour_legend(), width="stretch", alt="Heatmap colour scale",
                     caption=F.legend_caption(upload.radiological) + (
                         f" {outline_words(OUTLINE_PERCENT)}" if settings.outline else ""))
        with below[0]:
            # data as a callable: the PDF is drawn only when clicked, never on a rerun
            st.download_button(
                "Report PDF", lambda: report_pdf([page], run_title, colour_scale(),
                                                 model_hashes=model_hashes),
                file_name=f"report-{upload.digest[:12]}.pdf", mime="application/pdf",
                key=f"{prefix}_pdf_{i}", on_click="ignore", icon=":material/picture_as_pdf:",
                help="One page: original, overlays, colour scale, probabilities, flags, run, "
                     "date and the disclaimer. The file name is left out (it can identify a "
                     "patient); the image is named by its SHA-256.")
        # each flag's explanation once per card, full width (in the overlays' narrow columns
        # it wrapped to a dozen lines under each flagged model)
        if outside:
            st.warning(flags.outside_note(outside, _outside_alarm()), icon=":material/warning:")
        if empty:
            st.info(flags.empty_note(empty), icon=":material/info:")
        return page
