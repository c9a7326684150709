"""Paging the Predict page's image cards (logic, no Streamlit).

A full-width card (original, two overlays, probabilities, flags, buttons) is over 1,000 px
tall: eight uploads made a page of ~9,700 px, and `core.MAX_UPLOADS` (24) one no presenter could
scroll through. The page shows the summary table of every image, then one page of cards.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

# Cards per page on the Predict page: four, as the Error analysis page's first page size. Four
# full-width cards are about half of the eight-upload page that was too long to present, 24
# uploads make six pages (not 24 cards to scroll past), and the summary table above the cards
# lists every image anyway.
CARDS_PER_PAGE = 4


def page_count(n: int, per_page: int = CARDS_PER_PAGE) -> int:
    """How many pages `n` cards make (at least 1, so an empty list still has its page 1)."""
    return max(1, -(-n // per_page))


def clamp_page(page: object, n: int, per_page: int = CARDS_PER_PAGE) -> int:
    """The page (1-based) to show when `page` was asked for: within 1..page_count(n); anything
    that is not a page number (None, a stale value) is page 1; past the end, the last page (a
    filter left fewer pages than the page the user was on)."""
    if not isinstance(page, int) or isinstance(page, bool) or page < 1:
        return 1
    return min(page, page_count(n, per_page))


def page_label(page: int, n: int, per_page: int = CARDS_PER_PAGE) -> str:
    """How the page selector names page `page` of `n` images: "Images 5–8 of 9", "Image 9 of
    9" for a last page of one."""
    first = (page - 1) * per_page + 1
    last = min(page * per_page, n)
    if first >= last:
        return f"Image {first} of {n}"
    return f"Images {first}–{last} of {n}"


def page_items(items: Sequence[T], page: int, per_page: int = CARDS_PER_PAGE) -> list[T]:
    """The items of page `page` (1-based)."""
    start = (page - 1) * per_page
    return list(items[start:start + per_page])
