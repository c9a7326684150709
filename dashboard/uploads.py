"""The Predict page's uploads across reruns, page switches and server restarts.

Streamlit drops a widget's state when a run does not draw it, so leaving Predict for another
page and coming back gave an empty uploader: the files were gone. The uploader's files are
therefore also kept in the session (their names and bytes, under a key of our own, at most
`core.MAX_UPLOADS`) and restored when the user comes back to an uploader that starts empty. The
uploader stays the truth whenever it has files: new uploads replace the kept ones, and removing
the files (the chips' x) forgets them. Kept files are shown by name with a button to forget them.

A reload of the tab starts a new session, which lost them too (a presenter's reload emptied the
page). The files are therefore also kept in the server's memory under a random token the tab's
URL carries (`KeptUploads`, for `KEEP_S` and at most `KEPT_TABS` tabs): a new session whose URL
names kept files restores them as the page's kept files (`restore_after_reload`). Only the
server's memory, never a disk, so a server restart still loses them: the URL then names files
the server does not have (`note_uploads`), and the page says so. "Forget these files", or
removing the files, drops them from the server too.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import streamlit as st

from dashboard import core

UPLOADS_PARAM = "uploads"  # in the tab's URL: the token of this tab's kept files
TOKEN_KEY = "predict_uploads_token"  # this session's token (`secrets.token_urlsafe`)
KEEP_S = 3600.0  # kept files of a tab not seen for this long are dropped
KEPT_TABS = 8  # the server keeps the files of this many tabs, the oldest dropped first
KEPT_BYTES = 1 << 30  # and at most this many bytes of them (24 files of up to 25 MB a tab)
KEPT_KEY = "predict_kept_uploads"  # [(name, bytes)] of the uploader's last files
RESTORED_KEY = "predict_uploads_restored"  # the kept files are in use, the uploader is empty
FORGET_KEY = "predict_forget_uploads"  # the button that forgets restored files


class KeptUploads:
    """Each tab's last uploads in the server's memory, by the token in its URL: what a reload
    restores. Bounded by `KEPT_TABS`, `KEPT_BYTES` and `KEEP_S`; shared by the server's
    sessions (a token is 128 random bits: only a tab holding the URL finds its files)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: OrderedDict[str, tuple[float, list[tuple[str, bytes]]]] = OrderedDict()

    def put(self, token: str, files: list[tuple[str, bytes]]) -> None:
        with self._lock:
            self._files.pop(token, None)
            self._files[token] = (time.monotonic(), list(files))
            self._trim()

    def get(self, token: str) -> list[tuple[str, bytes]] | None:
        with self._lock:
            self._trim()
            if token not in self._files:
                return None
            _, files = self._files.pop(token)
            self._files[token] = (time.monotonic(), files)  # seen: kept longest
            return list(files)

    def drop(self, token: str) -> None:
        with self._lock:
            self._files.pop(token, None)

    def _trim(self) -> None:
        now = time.monotonic()
        size = sum(len(b) for _, files in self._files.values() for _, b in files)
        while self._files:
            token, (seen, files) = next(iter(self._files.items()))
            if now - seen < KEEP_S and len(self._files) <= KEPT_TABS and size <= KEPT_BYTES:
                break
            size -= sum(len(b) for _, b in files)
            del self._files[token]


@st.cache_resource(show_spinner=False)
def kept_uploads() -> KeptUploads:
    """The server's one `KeptUploads`."""
    return KeptUploads()


def _token() -> str:
    return st.session_state.setdefault(TOKEN_KEY, secrets.token_urlsafe(16))


def restore_after_reload() -> None:
    """Call before the uploader: a new session (a reload) whose URL names files the server
    kept takes them as its kept files, restored with the page (`current_files`)."""
    token = st.query_params.get(UPLOADS_PARAM)
    if not token or st.session_state.get("uploads_seen") or KEPT_KEY in st.session_state:
        return
    files = kept_uploads().get(token)
    if files:
        st.session_state[TOKEN_KEY] = token
        st.session_state[KEPT_KEY] = files
        st.session_state["uploads_seen"] = True


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
        kept_uploads().put(_token(), kept[:core.MAX_UPLOADS])  # for a reload of the tab
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
    """Forget the kept files, in the session and on the server."""
    if TOKEN_KEY in st.session_state:
        kept_uploads().drop(st.session_state[TOKEN_KEY])
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
    """Keep the token of the tab's kept files in the URL (`KeptUploads`), to restore them after
    a reload and to notice when a new server session lost them.

    Uploads live in the server's memory only. After a server restart the browser still shows
    the old file chips, but the new session has no files: the URL says there were some while
    this session never saw any, so the page reruns with a fresh uploader and says so.
    """
    if n_files:
        st.session_state["uploads_seen"] = True
        st.session_state.pop("uploads_lost", None)
        st.query_params[UPLOADS_PARAM] = _token()
    elif st.query_params.get(UPLOADS_PARAM):
        del st.query_params[UPLOADS_PARAM]
        if not st.session_state.get("uploads_seen"):
            st.session_state["uploads_lost"] = True
            st.rerun()


def uploads_lost() -> bool:
    return bool(st.session_state.get("uploads_lost"))
