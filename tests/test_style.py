"""The project is ruff-clean (the developers' guide). CI runs only `make test`, so the suite checks
it: a line over 100 characters once passed CI and was found only by reading the diff."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_code_is_ruff_clean():
    # ruff is in the lock file, so a missing ruff is a broken install, not a reason to skip
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--quiet",
                           "pipeline", "dashboard", "tests"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_folder_stamps_are_utc_like_run_ids():
    """`tune` and `evaluate --cv` named their folders by local time while run ids are UTC, so
    one machine's folders sorted out of step with its runs. A `time.strftime` without a time
    tuple formats local time."""
    import ast

    local = []
    for path in (ROOT / "pipeline").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "strftime" and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "time" and len(node.args) < 2):
                local.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not local, local
