"""PDF reports of explained images: one page per image, for one image or for all uploads.

Built with matplotlib's PdfPages (already a dependency, no extra library or browser): the page is
a figure with the original, each model's overlay, a colour scale, the probabilities, the flags,
what was explained, the run and the disclaimer. File names are left out on purpose: they often
carry patient names or record numbers; an image is identified by the SHA-256 of its bytes.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from pipeline import names
from pipeline.names import TOGETHER_LABEL, class_label, percent

DISCLAIMER = names.DISCLAIMER.replace(": not a diagnostic", " - NOT a diagnostic")


@dataclass
class PageModel:
    """One model's part of a page."""

    label: str  # display name
    overlay: np.ndarray  # H×W×3 uint8, the heatmap over what the model saw
    caption: str  # method, explained class, layer
    probs: Mapping[str, float]


@dataclass
class Page:
    """Everything one report page shows about one image."""

    digest: str  # SHA-256 of the file
    original: np.ndarray
    models: Sequence[PageModel]
    flags: Sequence[str]
    true_label: str | None = None
    # under the probabilities: what they are and how far off they ran
    # (`calibration_line.calibration_note`)
    probability_note: str = ""
    # the patient's right is on the picture's left, as the file says (`core.Upload.radiological`:
    # a NIfTI or DICOM series with its orientation): beside the colour scale, as on the card
    radiological: bool = False
    # the models' answers pooled (`evaluate.together`): a last column of the probability table,
    # and the run's record for it after `probability_note`; None / "" for one model
    pooled: Mapping[str, float] | None = None
    pooled_note: str = ""
    pooled_weak: bool = False  # under its validation threshold: "(answer, weak)", as the card
    # why the card hides the answers (`card_flags.withheld`: "may be CT, not MRI"), or "": the
    # page then says so over each answer it shows anyway
    withheld: str = ""
    # how the page's row names the image (`core.Upload.ref`: "upload 1 · slice 3 of 5", never a
    # file name): the pages of a series' slices were told apart by their hashes alone
    ref: str = ""


PDF_TITLE = "Brain MRI XAI - teaching printout, not a medical report"
PANEL_TITLE_LINES = 3  # lines of a picture's title that fit under the disclaimer
PANEL_TITLE_LINE = 0.012  # a 7.5 pt title line, as a share of the page's height
TABLE_TITLE_CHARS = 110  # characters of the table's title a line: 9 pt across the page's 88 %
WITHHELD_COLOUR = "#b91c1c"  # the titles of answers a card hides (may be no MRI): red
SIDES_CHARS = 36  # the sides note's line, right of the colour strip (6.5 pt, to the margin)


def _fit_right(fig, text, full: str, tail: str, right: float = 0.94) -> None:  # noqa: ANN001
    """Cut `full` (drawn as `text`, followed by `tail`) with an ellipsis until the line ends
    left of `right` (a fraction of the page's width): a long run title ran off the page.
    Measured, not counted: "W" is three times as wide as "i"."""
    renderer = fig.canvas.get_renderer()
    keep = len(full)
    while keep > 1 and text.get_window_extent(renderer).x1 > right * fig.bbox.width:
        keep = int(keep * 0.9)
        text.set_text(f"{full[:keep].rstrip()}…{tail}")


def _text_page(fig, page: Page, run_title: str, created: str) -> None:  # noqa: ANN001
    # "report" read as a clinical report form (a clinician's review, 2026-12-05)
    fig.text(0.06, 0.965, PDF_TITLE, fontsize=15, weight="bold")
    header = fig.text(0.06, 0.945, f"{run_title} · {created}", fontsize=8.5, color="#334155")
    _fit_right(fig, header, run_title, f" · {created}")
    fig.text(0.06, 0.925, f"Image SHA-256: {page.digest}", fontsize=7.5, family="monospace")
    fig.text(0.06, 0.895, DISCLAIMER, fontsize=9, color="#92400e", wrap=True,
             bbox=dict(facecolor="#fef3c7", edgecolor="#f59e0b", boxstyle="round,pad=0.5"))


def _answered(model: PageModel) -> str:
    """The class a model answers: its most probable one."""
    return max(model.probs, key=lambda c: model.probs[c])


def answer(model: PageModel) -> str:
    """A model's answer as a page states it: its most probable class and that probability
    ("glioma (70%)"), so that the explained class is never mistaken for the prediction."""
    cls = _answered(model)
    return f"{class_label(cls)} ({percent(model.probs[cls])})"


