"""The many-uploads summary and a series' slices as an HTML table: each thumbnail an <img> whose
alt is the image's name. In `st.dataframe` a thumbnail's accessible name was its data URL
(screen readers read "data:image/png;base64,…" for every row)."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np

from dashboard import summary_table
from dashboard.summary_table import summary_html

CLASSES = ["glioma", "meningioma", "no_tumor", "pituitary"]
HOSTILE = '<img src=x onerror=alert(1)> "x" & y.png'


class _Read(HTMLParser):
    """Every tag with its attributes, and the text outside tags."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _read(html: str) -> _Read:
    parser = _Read()
    parser.feed(html)
    return parser


def _frame(names: list[str]):
    probs = {"custom_cnn": np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.2, 0.3, 0.4]]),
             "mobilenetv2": np.array([[0.6, 0.2, 0.1, 0.1], [0.5, 0.2, 0.2, 0.1]])}
    thumbs = [summary_table.thumbnail_url(np.full((300, 200, 3), v, np.uint8)) for v in (0, 255)]
    return summary_table.summary_frame(thumbs, names, probs, CLASSES, [[], ["disagree"]])


def test_each_thumbnail_is_named_by_its_file_in_plain_text():
    frame = _frame(["scan-a.png", HOSTILE])
    page = _read(summary_html(frame, "file", label=f"Summary of {HOSTILE}"))
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    # two thumbnails, no image injected by the name; each named by its file, as typed
    assert [a["alt"] for a in images] == ["scan-a.png", HOSTILE]
    assert all(a["src"].startswith("data:image/png;base64,") for a in images)
    # the data URLs are only sources: never text a screen reader reads
    text = "".join(page.text)
    assert "data:image" not in text and "base64" not in text
    assert HOSTILE in text  # the file column shows the name as it is
    region = next(attrs for tag, attrs in page.tags if tag == "div")
    assert region["aria-label"] == f"Summary of {HOSTILE}" and region["role"] == "region"
    assert region["tabindex"] == "0"  # a box that scrolls can be scrolled by keyboard
    assert [a.get("scope") for tag, a in page.tags if tag == "th"] == ["col"] * 6
    # agreement in words, as the grid's tick box said it
    assert "yes" in page.text and "no" in page.text


def test_a_series_names_its_slices_and_a_non_image_source_is_dropped():
    frame = _frame(["slice 1", "slice 2"]).rename(columns={"file": "slice"})
    frame.loc[1, "image"] = "javascript:alert(1)"
    page = _read(summary_html(frame, "slice"))
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    assert [a["alt"] for a in images] == ["slice 1", "slice 2"]
    assert images[1]["src"] == ""


def test_each_order_sorts_by_what_its_label_says_and_ties_keep_the_upload_order():
    """The HTML table has no clickable headers (the grid sorted by any column): the page's
    "Sort the table by" box offers these orders, which sort the images' own numbers, not the
    cells' text ("Glioma (87%)" sorted by the class's spelling)."""
    names = ["scan 10.png", "Scan 2.png", "scan 1.png", "a.png"]
    probs = {"custom_cnn": np.array([[0.9, 0.1, 0, 0], [0.2, 0.5, 0.3, 0],
                                     [0.1, 0.1, 0.1, 0.7], [0.6, 0.4, 0, 0]]),
             "mobilenetv2": np.array([[0.9, 0.1, 0, 0], [0.6, 0.2, 0.2, 0],
                                      [0.1, 0.1, 0.1, 0.7], [0.1, 0.8, 0.1, 0]])}
    flags = [["a"], ["a", "b", "c"], [], ["a", "b", "c"]]
    choices = summary_table.sort_choices(list(probs))
    assert next(iter(choices)) == summary_table.UPLOAD_ORDER  # the first, so the default
    assert choices["confidence:mobilenetv2"] == "MobileNetV2: least confident first"
    # a series' slices: their own order first, and no file name (a slice's name is its order)
    slices = summary_table.sort_choices(list(probs), series=True)
    assert slices[summary_table.UPLOAD_ORDER] == "slice order" and "name" not in slices
    assert {k: v for k, v in slices.items() if k != summary_table.UPLOAD_ORDER} == {
        k: v for k, v in choices.items() if k not in (summary_table.UPLOAD_ORDER, "name")}

    def order(choice: str) -> list[int]:
        return summary_table.sort_order(choice, names, probs, flags)

    assert order(summary_table.UPLOAD_ORDER) == [0, 1, 2, 3]
    assert order("flags") == [1, 3, 0, 2]  # three, three (upload order), one, none
    assert order("disagree") == [1, 3, 0, 2]  # the two that disagree, then those that agree
    assert order("confidence:custom_cnn") == [1, 3, 2, 0]  # 50%, 60%, 70%, 90%
    assert order("confidence:mobilenetv2") == [1, 2, 3, 0]  # 60%, 70%, 80%, 90%
    # by the run's class order, the surest first within a class: glioma 90%, 60%; meningioma
    # 50%; pituitary
    assert order("answer:custom_cnn") == [0, 3, 1, 2]
    assert order("name") == [3, 2, 1, 0]  # numbers as numbers, case ignored: a, 1, 2, 10
    # a choice kept from a run with another model: upload order, no error
    assert order("confidence:efficientnetb0") == order("made up") == [0, 1, 2, 3]


