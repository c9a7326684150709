"""TensorFlow's start-up chatter never reaches our CLI's stderr, on any CPU (issue: green suite)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from pipeline.quiet_import import filter_startup

ROOT = Path(__file__).resolve().parents[1]

# Verbatim from TensorFlow 2.21 on an AVX-512 CPU (AMD EPYC Zen 4 / Intel Xeon).
NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
ONEDNN = (
    "I0000 00:00:1796123050.286091   17590 port.cc:153] oneDNN custom operations are on. "
    "You may see slightly different numerical results due to floating-point round-off errors "
    "from different computation orders. To turn them off, set the environment variable "
    "`TF_ENABLE_ONEDNN_OPTS=0`.\n"
)
CPU_GUARD = (
    "I0000 00:00:1796125438.869483    2383 cpu_feature_guard.cc:227] This TensorFlow binary is "
    "optimized to use available CPU instructions in performance-critical operations.\n"
    "To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 AVX512_FP16 "
    "AVX_VNNI AMX_TILE AMX_INT8 AMX_BF16 FMA, in other operations, rebuild TensorFlow with the "
    "appropriate compiler flags.\n"
)
ERROR_LINE = "E0000 00:00:1796125438.9 2383 op_kernel.cc:1830] OP_REQUIRES failed: out of memory\n"
WARNING_LINE = "W0000 00:00:1796125438.9 2383 loader.cc:12] something a user may want to know\n"
OURS = "error: cannot read scan.jpg: not an image (text?)\n"


def test_filter_drops_the_real_startup_lines_at_the_default_level():
    chatter = NOTICE + ONEDNN + NOTICE + ONEDNN + CPU_GUARD
    assert filter_startup(chatter + OURS, min_level=2) == OURS


def test_filter_keeps_errors_tracebacks_and_unknown_lines():
    traceback = "Traceback (most recent call last):\n  File \"x.py\", line 1\nImportError: libfoo\n"
    text = NOTICE + ERROR_LINE + ONEDNN + traceback
    assert filter_startup(text, min_level=2) == ERROR_LINE + traceback
    # A line that merely starts like the continuation is kept unless it follows a dropped line.
    assert filter_startup("To enable the following instructions: ours\n", 2) != ""


def test_filter_follows_tf_cpp_min_log_level():
    assert filter_startup(NOTICE + ONEDNN, min_level=0) == NOTICE + ONEDNN
    assert filter_startup(ONEDNN + WARNING_LINE, min_level=1) == WARNING_LINE
    assert filter_startup(ONEDNN + WARNING_LINE, min_level=2) == ""
    assert filter_startup(ERROR_LINE, min_level=3) == ""


def _run_child(tmp_path: Path, module_body: str) -> subprocess.CompletedProcess:
    """Import a fake noisy module under the guard in a fresh interpreter."""
    (tmp_path / "noisy_lib.py").write_text(textwrap.dedent(module_body))
    code = textwrap.dedent(
        """
        import os, sys
        from pipeline import quiet_import
        quiet_import.install(["noisy_lib"])
        try:
            import noisy_lib
        except ImportError as exc:
            print("import failed:", exc, file=sys.stderr)
        os.write(2, b"after the import\\n")
        """
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}", "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=120, cwd=tmp_path)


def test_guard_filters_file_descriptor_output_of_an_import(tmp_path: Path):
    # Written with os.write, below Python's sys.stderr, as TensorFlow's C++ code does.
    body = f"""
        import os
        os.write(2, {(NOTICE + ONEDNN + CPU_GUARD).encode()!r})
        os.write(2, {ERROR_LINE.encode()!r})
        """
    proc = _run_child(tmp_path, body)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ERROR_LINE + "after the import\n"


def test_guard_passes_on_a_failing_import(tmp_path: Path):
    body = f"""
        import os
        os.write(2, {(NOTICE + ONEDNN).encode()!r})
        os.write(2, b"libtensorflow_framework.so.2: cannot open shared object file\\n")
        raise ImportError("no TensorFlow here")
        """
    proc = _run_child(tmp_path, body)
    assert proc.stderr.splitlines() == [
        "libtensorflow_framework.so.2: cannot open shared object file",
        "import failed: no TensorFlow here",
        "after the import",
    ]


def test_tensorflow_is_imported_through_the_guard():
    code = "import pipeline, keras, tensorflow as tf; print(type(tf.__spec__.loader).__name__)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "_QuietLoader"
    assert "absl::InitializeLog" not in proc.stderr and "port.cc" not in proc.stderr


def test_a_cli_error_is_exactly_one_stderr_line(tmp_path: Path):
    not_an_image = tmp_path / "not-an-image.jpg"
    not_an_image.write_text("hello")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user has it
    proc = subprocess.run([sys.executable, "-m", "pipeline", "predict", "--run", "latest",
                           str(not_an_image)], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=300)
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "not-an-image.jpg" in lines[0] and "not an image" in lines[0]


def test_the_cli_and_the_dashboard_s_light_modules_leave_tensorflow_unloaded():
    """`python -m pipeline --help` paid a 4.5 s TensorFlow import: the explain commands took
    the shortcut alarm's message from the Keras-importing metrics module (fixed with
    `explain.alarm`). The CLI package, its command modules, the explain modules meant to be pure
    (alarm, defaults, overlay_text) and the dashboard's flag and figure modules import no
    TensorFlow; the commands import it when they run."""
    code = ("import sys, pipeline.cli, pipeline.cli.explain_cmd, pipeline.cli.explain_eval_cmd, "
            "pipeline.cli.explain_choose_cmd, pipeline.cli.eval_cmds, pipeline.explain.alarm, "
            "pipeline.explain.defaults, pipeline.explain.overlay_text, dashboard.flags, "
            "dashboard.figures; "
            "loaded = [m for m in ('tensorflow', 'keras') if m in sys.modules]; "
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
