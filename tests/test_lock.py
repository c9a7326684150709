"""requirements.lock pins every installed package, and follows requirements.txt."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _lock_pins() -> dict[str, str]:
    """Package -> exact version, for the entries whose markers fit this interpreter."""
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if not line or line[0].isspace() or line.startswith("#"):
            continue  # hashes, "# via" comments
        req = Requirement(line.rstrip(" \\"))
        if req.marker is None or req.marker.evaluate():
            (spec,) = req.specifier
            assert spec.operator == "==", line
            pins[canonicalize_name(req.name)] = spec.version
    return pins


def test_every_lock_entry_is_pinned_with_hashes():
    text = (ROOT / "requirements.lock").read_text()
    entries = re.findall(r"^([A-Za-z0-9][^ \n]*==[^ \n;]+)", text, flags=re.M)
    assert len(entries) > 50
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text)
    assert all("--hash=sha256:" in b for b in blocks if not b.startswith("#"))


def test_requirements_txt_is_all_in_the_lock():
    pins = _lock_pins()
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            name = canonicalize_name(req.name)
            assert name in pins, f"{req.name} is not in requirements.lock: run `make lock`"
            assert req.specifier.contains(pins[name], prereleases=True), (line, pins[name])


def test_every_installed_package_is_the_locked_version():
    pins = _lock_pins()
    installed = {canonicalize_name(d.metadata["Name"]): d.version
                 for d in importlib.metadata.distributions()}
    unpinned = sorted(set(installed) - set(pins))
    assert not unpinned, f"installed but not in requirements.lock: {unpinned}"
    wrong = {n: (v, pins[n]) for n, v in installed.items() if pins[n] != v}
    assert not wrong, f"installed version differs from the lock (installed, locked): {wrong}"
