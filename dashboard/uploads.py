"""The Predict page's uploads across reruns, page switches and server restarts.

Streamlit drops a widget's state when a run does not draw it, so leaving Predict for another
page and coming back gave an empty uploader: the files were gone. The uploader's files are
therefore also kept in the session (their names and bytes, under a key of our own, at most
`core.MAX_UPLOADS`) and restored when the user comes back to an uploader that starts empty. The
uploader stays the truth whenever it has files: new uploads replace the kept ones, and removing
the files (the chips' x) forgets them. Kept files are shown by name with a button to forget them.

Uploads live in the server's memory only, so a server restart still loses them: the tab's URL
keeps their number (`note_uploads`), and a new session that never saw them says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

from dashboard import core

UPLOADS_PARAM = "uploads"  # in the tab's URL: how many files this page had uploaded
KEPT_KEY = "predict_kept_uploads"  # [(name, bytes)] of the uploader's last files
RESTORED_KEY = "predict_uploads_restored"  # the kept files are in use, the uploader is empty
FORGET_KEY = "predict_forget_uploads"  # the button that forgets restored files


def uploader_key() -> str:
    """The uploader's key; a fresh one once uploads were lost, so the stale file chips go."""
    return "uploads-again" if st.session_state.get("uploads_lost") else "uploads"


def uploader_is_new(key: str) -> bool:
    """Call before drawing the uploader: True when it starts empty in this run (the first
    visit, or back from another page, whose run dropped the uploader's state)."""
    return key not in st.session_state


# What a browser escapes in an uploaded file's name (the HTML standard's multipart/form-data
# rules, Chromium, Firefox and Safari alike): '"' as "%22", CR as "%0D", LF as "%0A", and
# nothing else, not even "%". Streamlit's server passes the name on as sent (python-multipart
# does not undo it), so `say "hi".png` was shown, listed and kept as `say %22hi%22.png`.
BROWSER_QUOTE = "%22"


def browser_name(name: str) -> str:
    """An uploaded file's name as the user's disk has it: the browser's "%22" back to '"'.

    Only the quote: a line break ("%0D", "%0A") cannot be shown in a one-line name, and its
    code marks where it was. A name that really holds "%22" arrives alike (the browser does not
    escape "%") and shows a quote; a quote is by far the likelier. Uploads only: the CLI reads
    names from the disk, where "%22" is what the file is called."""
    return name.replace(BROWSER_QUOTE, '"')


def current_files(files: Sequence[Any] | None, new: bool) -> tuple[list[tuple[str, bytes]], bool]:
    """The files to analyse, as (name, bytes), and whether they are kept ones (restored).

    `files`: the uploader's value in this run; `new`: `uploader_is_new` before it was drawn.
    Names as the user's disk has them (`browser_name`).
    """
    if files:
        kept = [(browser_name(f.name), f.getvalue()) for f in files]
        st.session_state[KEPT_KEY] = kept[:core.MAX_UPLOADS]
        st.session_state.pop(RESTORED_KEY, None)
        return kept, False
    kept = st.session_state.get(KEPT_KEY) or []
    if kept and (new or st.session_state.get(RESTORED_KEY)):
        st.session_state[RESTORED_KEY] = True
        return list(kept), True
    # the uploader was emptied by the user (or never had files): nothing to keep
    forget()
    return [], False


def forget() -> None:
    st.session_state.pop(KEPT_KEY, None)
    st.session_state.pop(RESTORED_KEY, None)


def restored_note(kept: Sequence[tuple[str, bytes]]) -> None:
    """The kept files' names (plain text) and a button to forget them."""
    st.caption(f"{len(kept)} file(s) kept from your earlier visit to this page (upload new "
               "files to replace them):")
    st.text("\n".join(f"{k + 1}. {name}" for k, (name, _) in enumerate(kept)))
    st.button("Forget these files", key=FORGET_KEY, on_click=forget,
              icon=":material/delete:")


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
