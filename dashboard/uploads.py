"""The Predict page's uploads: noticing uploads a server restart lost.

Uploads live in the server's memory only, so a server restart loses them: the tab's URL keeps
their number (`note_uploads`), and a new session that never saw them says so.
"""

from __future__ import annotations

import streamlit as st

UPLOADS_PARAM = "uploads"  # in the tab's URL: how many files this page had uploaded


def uploader_key() -> str:
    """The uploader's key; a fresh one once uploads were lost, so the stale file chips go."""
    return "uploads-again" if st.session_state.get("uploads_lost") else "uploads"


def note_uploads(n_files: int) -> None:
    """Keep the number of uploads in the URL, to notice when a new server session lost them.

    Uploads live in the server's memory only. After a server restart (or a reload) the browser
    still shows the old file chips, but the new session has no files: the URL says there were
    some while this session never saw any, so the page reruns with a fresh uploader and says so.
    """
    if n_files:
        st.session_state["uploads_seen"] = True
        st.session_state.pop("uploads_lost", None)
        st.query_params[UPLOADS_PARAM] = str(n_files)
    elif st.query_params.get(UPLOADS_PARAM):
        del st.query_params[UPLOADS_PARAM]
        if not st.session_state.get("uploads_seen"):
            st.session_state["uploads_lost"] = True
            st.rerun()


def uploads_lost() -> bool:
    return bool(st.session_state.get("uploads_lost"))
