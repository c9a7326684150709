"""The dashboard in a real browser: cold start to first render, upload -> every heatmap shown.

A real Streamlit server driven by Debian's chromium through Playwright (as in
tests/test_dashboard_browser.py, which also uses `free_port` and `wait_healthy`). Each upload
goes into a fresh session with a different image, so no per-image result is reused.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.artifacts import ARTIFACTS_ENV, PROJECT_ROOT
from pipeline.bench.errors import BenchError
from pipeline.bench.timing import proc_memory_mb, tail

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DEFINITION = ("cold start: server launch -> Predict page with the file uploader rendered in an "
              "already running chromium (first_visit_predict_s: the same from the health "
              "endpoint's first answer; the models load in the background meanwhile); "
              "models ready: the page's 'Loading the models' note gone; upload (after the models "
              "are ready, so the first one is the first after a cold start): set_input_files -> "
              "every model's caption in the page and all its images decoded, seen from inside the "
              "page every animation frame (uploads_playwright: the same through Playwright's "
              "waits, whose polling adds up to ~0.5 s), one fresh "
              "session and a different image each; server_explain_s: the page's own 'analysed "
              "in' figure (prepare + explain, both models), the rest is Streamlit and browser; "
              "two runs: then the sidebar switches to a second run and one more image is "
              "uploaded, peak_rss_two_runs_mb is VmHWM after that")
LOADING_NOTE = "Loading the models in the background"
# True in the page once `n` overlay images are in the DOM and decoded (not merely present).
_IMAGES_DECODED = ("n => { const im = [...document.querySelectorAll('[data-testid=stImage] img')];"
                   " return im.length >= n && im.every(i => i.complete && i.naturalWidth > 0); }")


def chromium_version() -> str | None:
    """`chromium --version` of the browser the benchmark drives; None when it is missing."""
    if not CHROMIUM.is_file():
        return None
    try:
        out = subprocess.run([str(CHROMIUM), "--version"], capture_output=True, text=True,
                             timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [ln for ln in out.stdout.splitlines() if ln.lower().startswith("chromium")]
    return lines[0].strip() if lines else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the browser test uses it too)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, deadline: float, log_path: Path) -> None:
    """Poll Streamlit's health endpoint until it answers; BenchError (with the log's tail) if the
    server exits or `deadline` (time.perf_counter()) passes first."""
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.perf_counter() > deadline:
            raise BenchError(f"the dashboard did not start: {tail(log_path)}")
        time.sleep(0.2)


def dashboard_skip(reason: str, failed: bool = False) -> dict[str, Any]:
    """The dashboard section when not measured: every key present, null, with the reason."""
    return {"skipped": None if failed else reason, "error": reason if failed else None,
            "cold_start_to_first_render_s": None, "upload_to_heatmaps_s": None,
            "upload_to_heatmaps_reason": reason, "peak_rss_mb": None}


def dashboard_benchmark(run_dir: Path, upload_files: list[Path], n_uploads: int, work: Path,
                        tick: Callable[[str], None], timeout_s: float = 300.0,
                        other_run: Path | None = None) -> dict[str, Any]:
    """Cold start and upload -> both heatmaps in chromium; peak RSS of the Streamlit process,
    also after viewing `other_run` (a second run in the sidebar) when given."""
    if not CHROMIUM.is_file():
        return dashboard_skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return dashboard_skip("playwright is not installed in this environment")
    from pipeline.artifacts import open_run
    from pipeline.names import display_name

    run = open_run(run_dir)
    # Any method: the dashboard opens with the run's chosen one (explain_choice.json).
    captions = [re.compile(re.escape(f"{display_name(m)} · ") + r".+ for")
                for m in run.model_names]
    env = {**os.environ, ARTIFACTS_ENV: str(_private_artifacts(run_dir, work, other_run))}
    files = [upload_files[i % len(upload_files)] for i in range(n_uploads)]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = work / "streamlit.log"
    out: dict[str, Any] = {"skipped": None, "error": None, "uploads": [], "uploads_playwright": [],
                           "server_explain_s": [], "n_models": len(captions),
                           "upload_files": [p.name for p in files]}
    tick("dashboard: cold start")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        t0 = time.perf_counter()  # browser already up: the cold start is the server's
        proc = start_streamlit(port, env, log_path)
        try:
            wait_healthy(url, proc, t0 + timeout_s, log_path)
            healthy = time.perf_counter()
            out["cold_start_to_health_s"] = round(healthy - t0, 2)
            page = browser.new_page(viewport={"width": 1400, "height": 1700})
            _open_predict(page, url, timeout_s)
            out["cold_start_to_first_render_s"] = round(time.perf_counter() - t0, 2)
            out["first_visit_predict_s"] = round(time.perf_counter() - healthy, 2)
            _wait_models_ready(page, timeout_s)
            out["cold_start_to_models_ready_s"] = round(time.perf_counter() - t0, 2)
            for k, path in enumerate(files):
                tick(f"dashboard: upload {k + 1}/{len(files)}")
                if k:
                    _open_predict(page, url, timeout_s)  # a fresh session per upload
                out["uploads"].append(_time_upload(page, path, captions, timeout_s,
                                                   out["uploads_playwright"]))
                out["server_explain_s"].append(_analysed_seconds(page))
            out["rss_after_uploads_mb"] = proc_memory_mb(proc.pid, "VmRSS")
            out["peak_rss_mb"] = proc_memory_mb(proc.pid, "VmHWM")
            out["peak_rss_two_runs_mb"] = None
            if other_run is None:
                out["peak_rss_two_runs_mb_reason"] = "no second complete run to switch to"
            else:
                tick("dashboard: a second run")
                out["other_run_upload_s"] = _switch_run_and_upload(
                    page, other_run.name, files[-1], timeout_s)
                out["peak_rss_two_runs_mb"] = proc_memory_mb(proc.pid, "VmHWM")
        finally:
            browser.close()
            stop_streamlit(proc)
    ups = out["uploads"]
    out["upload_to_heatmaps_s"] = round(float(np.median(ups)), 3)
    out["upload_to_heatmaps_first_s"] = ups[0]
    out["upload_to_heatmaps_p95_s"] = round(float(np.percentile(ups, 95)), 3)
    out["definition"] = DEFINITION
    return out


def _private_artifacts(run_dir: Path, work: Path, other_run: Path | None = None) -> Path:
    """A private artifacts folder whose `latest` is this run, so the dashboard opens on it
    (and `other_run` beside it, to switch to)."""
    arts = work / "dashboard-artifacts"
    (arts / "runs").mkdir(parents=True, exist_ok=True)
    for folder in [run_dir] + ([other_run] if other_run is not None else []):
        link = arts / "runs" / folder.name
        if not link.exists():
            link.symlink_to(folder.resolve(), target_is_directory=True)
    (arts / "latest").write_text(run_dir.name + "\n")
    return arts


def start_streamlit(port: int, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """The dashboard on 127.0.0.1:`port`, headless, its output in `log_path`."""
    with open(log_path, "wb") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run",
             str(PROJECT_ROOT / "dashboard" / "app.py"), "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true",
             "--browser.gatherUsageStats", "false"],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop_streamlit(proc: subprocess.Popen) -> None:
    """Terminate a dashboard server (kill it if it does not stop within 30 s)."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _open_predict(page: Any, url: str, timeout_s: float) -> None:
    page.goto(f"{url}/predict", wait_until="domcontentloaded")
    page.locator("[data-testid=stFileUploader]").first.wait_for(state="visible",
                                                               timeout=timeout_s * 1000)


