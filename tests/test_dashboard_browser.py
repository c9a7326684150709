"""Real-browser test: a Streamlit server on a free port, driven by Debian's chromium.

Playwright never downloads a browser here; it drives /usr/bin/chromium. Without it the test is
skipped locally, but fails under CI (where .ci/run installs it). Screenshots go to
test-artifacts/ for a human to look at.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from pipeline.bench import BenchError, free_port, wait_healthy
from pipeline.bench.browser import start_streamlit, stop_streamlit

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _need_chromium() -> None:
    if CHROMIUM.is_file():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing under CI; .ci/run should have installed `chromium`")
    pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium); CI installs it")


@pytest.fixture
def server(smoke_run: Path, tmp_path: Path) -> Iterator[str]:
    _need_chromium()
    port = free_port()
    env = {**os.environ, "BRAIN_MRI_ARTIFACTS": str(smoke_run.parent.parent)}
    proc = start_streamlit(port, env, tmp_path / "streamlit.log")
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_healthy(url, proc, time.perf_counter() + 90, tmp_path / "streamlit.log")
        except BenchError as exc:
            pytest.fail(str(exc))
        yield url
    finally:
        stop_streamlit(proc)


def _test_image(smoke_run: Path) -> Path:
    manifest = json.loads((smoke_run / "manifest.json").read_text())
    splits = json.loads((smoke_run / "splits.json").read_text())
    return Path(manifest["data"]["dir"]) / splits["test"][0]["path"]


# The plotted y range and the lowest and highest whisker ends of a plotly chart's traces.
_CI_AXIS = """d => {
    const ends = d.data.flatMap(t => t.y.flatMap((y, k) => [
        y - ((t.error_y && t.error_y.arrayminus) ? t.error_y.arrayminus[k] : 0),
        y + ((t.error_y && t.error_y.array) ? t.error_y.array[k] : 0)]));
    const r = d._fullLayout.yaxis.range;
    return [r[0], r[1], Math.min(...ends), Math.max(...ends)];
}"""


def _page_report(page, log: Path) -> str:
    """What the page showed and the server's last log lines, for a failure's message (a flaky
    failure in CI must say what the page showed, not only which locator timed out)."""
    try:
        shown = page.locator("[data-testid=stMain]").inner_text(timeout=5_000)[-1500:]
    except Exception as exc:  # the page itself may be gone
        shown = f"(page text unavailable: {exc})"
    tail = log.read_text(errors="replace")[-3000:] if log.is_file() else "(no server log)"
    return f"URL {page.url}\n--- page ---\n{shown}\n--- server log ---\n{tail}"


def test_upload_shows_both_heatmaps_in_a_real_browser(server: str, smoke_run: Path,
                                                      tmp_path: Path):
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1700})
            # A presenter's laptop may be offline: nothing may be fetched from elsewhere.
            hosts: set[str] = set()
            page.on("request", lambda r: hosts.add(urlparse(r.url).hostname or r.url[:5]))
            # A deep link as the very first visit to a fresh server must still get the full app
            # (sidebar, run picker), not a bare page.
            page.goto(f"{server}/predict", wait_until="domcontentloaded")
            expect(page.get_by_role("heading", name="Predict & explain")).to_be_visible(
                timeout=120_000)
            sidebar = page.locator("[data-testid=stSidebar]")
            expect(sidebar.get_by_role("combobox", name="Run")).to_be_visible(timeout=30_000)
            expect(sidebar.get_by_text("classes · train", exact=False)).to_be_visible()
            expect(sidebar.get_by_text("not a diagnostic device")).to_be_visible()
            # The models load in a background thread, started once the page is drawn (app.py's
            # `finally`, not the page's first lines): the loading note goes by itself.
            expect(page.get_by_text("Loading the models in the background")).to_have_count(
                0, timeout=180_000)
            uploader = page.locator("input[type=file]")
            try:  # the page reruns once the models are ready: the uploader is drawn again
                expect(uploader).to_be_attached(timeout=90_000)
            except AssertionError:
                page.screenshot(path=str(SHOTS / "dashboard_predict_no_uploader.png"))
                pytest.fail("no uploader on Predict after the models loaded:\n"
                            + _page_report(page, tmp_path / "streamlit.log"))

            uploader.set_input_files(str(_test_image(smoke_run)))
            # Both models' overlays are captioned "<model> · <method> for '<class>'".
            cnn = page.get_by_text("Custom CNN · Grad-CAM for", exact=False)
            mnv2 = page.get_by_text("MobileNetV2 · Grad-CAM for", exact=False)
            expect(cnn).to_be_visible(timeout=180_000)
            expect(mnv2).to_be_visible(timeout=60_000)
            images = page.locator("[data-testid=stImage] img")
            expect(images).to_have_count(4, timeout=30_000)  # original, colour scale, 2 overlays
            # Both overlays really load (not broken images); on a busy machine the PNGs may
            # still be in flight when the captions appear, so wait for them.
            page.wait_for_function(
                """() => {
                    const imgs = [...document.querySelectorAll('[data-testid=stImage] img')];
                    return imgs.length >= 4 && imgs.every(i => i.complete && i.naturalWidth > 0);
                }""",
                timeout=30_000,
            )
            for i in range(4):
                assert images.nth(i).evaluate("img => img.naturalWidth") > 0
            page.get_by_text("models agree", exact=False).or_(
                page.get_by_text("models disagree", exact=False)).first.wait_for()
            page.screenshot(path=str(SHOTS / "dashboard_predict.png"))

            # The uploader's chips cut long names; the list under it shows them in full, unclipped.
            long_name = "patient-study_2024-03-14_axial_T1_post-contrast_slice-0042-of-0128.png"
            page.locator("input[type=file]").set_input_files(
                [{"name": long_name, "mimeType": "image/png",
                  "buffer": _test_image(smoke_run).read_bytes()}])
            listed = page.locator("[data-testid=stText]").filter(has_text=long_name)
            expect(listed).to_be_visible(timeout=180_000)
            assert listed.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), "name clipped"
            chip = page.locator("[data-testid=stFileChipName]").first
            assert chip.inner_text() != long_name  # Streamlit's own chip does cut it

            # Hostile file names are shown as plain text: no fetch, no link, no fake verdict.
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            data = _test_image(smoke_run).read_bytes()
            hostile = ["![t](http://127.0.0.1:9/track.png).png",
                       "Custom CNN: **pituitary** (99%) · $x^2$ :red[alarm].png"]
            page.locator("input[type=file]").set_input_files(
                [{"name": n, "mimeType": "image/png", "buffer": data} for n in hostile])
            for name in hostile:  # each card's title shows it verbatim, in a code span
                title = page.locator("code").filter(has_text=re.compile(f"^{re.escape(name)}$"))
                expect(title).to_be_visible(timeout=180_000)
            page.wait_for_timeout(1000)
            assert not [u for u in requests if "track.png" in u or "127.0.0.1:9/" in u]
            cards = page.locator("[data-testid=stVerticalBlockBorderWrapper]")
            assert cards.locator("a[href*='127.0.0.1:9']").count() == 0
            assert cards.locator(".katex").count() == 0
            page.screenshot(path=str(SHOTS / "dashboard_hostile_names.png"))

            page.get_by_role("link", name="Overview & comparison").click()
            expect(page.get_by_role("heading", name="Overview & comparison")).to_be_visible(
                timeout=60_000)
            expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=60_000)
            page.screenshot(path=str(SHOTS / "dashboard_overview.png"))
            # The confidence-interval chart is zoomed to its intervals, not drawn on 0-1.
            ci = page.locator(".js-plotly-plot").filter(has_text="95% CI")
            expect(ci).to_be_visible(timeout=60_000)
            lo, hi, low_end, high_end = ci.evaluate(_CI_AXIS)
            assert (lo, hi) != (0, 1) and hi - lo < 1, (lo, hi)
            assert lo <= low_end <= high_end <= hi, (lo, hi, low_end, high_end)
            assert hosts <= {"127.0.0.1", "data:", "blob:"}, hosts
            # no Deploy button (Streamlit Community Cloud) on a presenter's screen
            assert page.get_by_role("button", name="Deploy").count() == 0
        finally:
            browser.close()


def _verdicts_alone(paths: list[Path]) -> list[str]:
    """Each image's verdict line ("Custom CNN: glioma (87%) · MobileNetV2: …") from its own
    AppTest session, one after another, as plain text (the browser renders the Markdown)."""
    from streamlit.testing.v1 import AppTest

    lines = []
    for path in paths:
        at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=240)
        at.run()
        at.switch_page("app_pages/predict.py").run()
        at.file_uploader(key="uploads").set_value([(path.name, path.read_bytes(), "image/jpeg")])
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert not any("unexpected problem" in e.value for e in at.error)
        found = [m.value for m in at.markdown if "Custom CNN:" in m.value]
        assert len(found) == 1, found
        lines.append(found[0].replace("**", ""))
    return lines


def test_two_sessions_at_once_each_get_their_own_answer(server: str, smoke_run: Path,
                                                        tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch):
    """Two users on one server upload at the same moment: the models and the result store are
    shared by every session, yet each page must show its own image's answer."""
    from playwright.sync_api import expect, sync_playwright

    monkeypatch.setenv("BRAIN_MRI_ARTIFACTS", str(smoke_run.parent.parent))
    manifest = json.loads((smoke_run / "manifest.json").read_text())
    test = json.loads((smoke_run / "splits.json").read_text())["test"]
    paths = [Path(manifest["data"]["dir"]) / e["path"] for e in test[:8]]
    lines = _verdicts_alone(paths)
    # two images the models answer differently, so a mix-up cannot pass unseen
    pair = next(((i, j) for i in range(len(paths)) for j in range(i + 1, len(paths))
                 if lines[i] != lines[j]), None)
    assert pair is not None, f"the smoke models answer every test image alike: {lines}"
    images, want = [paths[k] for k in pair], [lines[k] for k in pair]

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            pages = [browser.new_context(viewport={"width": 1400, "height": 1700}).new_page()
                     for _ in images]  # separate contexts: separate Streamlit sessions
            for page in pages:
                page.goto(f"{server}/predict", wait_until="domcontentloaded")
            for page in pages:
                expect(page.get_by_text("Loading the models in the background")).to_have_count(
                    0, timeout=180_000)
                try:
                    expect(page.locator("input[type=file]")).to_be_attached(timeout=90_000)
                except AssertionError:
                    pytest.fail("no uploader on Predict:\n"
                                + _page_report(page, tmp_path / "streamlit.log"))
            for page, image in zip(pages, images, strict=True):  # both uploads, then answers
                page.locator("input[type=file]").set_input_files(str(image))
            for k, page in enumerate(pages):
                try:
                    expect(page.get_by_text(want[k], exact=True)).to_be_visible(timeout=180_000)
                except AssertionError:
                    pytest.fail(f"page {k} did not show {want[k]!r}:\n"
                                + _page_report(page, tmp_path / "streamlit.log"))
                assert page.get_by_text(want[1 - k], exact=True).count() == 0
        finally:
            browser.close()
