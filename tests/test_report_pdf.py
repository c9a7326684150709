"""PDF reports: one A4 page per image, the disclaimer, no file names."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import numpy as np

from dashboard.report_pdf import DISCLAIMER, Page, PageModel, report_pdf


def _page(k: int) -> Page:
    rng = np.random.default_rng(k)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    # the explained class (pituitary) is neither model's answer
    models = [PageModel(name, img, "Grad-CAM for 'pituitary', last conv block, 7×7", probs)
              for name, probs in (
                  ("Custom CNN", {"glioma": 0.7, "meningioma": 0.1, "no_tumor": 0.1,
                                  "pituitary": 0.1}),
                  ("MobileNetV2", {"glioma": 0.2, "meningioma": 0.6, "no_tumor": 0.1,
                                   "pituitary": 0.1}))]
    return Page(f"{k:064x}", img, models, ["The models disagree: at least one of them is wrong."],
                true_label="glioma" if k else None)


def _text(pdf: bytes) -> str:
    """The PDF's text by pdftotext (poppler-utils); the test is skipped where it is missing."""
    import subprocess

    import pytest

    try:
        return subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True,
                              check=True).stdout.decode()
    except FileNotFoundError:
        pytest.skip("pdftotext (poppler-utils) is not installed")


def test_one_page_per_image_with_the_disclaimer():
    scale = np.zeros((14, 256, 3), np.uint8)
    when = datetime(2026, 12, 1, tzinfo=timezone.utc)
    data = report_pdf([_page(0), _page(1), _page(2)], "Reference · deduplicated split (r1)",
                      scale, now=lambda: when)
    assert data.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page\b", data)) == 3  # /Pages does not match \b here
    assert DISCLAIMER.encode() in data  # in the document's metadata, readable by any viewer
    # its title says what it is: "explanation report" read as a clinical report form
    from dashboard.report_pdf import PDF_TITLE

    assert "not a medical report" in PDF_TITLE and PDF_TITLE.encode() in data
    single = report_pdf([_page(0)], "t", scale, now=lambda: when)
    assert len(re.findall(rb"/Type\s*/Page\b", single)) == 1


def test_a_page_names_classes_and_the_colour_scale_as_the_cards_do():
    """Class labels as people read them ("no tumour", not "no_tumor"), the colour bar's numbers
    (0 / 0.5 / 1, like the cards' legend) and a readable date."""
    import subprocess

    import pytest

    when = datetime(2026, 12, 2, 9, 53, 34, tzinfo=timezone.utc)
    pdf = report_pdf([_page(1)], "Run (r1)", np.zeros((14, 256, 3), np.uint8),
                     now=lambda: when)
    try:
        text = subprocess.run(["pdftotext", "-layout", "-", "-"], input=pdf,
                              capture_output=True, check=True).stdout.decode()
    except FileNotFoundError:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    assert "no tumour" in text and "no_tumor" not in text
    assert re.search(r"\b0\s+0\.5\s+1\b", text), text  # the colour bar's ticks, in order
    assert "normalised per image" in text
    assert "2 Dec 2026, 09:53 UTC" in text
    # a reader took the explained class for the answer: each model's answer is stated
    assert "Custom CNN answers glioma (70%)" in text
    assert "MobileNetV2 answers meningioma (60%)" in text
    assert "70% (answer)" in text and "60% (answer)" in text
    assert text.count("(answer)") == 2


def test_a_run_title_with_dollar_signs_is_printed_as_written():
    """A run title "Study $\\notacommand$ v2" (set with train --config) failed the whole PDF,
    nothing downloaded; "cost $5 and $10" was drawn as maths."""
    scale = np.zeros((14, 256, 3), np.uint8)
    for title in (r"Study $\notacommand$ v2", "cost $5 and $10"):
        data = report_pdf([_page(0)], title, scale)
        assert data.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page\b", data)) == 1


