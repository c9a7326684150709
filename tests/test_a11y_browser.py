"""Accessibility review's findings, measured in chromium on the shipped runs (artifacts/runs):
chart text contrast in the light and dark themes, the faithfulness curves' chance label clear of
the curves at 1280 px, and heading levels that never skip. Server and browser as in
test_dashboard_browser.py (skipped locally without /usr/bin/chromium, failing under CI).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_dashboard_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    SHOTS,
    _need_chromium,
    _open_predict,
    _served,
    _wait_idle,
)

from dashboard import figures as F
from dashboard.figures.common import THEME_BACKGROUNDS

ROOT = Path(__file__).resolve().parents[1]
AA_TEXT = 4.5  # WCAG AA's contrast for text

pytestmark = [pytest.mark.slow, pytest.mark.browser]

# Every chart text of the page that stands on the page's background (not text inside a bar or a
# heatmap's cell, coloured against its mark), with its fill, and the page's background colour.
_CHART_TEXTS = """() => {
  const texts = [];
  document.querySelectorAll('.js-plotly-plot svg text').forEach(t => {
    if (!t.textContent.trim() || t.closest('.hm') || t.classList.contains('bartext-inside')) return;
    texts.push([t.textContent.slice(0, 30), getComputedStyle(t).fill]);
  });
  const bg = getComputedStyle(document.querySelector('[data-testid=stApp]')).backgroundColor;
  return [texts, bg];
}"""

# The chart's curve points (sampled along each drawn line, 1 px apart) that fall in the box of a
# text containing `label`, in screen pixels
_POINTS_IN_LABEL = """([key, label]) => {
  const chart = document.querySelector(`.st-key-${key} .js-plotly-plot`);
  const boxes = [...chart.querySelectorAll('.annotation-text')]
    .filter(t => t.textContent.includes(label)).map(t => t.getBoundingClientRect());
  const hits = [];
  chart.querySelectorAll('.scatterlayer path.js-line').forEach(path => {
    const m = path.getScreenCTM();
    for (let s = 0; s <= path.getTotalLength(); s += 1) {
      const p = path.getPointAtLength(s);
      const x = m.a * p.x + m.c * p.y + m.e, y = m.b * p.x + m.d * p.y + m.f;
      if (boxes.some(b => x > b.left && x < b.right && y > b.top && y < b.bottom))
        hits.push([Math.round(x), Math.round(y)]);
    }
  });
  return [boxes.length, hits];
}"""

_HEADINGS = """() => [...document.querySelectorAll(
  '[data-testid=stMain] :is(h1, h2, h3, h4, h5, h6)')].map(
  h => [Number(h.tagName[1]), h.textContent.trim().slice(0, 50)])"""


def _hex(css: str) -> str:
    """"#rrggbb" of a computed CSS colour "rgb(r, g, b)"."""
    r, g, b = (int(v) for v in re.findall(r"\d+", css)[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server over the shipped runs (the latest one shown)."""
    _need_chromium()
    log = tmp_path_factory.mktemp("a11y") / "streamlit.log"
    with _served(ROOT / "artifacts", log) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    _need_chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def _open(browser, url: str, scheme: str = "light", width: int = 1280):
    """A new page of `width` px in the `scheme` colour scheme (the theme menu's "System", the
    default, follows it) at `url`, once its charts are drawn and the page is idle."""
    page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
    page.goto(url, wait_until="domcontentloaded")
    page.locator("[data-testid=stMain] h1").wait_for(timeout=120_000)
    _wait_idle(page)
    return page


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("path", ["", "quality"], ids=["overview", "quality"])
def test_chart_text_reads_at_aa_contrast_in_both_themes(shipped, browser, scheme, path):
    """Every tick, axis title, panel title, label, bar value and legend entry of the page's
    charts has at least 4.5:1 against the page's background. The light theme's were
    Streamlit's grey, #808495, at 3.72:1 on white (an accessibility review)."""
    page = _open(browser, f"{shipped}/{path}", scheme)
    try:
        page.locator(".js-plotly-plot svg text").first.wait_for(timeout=60_000)
        texts, bg = page.evaluate(_CHART_TEXTS)
    finally:
        page.close()
    assert (_hex(bg) == THEME_BACKGROUNDS["light"]) == (scheme == "light"), bg  # its theme
    low = {(text, fill, round(F.contrast(_hex(fill), _hex(bg)), 2)) for text, fill in texts
           if F.contrast(_hex(fill), _hex(bg)) < AA_TEXT}
    assert len(texts) > 20 and not low, sorted(low)[:10]


