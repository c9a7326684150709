"""The server's memory of each tab's last uploads (`dashboard.uploads.KeptUploads`), what a reload
restores: bounded in tabs, bytes and time, so a long-running server does not keep every image it
was ever shown."""

from __future__ import annotations

import pytest

from dashboard import uploads


def _files(n: int, size: int = 10) -> list[tuple[str, bytes]]:
    return [(f"slice {k}.png", bytes(size)) for k in range(n)]


def test_kept_files_come_back_by_token_and_go_when_dropped():
    kept = uploads.KeptUploads()
    kept.put("a", _files(2))
    assert kept.get("a") == _files(2)
    assert kept.get("b") is None
    kept.drop("a")
    assert kept.get("a") is None


def test_the_oldest_tabs_go_first_past_the_tab_and_byte_limits(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(uploads, "KEPT_TABS", 2)
    monkeypatch.setattr(uploads, "KEPT_BYTES", 100)
    kept = uploads.KeptUploads()
    for token in "abc":
        kept.put(token, _files(1))
    assert [kept.get(t) is not None for t in "abc"] == [False, True, True]
    kept.get("b")  # seen last: kept longer than "c"
    kept.put("d", _files(1, size=85))  # three tabs: "c" goes
    assert [kept.get(t) is not None for t in "bcd"] == [True, False, True]
    monkeypatch.setattr(uploads, "KEPT_TABS", 3)
    kept.put("e", _files(1, size=10))  # 105 bytes: "b", seen before "d", goes
    assert [kept.get(t) is not None for t in "bde"] == [False, True, True]


def test_files_not_seen_for_an_hour_go(monkeypatch: pytest.MonkeyPatch):
    now = [1000.0]
    monkeypatch.setattr(uploads.time, "monotonic", lambda: now[0])
    kept = uploads.KeptUploads()
    kept.put("a", _files(1))
    now[0] += uploads.KEEP_S - 1
    assert kept.get("a") is not None  # and seen again: its hour starts anew
    now[0] += uploads.KEEP_S - 1
    assert kept.get("a") is not None
    now[0] += uploads.KEEP_S + 1
    assert kept.get("a") is None