def test_long_panel_titles_are_wrapped_to_their_panel():
    """One model's "…, last conv block, 16×16" ran over the next panel's title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import dashboard.report_pdf as R

    page = _page(0)
    long = [R.PageModel(m.label, m.overlay, m.caption + ", last conv block, 16×16; hottest at "
                        "the image's upper left", m.probs) for m in page.models]
    page = R.Page(page.digest, page.original, long, page.flags, page.true_label)
    fig = plt.figure(figsize=(8.27, 11.69))
    try:
        R._images(fig, page)
        titles = [ax.get_title() for ax in fig.axes]
    finally:
        plt.close(fig)
    assert len(titles) == 3
    assert all(len(line) <= 40 for t in titles for line in t.splitlines()), titles
    assert "upper left" in " ".join(titles[1].split())  # wrapped, not cut


def test_a_long_run_title_stays_on_the_page():
    """A run title of a few hundred characters ran off the page's right edge: it is cut with
    an ellipsis, and the date after it stays on the page."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import dashboard.report_pdf as R

    title = "Study of contrast-enhanced T1 slices, " * 12
    created = "2 Dec 2026, 09:53 UTC"
    fig = plt.figure(figsize=(8.27, 11.69))
    try:
        R._text_page(fig, _page(0), "W" * 200, created)  # the widest letters
        R._text_page(fig, _page(0), title, created)
        renderer = fig.canvas.get_renderer()
        width = fig.bbox.width
        headers = [t for t in fig.texts if created in t.get_text()]
        assert len(headers) == 2
        for t in headers:
            assert t.get_window_extent(renderer).x1 <= width, t.get_text()
            assert t.get_text().endswith(f"… · {created}")
        assert headers[1].get_text().startswith("Study of contrast-enhanced T1 slices, Study")
    finally:
        plt.close(fig)
    fig = plt.figure(figsize=(8.27, 11.69))
    try:  # a title that fits is left whole
        R._text_page(fig, _page(0), "Reference · deduplicated split (r1)", created)
        assert fig.texts[1].get_text() == f"Reference · deduplicated split (r1) · {created}"
    finally:
        plt.close(fig)


def test_flags_are_stacked_without_overlap_and_none_is_dropped_unsaid():
    """The first six flags were drawn at fixed steps (a long one ran into the next) and a
    seventh was dropped without a word."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import dashboard.report_pdf as R

    long = ("Custom CNN says no tumour: a 'no tumour' answer cannot rule a tumour out: it means "
            "the slice looks most like the training data's no-tumour images (a folder that "
            "includes CT slices), not that the brain is normal. On this run's test images, "
            "71% of its 'no tumour' answers were right, and it called 29 of 415 tumours 'no "
            "tumour'.")
    for n, dropped in ((2, 0), (5, 0), (12, None)):
        page = _page(0)
        page = R.Page(page.digest, page.original, page.models, [long] * n, page.true_label)
        fig = plt.figure(figsize=(8.27, 11.69))
        try:
            # as on a page: below the probability table, wherever its last row ends (a third of
            # the page was left blank above the flags)
            table_bottom = R._probabilities(fig, page)
            R._flags(fig, page, table_bottom)
            renderer = fig.canvas.get_renderer()
            boxes = [t.get_window_extent(renderer) for t in fig.texts[1:]]  # after "Flags"
            texts = [t.get_text() for t in fig.texts[1:]]
            height = fig.bbox.height
            assert fig.texts[0].get_window_extent(renderer).y1 <= table_bottom * height
            assert fig.texts[0].get_position()[1] > R.FLAGS_TITLE  # higher than before
            for upper, lower in zip(boxes, boxes[1:], strict=False):
                assert lower.y1 <= upper.y0 + 0.5  # stacked, no overlap
            assert all(b.y0 >= R.FLAGS_BOTTOM * height - 1 for b in boxes)  # above the files
            assert all(b.x1 <= fig.bbox.width for b in boxes)
            more = [t for t in texts if t.startswith("+ ")]
            sizes = {t.get_fontsize() for t in fig.texts[1:]}
            if dropped == 0:  # five fit in smaller type (four were counted away before)
                assert len(texts) == n and not more
                assert sizes == ({R.FLAG_SIZE} if n == 2 else {R.FLAG_FALLBACK[0][0]}), sizes
            else:
                shown = len(texts) - 1
                assert more == [f"+ {n - shown} more flags not printed: the dashboard's card "
                                "for this image lists every one."] and shown >= 5
        finally:
            plt.close(fig)


def test_the_probabilities_are_said_to_be_temperature_scaled_under_their_table():
    """h64's review: the PDF's percentages are temperature-sharpened and ran high on another
    source, and the page said nothing; `Page.probability_note` is printed under the table,
    above the flags, none of it overlapping."""


    page = _page(1)
    page.probability_note = ("Percentages temperature-scaled (Custom CNN T = 0.61) on validation "
                             "images like the training data: on images from other sources they "
                             "run high. Calibration error (ECE) on this run's test images: Custom "
                             "CNN 0.124 (0.068 unscaled).")
    pdf = report_pdf([page], "Run (r1)", np.zeros((14, 256, 3), np.uint8))
    text = _text(pdf)
    flat = " ".join(text.split())
    assert "Percentages temperature-scaled (Custom CNN T = 0.61)" in flat
    assert "CNN 0.124 (0.068 unscaled)." in flat
    assert flat.index("pituitary") < flat.index("Percentages") < flat.index("Flags")


def test_a_page_says_whose_right_is_where_as_the_card_does():
    """The card's colour scale says "the patient's right is on the picture's left" when a NIfTI
    or DICOM file's orientation says so (else that left and right are the picture's); the PDF
    said neither, so a printed heatmap "hottest at the image's upper left" was read as the
    patient's left."""
    from dataclasses import replace

    from pipeline.names import PICTURE_SIDES, RADIOLOGICAL_SIDES

    scale = np.zeros((14, 256, 3), np.uint8)
    pdf = report_pdf([replace(_page(1), radiological=True), _page(2)], "Run (r1)", scale)
    text = _text(pdf)
    # the colour strip's tick numbers sit on the note's lines: read around them
    radiological, plain = (" ".join(w for w in page.split() if w not in ("0", "0.5", "1"))
                           for page in text.split("\f")[:2])
    assert RADIOLOGICAL_SIDES in radiological and PICTURE_SIDES not in radiological
    assert PICTURE_SIDES in plain and RADIOLOGICAL_SIDES not in plain