def _wait_models_ready(page: Any, timeout_s: float) -> None:
    """Until the Predict page no longer says its models are loading in the background."""
    page.wait_for_function(
        "t => !document.body.innerText.includes(t)", arg=LOADING_NOTE, timeout=timeout_s * 1000)


def _switch_run_and_upload(page: Any, run_id: str, path: Path, timeout_s: float) -> float:
    """Pick run `run_id` in the sidebar (same session, so the page's upload stays), wait until
    the page is idle (that run's models loaded, the upload explained), then upload `path` and
    return the seconds until the page is idle again."""
    sidebar = page.locator("[data-testid=stSidebar]")
    sidebar.get_by_role("combobox", name="Run").click()
    # the picker may show only the id's random suffix after the title: match that
    page.get_by_role("option", name=re.compile(re.escape(run_id.rsplit("-", 1)[-1]))).click()
    _wait_idle(page, timeout_s)
    t1 = time.perf_counter()
    page.locator("input[type=file]").set_input_files(str(path))
    _wait_idle(page, timeout_s)
    return round(time.perf_counter() - t1, 3)


def _wait_idle(page: Any, timeout_s: float) -> None:
    """Until Streamlit's "running" indicator has been gone for a second."""
    running = ("() => !document.querySelector('[data-testid=stStatusWidgetRunningIcon],"
               " [data-testid=stStatusWidgetRunningManIcon]')")
    for _ in range(2):
        page.wait_for_timeout(1000)
        page.wait_for_function(running, timeout=timeout_s * 1000)


# Watches the page from inside, every animation frame, from just before the upload: the
# moment every caption is in the page text and every image is decoded. Playwright's own
# waits poll with growing pauses, which added up to about 0.5 s to some uploads.
_WATCH = """([patterns, n]) => {
  window.__uploadDone = null;
  const res = patterns.map(p => new RegExp(p));
  const check = () => {
    const text = document.body.innerText;
    const im = [...document.querySelectorAll('[data-testid=stImage] img')];
    if (res.every(r => r.test(text)) && im.length >= n
        && im.every(i => i.complete && i.naturalWidth > 0)) {
      window.__uploadDone = performance.now();
    } else { requestAnimationFrame(check); }
  };
  window.__uploadStart = performance.now();
  requestAnimationFrame(check);
}"""


def _time_upload(page: Any, path: Path, captions: list[re.Pattern[str]], timeout_s: float,
                 outside: list[float] | None = None) -> float:
    """Seconds from choosing the file to every model's caption and decoded overlay shown, as
    the page itself sees it (`_WATCH`); `outside` gets the same interval as timed from here
    through Playwright's waits (the figure before 2026-12-03)."""
    n_images = len(captions) + 2  # every overlay, plus the card's original and colour scale
    page.evaluate(_WATCH, [[c.pattern for c in captions], n_images])
    t1 = time.perf_counter()
    page.locator("input[type=file]").set_input_files(str(path))
    for text in captions:
        page.get_by_text(text, exact=False).first.wait_for(state="visible",
                                                          timeout=timeout_s * 1000)
    page.wait_for_function(_IMAGES_DECODED, arg=n_images, timeout=timeout_s * 1000)
    if outside is not None:
        outside.append(round(time.perf_counter() - t1, 3))
    page.wait_for_function("() => window.__uploadDone !== null", timeout=timeout_s * 1000)
    ms = page.evaluate("() => window.__uploadDone - window.__uploadStart")
    return round(ms / 1000, 3)


def _analysed_seconds(page: Any) -> float | None:
    """The page's own "analysed in X s" caption: the server-side share of an upload's time."""
    try:
        text = page.get_by_text("analysed in", exact=False).first.inner_text(timeout=5000)
    except Exception:  # playwright's TimeoutError; a diagnostic only, never fatal
        return None
    found = re.search(r"analysed in ([0-9.]+) s", text)
    return float(found.group(1)) if found else None
