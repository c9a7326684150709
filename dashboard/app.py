"""Streamlit entry point: `streamlit run dashboard/app.py` (or `make demo`).

Sets up the page, the sidebar run picker and the navigation; each page is a thin script in
`dashboard/pages/` that draws with `dashboard.figures` and loads through `dashboard.state`.
"""

import sys
from pathlib import Path

# `streamlit run dashboard/app.py` puts only dashboard/ on sys.path; the pages import the
# `dashboard` and `pipeline` packages from the repository root.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

from dashboard import state  # noqa: E402

st.set_page_config(page_title="Brain MRI XAI", page_icon=":material/neurology:", layout="wide")

PAGES = [
    st.Page("pages/overview.py", title="Overview & comparison", icon=":material/monitoring:",
            default=True),
    st.Page("pages/predict.py", title="Predict & explain", icon=":material/image_search:"),
    st.Page("pages/errors.py", title="Error analysis", icon=":material/rule:"),
    st.Page("pages/quality.py", title="Explanation quality", icon=":material/fact_check:"),
    st.Page("pages/about.py", title="About & model card", icon=":material/info:"),
]

navigation = st.navigation(PAGES)
state.sidebar()
navigation.run()