def test_a_page_whose_card_hides_the_answers_says_so_over_each():
    """The card of a slice that may be CT folds its answers behind "Show the answers anyway";
    its PDF page headlined "Custom CNN answers no tumour (97%)", the warning far below under
    Flags (a review). The page says over each answer, and over the table, that it is shown
    anyway, and why."""
    import dataclasses


    page = dataclasses.replace(_page(1), withheld="may be CT, not MRI")
    pdf = report_pdf([page], "Run (r1)", np.zeros((14, 256, 3), np.uint8))
    text = _text(pdf)
    flat = " ".join(text.split())
    assert flat.count("May be CT, not MRI: shown anyway") == 2, flat
    assert "Shown anyway (may be CT, not MRI): Probabilities" in flat, flat
    assert "Custom CNN answers glioma (70%)" in flat  # shown, as the card's fold shows it
    plain = " ".join(_text(report_pdf([_page(1)], "Run (r1)",
                                      np.zeros((14, 256, 3), np.uint8))).split())
    assert "shown anyway" not in plain.lower()


def test_a_page_names_its_image_as_the_table_does():
    """The PDF pages of a series' slices were told apart by their hashes alone (a review): a
    page names its image as the predictions table does ("upload 1 · slice 3 of 5"), never by
    its file name."""
    import dataclasses


    page = dataclasses.replace(_page(1), ref="upload 1 · slice 3 of 5")
    text = _text(report_pdf([page], "Run (r1)", np.zeros((14, 256, 3), np.uint8)))
    assert "upload 1 · slice 3 of 5" in text, text


def test_a_long_reason_to_withhold_stays_on_the_page_and_off_the_disclaimer():
    """A far verdict of both models ("far unlike Custom CNN's and MobileNetV2's training data")
    ran the table's title off both edges of the page, and over each picture two red lines ran
    up under the disclaimer (a review)."""
    import dataclasses

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import dashboard.report_pdf as R

    page = dataclasses.replace(_page(1), withheld="far unlike Custom CNN's and MobileNetV2's "
                               "training data", true_label="meningioma")
    fig = plt.figure(figsize=(8.27, 11.69))
    try:
        R._text_page(fig, page, "Run (r1)", "2 Dec 2026, 09:53 UTC")
        disclaimer = next(t for t in fig.texts if t.get_text() == R.DISCLAIMER)
        R._images(fig, page)
        R._colour_bar(fig, np.zeros((14, 256, 3), np.uint8))
        strip = fig.axes[-1]
        R._probabilities(fig, page)
        renderer = fig.canvas.get_renderer()
        below = disclaimer.get_window_extent(renderer).y0
        panels = [ax for ax in fig.axes if ax.get_title()][:3]
        assert all(ax.title.get_window_extent(renderer).y1 < below for ax in panels)
        table = fig.axes[-1].title
        box = table.get_window_extent(renderer)
        assert box.y1 < strip.get_window_extent(renderer).y0  # under the colour strip
        assert box.x0 >= 0 and box.x1 <= fig.bbox.width, table.get_text()
        said = " ".join(table.get_text().split())
        assert said.startswith("Shown anyway (far unlike Custom CNN's and MobileNetV2's "
                               "training data): Probabilities") and "meningioma" in said
    finally:
        plt.close(fig)
