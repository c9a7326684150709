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
