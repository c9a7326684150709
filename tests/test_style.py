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


def test_run_file_names_have_one_home():
    """A run folder's file names were typed as literals in up to 16 modules each; they live in
    `pipeline/run_files.py`, and code elsewhere names them through it (docstrings and messages
    may quote them)."""
    import ast

    from pipeline import run_files

    names = {v for k, v in vars(run_files).items() if k.isupper()}
    # the Predict page's download of the uploads' answers, and predict's example --out, are
    # not a run's files
    allowed = {("dashboard/app_pages/predict.py", "predictions.csv"),
               ("pipeline/cli/eval_cmds.py", "predictions.csv")}
    found = []
    for path in [*(ROOT / "pipeline").rglob("*.py"), *(ROOT / "dashboard").rglob("*.py")]:
        rel = path.relative_to(ROOT).as_posix()
        if rel == "pipeline/run_files.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and node.value in names
                    and (rel, node.value) not in allowed):
                found.append(f"{rel}:{node.lineno} {node.value}")
    assert not found, found


def test_every_make_target_the_docs_name_exists() -> None:
    """README named `make dashboard ARTIFACTS=DIR` before the Makefile had that target: every
    `make <target>` in README and docs must be one the Makefile defines."""
    import re

    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    named = set()
    for text in (p.read_text(encoding="utf-8") for p in docs):  # code, not prose ("make a ...")
        named.update(re.findall(r"`make ([a-z][\w-]*)[^`\n]*`", text))
        fenced = False
        for line in text.splitlines():
            fenced ^= line.startswith("```")
            if fenced and line.startswith("make "):
                named.add(line.split()[1])
    assert {"demo", "test", "dashboard"} <= named  # the commands README opens with, and this one
    assert named <= targets, f"not in the Makefile: {sorted(named - targets)}"