def _images(fig, page: Page) -> None:  # noqa: ANN001
    # each title line wrapped to its panel: one model's long layer name ran over the next
    # panel's title (about 40 characters of 7.5 pt fit a third of the page)
    chars = max(20, 120 // (1 + len(page.models)))  # the original, then each model's
    # the card hides these answers: the page may not headline them. A reason longer than a
    # line ("far unlike Custom CNN's and MobileNetV2's training data") is said once, in the
    # table's title: on two lines over each picture it ran up under the disclaimer (a review)
    anyway = f"{page.withheld[:1].upper()}{page.withheld[1:]}: shown anyway"
    anyway = (anyway if len(anyway) <= chars else "Shown anyway (why: under the pictures)"
              ) + "\n" if page.withheld else ""
    panels = [("Original" + (f"\n{page.ref}" if page.ref else ""), page.original),
              *[(f"{anyway}{m.label} answers {answer(m)}\n{m.caption}", m.overlay)
                for m in page.models]]
    width = 0.88 / len(panels)
    titles = ["\n".join(textwrap.fill(line, chars) for line in t.splitlines()) for t, _ in panels]
    # the pictures' tops lowered for titles of more than PANEL_TITLE_LINES lines: a withheld
    # answer's fourth line ran up under the disclaimer (a review)
    extra = max(0, max(t.count("\n") + 1 for t in titles) - PANEL_TITLE_LINES)
    height = 0.29 - extra * PANEL_TITLE_LINE
    for k, ((_, img), title) in enumerate(zip(panels, titles, strict=True)):
        ax = fig.add_axes((0.06 + k * width, 0.56, width * 0.94, height))
        ax.imshow(img)
        ax.set_title(title, fontsize=7.5, color=WITHHELD_COLOUR if k and page.withheld
                     else "black")
        ax.axis("off")


def _colour_bar(fig, colour_scale: np.ndarray, radiological: bool = False) -> None:  # noqa: ANN001
    """The colour strip with the numbers the cards' legend shows (`figures.colour_legend`), and
    right of it which side is whose (`names.sides_words`), as the card's legend says it: the
    PDF said nothing, though a NIfTI's or DICOM's file tells the patient's right."""
    ax = fig.add_axes((0.30, 0.525, 0.40, 0.015))
    ax.imshow(colour_scale, aspect="auto")
    end = colour_scale.shape[1] - 1
    ax.set_xticks([0, end / 2, end], ["0", "0.5", "1"], fontsize=7)
    ax.set_yticks([])
    fig.text(0.29, 0.532, "Heatmap colour: relevance for the\nexplained class, 0 low to 1 high,\n"
             "normalised per image (always a\nbrightest spot: not a lesion map)", ha="right",
             va="center", fontsize=6.5, color="#334155")
    fig.text(0.71, 0.532, textwrap.fill(names.sides_words(radiological), SIDES_CHARS),
             ha="left", va="center", fontsize=6.5, color="#334155")


def _probabilities(fig, page: Page) -> float:  # noqa: ANN001
    """The probability table; returns its lower edge as a fraction of the page's height."""
    classes = list(page.models[0].probs) if page.models else []
    # each model's answer marked in its column (a reader took the explained class for it)
    columns = {m.label: m.probs for m in page.models}
    if page.pooled and page.models:
        columns[TOGETHER_LABEL] = page.pooled
    answered = [max(p, key=lambda c: p[c]) for p in columns.values()]
    said = [" (answer, weak)" if name == TOGETHER_LABEL and page.pooled_weak else " (answer)"
            for name in columns]
    rows = [[class_label(c), *[percent(p[c]) + (w if c == a else "")
                               for p, a, w in zip(columns.values(), answered, said, strict=True)]]
            for c in classes]
    truth = (f"True class (dataset label): {class_label(page.true_label)}" if page.true_label
             else "")
    # "calibrated" overclaimed: the temperature is fitted on this run's validation images and
    # does not make other sources' probabilities calibrated (model card)
    title = (("Shown anyway (" + page.withheld + "): " if page.withheld else "")
             + "Probabilities (temperature-scaled on this run's validation images)"
             + (f" · {truth}" if truth else ""))
    # wrapped to the page: a long reason with a true class ran off both edges (a review); the
    # table lowered by the lines beyond one, which ran up into the colour strip
    lines = textwrap.wrap(title, TABLE_TITLE_CHARS)
    ax = fig.add_axes((0.06, 0.30 - (len(lines) - 1) * PANEL_TITLE_LINE, 0.88, 0.19))
    ax.axis("off")
    if rows:
        table = ax.table(cellText=rows, colLabels=["class", *columns],
                         loc="upper center", cellLoc="center")
        table.auto_set_font_size(False)
        table.set_fontsize(8.5)
    ax.set_title("\n".join(lines), fontsize=9 if len(lines) == 1 else 8,
                 color=WITHHELD_COLOUR if page.withheld else "black")
    if not rows:
        return FLAGS_TITLE + FLAGS_GAP
    # the table's real extent (laid out for the renderer): the flags start right below it
    bottom = float(table.get_window_extent(fig.canvas.get_renderer()).y0 / fig.bbox.height)
    note = " ".join(n for n in (page.probability_note, page.pooled_note if page.pooled else "")
                    if n)
    if not note:
        return bottom
    lines = textwrap.wrap(note, FLAG_CHARS + 10)
    fig.text(0.06, bottom - 0.006, "\n".join(lines), fontsize=FLAG_SIZE - 1, va="top",
             style="italic", linespacing=1.2)
    return bottom - 0.006 - FLAG_LINE * len(lines)


# 8.5 pt: at 7.5 a slide or a printout for a class was hard to read (a lecturer's review)
FLAG_SIZE = 8.5
FLAG_CHARS = 110  # of FLAG_SIZE per line across the page (wrapped by us: measured placement)
FLAG_LINE = 0.0135  # a FLAG_SIZE line's height, as a fraction of the A4 page
# the flags' space, above the model files: below the table (about 0.40 with four classes, so
# not the 0.27 a long table would need, which left a third of the page blank above them)
FLAGS_TITLE, FLAGS_BOTTOM = 0.27, 0.105
FLAGS_GAP = 0.02  # between the table and the flags' title, and that title and the first flag


# smaller type for a page whose flags do not all fit at FLAG_SIZE, before any is left out:
# (font size, characters per line); the line height scales with the size
FLAG_FALLBACK = ((7.5, 125), (6.5, 145))


def _flag_lines(flags: Sequence[str], chars: int) -> list[list[str]]:
    return [textwrap.wrap("- " + f, chars, subsequent_indent="  ") for f in flags]


def _flags(fig, page: Page, below: float = FLAGS_TITLE + FLAGS_GAP) -> None:  # noqa: ANN001
    """The card's flags, each wrapped and placed below the last, in smaller type when they do
    not all fit (`FLAG_FALLBACK`); those that still do not fit are counted in a last line (the
    first six were drawn at fixed steps: a long one ran into the next, and a seventh was
    dropped without a word; a review found a page's most important flags counted away)."""
    flags = list(page.flags) or ["No flags: confident answers that agree, on an image like the "
                                 "training data. That is still not a diagnosis."]
    title = max(min(below - FLAGS_GAP, 0.38), FLAGS_TITLE)  # `below`: the table's lower edge
    fig.text(0.06, title, "Flags", fontsize=9, weight="bold")
    y = title - FLAGS_GAP
    for size, chars in ((FLAG_SIZE, FLAG_CHARS), *FLAG_FALLBACK):
        line = FLAG_LINE * size / FLAG_SIZE
        wrapped = _flag_lines(flags, chars)
        if y - sum(line * len(ls) + 0.006 for ls in wrapped) >= FLAGS_BOTTOM:
            break
    for k, lines in enumerate(wrapped):
        rest = len(flags) - k
        if y - line * (len(lines) + (rest > 1)) < FLAGS_BOTTOM:
            fig.text(0.06, y, f"+ {rest} more flag{'s' if rest > 1 else ''} not printed: the "
                     "dashboard's card for this image lists every one.", fontsize=size,
                     style="italic")
            return
        fig.text(0.06, y, "\n".join(lines), fontsize=size, va="top", linespacing=1.25)
        y -= line * len(lines) + 0.006


def _model_files(fig, hashes: Mapping[str, str]) -> None:  # noqa: ANN001
    if not hashes:
        return
    fig.text(0.06, 0.09, "Model files (SHA-256)", fontsize=7, weight="bold")
    for k, (label, digest) in enumerate(hashes.items()):
        fig.text(0.06, 0.075 - 0.0125 * k, f"{label}: {digest}", fontsize=6.5,
                 family="monospace")


def report_pdf(pages: Sequence[Page], run_title: str, colour_scale: np.ndarray,
               now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
               model_hashes: Mapping[str, str] | None = None) -> bytes:
    """The PDF (one A4 page per image) as bytes; `model_hashes`: display name -> the SHA-256
    of that model's file, printed in full on every page."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a server
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    from dashboard.runinfo import readable_time

    created = readable_time(now().isoformat())
    buf = io.BytesIO()
    # every text as written: a run title "Study $\notacommand$ v2" failed the whole PDF (a
    # mathtext error, nothing downloaded) and "cost $5 and $10" was drawn as maths
    with matplotlib.rc_context({"text.parse_math": False}), PdfPages(
            buf, metadata={"Title": PDF_TITLE,
                           "Subject": DISCLAIMER}) as pdf:
        for page in pages:
            fig = plt.figure(figsize=(8.27, 11.69))
            try:
                _text_page(fig, page, run_title, created)
                _images(fig, page)
                _colour_bar(fig, colour_scale, page.radiological)
                _flags(fig, page, _probabilities(fig, page))
                _model_files(fig, model_hashes or {})
                fig.text(0.06, 0.03, DISCLAIMER, fontsize=7, color="#92400e")
                pdf.savefig(fig)
            finally:
                plt.close(fig)
    return buf.getvalue()