def test_the_chance_label_is_clear_of_the_curves_at_1280_px(shipped, browser):
    """On the quality page's deletion and insertion curves, no curve passes through either
    panel's "chance (1/4)": at the top right of the deletion panel the curves falling to chance
    ran through it (an accessibility review's screenshot at 1280 px)."""
    page = _open(browser, f"{shipped}/quality")
    try:
        chart = page.locator(".st-key-quality_faith .js-plotly-plot")
        chart.scroll_into_view_if_needed(timeout=60_000)
        n, hits = page.evaluate(_POINTS_IN_LABEL, ["quality_faith", "chance ("])
        if hits:  # for a human to look at
            SHOTS.mkdir(exist_ok=True)
            chart.screenshot(path=str(SHOTS / "a11y_chance_label.png"))
    finally:
        page.close()
    assert n == 2 and not hits, hits[:10]


def _levels_ok(levels: list[int]) -> bool:
    """One h1 first, and each heading at most one level below the one before it."""
    return bool(levels) and levels[0] == 1 and all(
        b <= a + 1 for a, b in zip(levels, levels[1:], strict=False))


@pytest.mark.parametrize("path", ["", "errors", "quality", "about"],
                         ids=["overview", "errors", "quality", "about"])
def test_heading_levels_never_skip(shipped, browser, path):
    """A screen reader's user moves through a page by its headings: none may skip a level. The
    Error-analysis page's image cards (h3) came straight after its h1."""
    page = _open(browser, f"{shipped}/{path}")
    try:
        if path == "errors":  # its cards, once the models have explained them
            page.locator("[class*=st-key-err_card_] h3").first.wait_for(timeout=300_000)
            _wait_idle(page)
        headings = page.evaluate(_HEADINGS)
    finally:
        page.close()
    assert _levels_ok([level for level, _ in headings]), headings
    if path == "errors":
        assert [level for level, _ in headings][:3] == [1, 2, 3], headings


def test_predict_heading_levels_never_skip_with_cards(shipped, browser, tmp_path: Path):
    """Predict with an uploaded slice: its card's title (h3) under a heading of level 2, not
    straight under the page's h1 (an accessibility review)."""
    data = Path(os.environ.get("BRAIN_MRI_DATA", "/work/shared/data/brain-tumor-mri-sartaj"))
    image = next(iter(sorted(data.glob("Testing/*/*.jpg"))), None)
    if image is None:
        pytest.skip(f"no test image under {data}")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        _open_predict(page, shipped, tmp_path / "none.log")
        page.locator("input[type=file]").set_input_files(str(image))
        page.locator("[class*=st-key-predict_card_] h3").first.wait_for(timeout=300_000)
        _wait_idle(page)
        headings = page.evaluate(_HEADINGS)
        # the title's file name (code) at the heading's size, not Streamlit's 0.75em (12 px)
        sizes = page.evaluate("""() => {
            const h = document.querySelector('[class*=st-key-predict_card_] h3');
            const c = h && h.querySelector('code');
            return c ? [getComputedStyle(h).fontSize, getComputedStyle(c).fontSize] : null;
        }""")
    finally:
        page.close()
    levels = [level for level, _ in headings]
    assert _levels_ok(levels) and levels[:3] == [1, 2, 3], headings
    assert sizes is not None and sizes[0] == sizes[1], sizes