def test_a_sorted_table_keeps_each_thumbnail_with_its_own_row():
    frame = _frame(["first.png", "second.png"])  # the second has a flag
    order = summary_table.sort_order("flags", list(frame["file"]), {}, [[], ["disagree"]])
    assert order == [1, 0]
    page = _read(summary_html(frame.iloc[order], "file"))
    images = [a for tag, a in page.tags if tag == "img"]
    cells = [t for t in page.text if t.endswith(".png")]
    assert [a["alt"] for a in images] == cells == ["second.png", "first.png"]
    assert [a["src"] for a in images] == list(frame["image"])[::-1]  # each its own picture


def test_a_row_whose_card_hides_its_answers_hides_them_too():
    """A review uploaded CT slices: each card hid its answers behind "Show the answers anyway",
    and the summary above the cards printed them in full ("no tumour (>99%)", "models agree:
    yes"). Such a row now says why in place of the answers and the agreement."""
    from dashboard.card_flags import withheld
    from dashboard.flags import CT_WARNING, Flag

    ct = [Flag(CT_WARNING, "ct"), Flag("The models disagree.", "disagree")]
    assert withheld(ct) == "may be CT, not MRI"
    assert withheld([Flag("The models disagree.", "disagree")]) == "" == withheld([])
    probs = {"custom_cnn": np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.2, 0.3, 0.4]]),
             "mobilenetv2": np.array([[0.6, 0.2, 0.1, 0.1], [0.5, 0.2, 0.2, 0.1]])}
    thumbs = [summary_table.thumbnail_url(np.zeros((20, 20, 3), np.uint8))] * 2
    pooled = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.2, 0.3, 0.4]])
    frame = summary_table.summary_frame(thumbs, ["ct.jpg", "mri.jpg"], probs, CLASSES,
                                        [ct, []], pooled, [withheld(ct), withheld([])])
    hidden, shown = frame.iloc[0], frame.iloc[1]
    assert [hidden[c] for c in ("Custom CNN", "MobileNetV2", "Both, pooled")] == [
        "hidden: may be CT, not MRI"] * 3
    assert hidden["models agree"] == "–" and hidden["flags"] == 2
    assert shown["Custom CNN"] == "pituitary (40%)" and shown["models agree"] is False
    text = "".join(_read(summary_html(frame, "file")).text)
    assert "glioma (70%)" not in text and "hidden: may be CT, not MRI" in text


def test_a_models_weak_or_unlike_flag_is_said_beside_its_answer():
    """The table said "glioma (84%)" where the card said "84%, weak" (a clinician's review):
    each model's weak and unlike flags go beside its confidence, and only its own."""
    from dashboard.flags import Flag

    probs = {"custom_cnn": np.array([[0.7, 0.1, 0.1, 0.1]]),
             "mobilenetv2": np.array([[0.6, 0.2, 0.1, 0.1]])}
    thumbs = [summary_table.thumbnail_url(np.zeros((20, 20, 3), np.uint8))]
    flags = [Flag("Weak answer from Custom CNN ...", "weak", ["custom_cnn"]),
             Flag("This image is unlike Custom CNN's training data ...", "unlike",
                  ["custom_cnn"]),
             Flag("This image is unlike MobileNetV2's training data ...", "unlike",
                  ["mobilenetv2"]),
             Flag("The models disagree.", "disagree")]
    row = summary_table.summary_frame(thumbs, ["a.png"], probs, CLASSES, [flags]).iloc[0]
    assert row["Custom CNN"] == "glioma (70%, weak, unlike its training data)"
    assert row["MobileNetV2"] == "glioma (60%, unlike its training data)"
    assert row["flags"] == 4
