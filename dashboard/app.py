"""Streamlit entry point: `streamlit run dashboard/app.py` (or `make demo`).

Sets up the page, the sidebar run picker and the navigation; each page is a thin script in
`dashboard/app_pages/` that draws with `dashboard.figures` and loads through `dashboard.state`.
The folder is deliberately not called `pages/`: Streamlit would then also auto-discover it as a
legacy multipage app, and a first visit straight to e.g. /quality would run that page without
this script (no sidebar, no run picker).
"""

import logging
import sys
from pathlib import Path

# `streamlit run dashboard/app.py` puts only dashboard/ on sys.path; the pages import the
# `dashboard` and `pipeline` packages from the repository root.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

from dashboard import core, loader, state  # noqa: E402

# A local file, not an emoji or icon name: those favicons are fetched from the internet, which
# fails offline (a presenter's laptop) and logs a console error.
FAVICON = Path(__file__).resolve().parent / "static" / "favicon.png"
# Rules for narrow windows (see the file); a .css Path is sent as style only, taking no space.
LAYOUT_CSS = Path(__file__).resolve().parent / "static" / "layout.css"
# Keyboard focus follows Streamlit's expand and collapse sidebar buttons (see the file): our own
# fixed script, no user input in it
SIDEBAR_FOCUS_JS = Path(__file__).resolve().parent / "static" / "sidebar_focus.js"
APP_NAME = "Brain MRI XAI"
st.set_page_config(page_title=APP_NAME, page_icon=str(FAVICON), layout="wide")
st.html(LAYOUT_CSS)
loader.keep_keras_session()  # the shared models outlive every script run

PAGES = [
    st.Page("app_pages/overview.py", title="Overview & comparison", icon=":material/monitoring:",
            default=True),
    st.Page("app_pages/predict.py", title="Predict & explain", icon=":material/image_search:"),
    st.Page("app_pages/errors.py", title="Error analysis", icon=":material/rule:"),
    st.Page("app_pages/quality.py", title="Explanation quality", icon=":material/fact_check:"),
    st.Page("app_pages/about.py", title="About & model card", icon=":material/info:"),
]

navigation = st.navigation(PAGES)
# each page its own browser title ("Error analysis · Brain MRI XAI"): with one title for all,
# tabs and a screen reader's page announcements could not tell the pages apart
st.set_page_config(page_title=f"{navigation.title} · {APP_NAME}")
state.sidebar()
with st.sidebar:  # its last element: a script takes no room there
    st.html(f"<script>{SIDEBAR_FOCUS_JS.read_text()}</script>", unsafe_allow_javascript=True)
state.keep_choices()
try:
    navigation.run()
except Exception as exc:  # last line of defence; st.stop/st.rerun are not Exceptions
    # Expected problems (missing files, bad uploads) are handled where they occur; anything
    # else is a bug. Show a readable message, keep the traceback for the server log.
    logging.getLogger("dashboard").exception("page %r failed", navigation.title)
    st.error(f"{state.UNEXPECTED} ({type(exc).__name__}: {core.literal(exc)}). The full "
             "details are in the "
             "server log; the other pages still work.", icon=":material/bug_report:")
finally:
    # The selected run's models load in a background thread, started once this page's run has
    # produced everything (TensorFlow's import must not delay the page; the first load in a
    # server also leaves the browser `loader.FIRST_LOAD_GRACE_S` to fetch the page's scripts),
    # so they are usually ready by the first visit to Predict. A no-op when they are loaded or
    # loading; `finally` because pages end with st.stop().
    loader.preload_models()
