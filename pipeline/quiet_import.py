"""Import TensorFlow without its C++ start-up chatter on stderr, on any CPU.

TensorFlow 2.21 logs through C++ absl. Before absl is initialised every message goes straight to
file descriptor 2, whatever `TF_CPP_MIN_LOG_LEVEL` says, and the library is loaded twice during
`import tensorflow`, so a CLI error arrived behind four or five lines like these (the oneDNN line
appears only on CPUs with AVX-512):

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:1796123050.286091   17590 port.cc:153] oneDNN custom operations are on. ...

Python's `sys.stderr` never sees them, so the only place to catch them is the descriptor itself.
`install()` (called once by `pipeline/__init__.py`) puts a finder on `sys.meta_path` that wraps the
*first* import of TensorFlow, however it is reached (`import keras`, tf-keras-vis, ours), in
`filtered_stderr()`: fd 2 is pointed at a temporary file during the import, then everything that is
not known start-up chatter is written to the real stderr. Real errors (a missing library, an
ImportError's traceback) still reach the user, only after the import instead of during it.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence

# absl's own notice, printed before its first message.
_ABSL_NOTICE = ("WARNING: All log messages before absl::InitializeLog() is called are written "
                "to STDERR")
# An absl/glog line: severity letter, MMDD, time, thread id, file:line] message.
_LOG_LINE = re.compile(r"^(?P<sev>[IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] ")
# The second line of cpu_feature_guard's "This TensorFlow binary is optimized ..." message.
_CONTINUATION = "To enable the following instructions:"
_SEVERITY_RANK = {"I": 0, "W": 1, "E": 2, "F": 3}


def _min_level() -> int:
    """TensorFlow's own knob: 0 shows all, 1 hides INFO, 2 also WARNING, 3 also ERROR."""
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def filter_startup(text: str, min_level: int | None = None) -> str:
    """`text` without the C++ log lines that `TF_CPP_MIN_LOG_LEVEL` asks to hide.

    Fatal lines and anything that is not an absl log line (Python tracebacks, our messages) are
    always kept.
    """
    level = _min_level() if min_level is None else min_level
    kept: list[str] = []
    dropped_previous = False
    for line in text.splitlines(keepends=True):
        bare = line.rstrip("\r\n")
        match = _LOG_LINE.match(bare)
        if bare == _ABSL_NOTICE:
            drop = level >= 1
        elif match:
            drop = _SEVERITY_RANK[match["sev"]] < min(level, 3)
        else:
            drop = dropped_previous and bare.startswith(_CONTINUATION)
        dropped_previous = drop
        if not drop:
            kept.append(line)
    return "".join(kept)


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Capture fd 2 for the duration, then write what `filter_startup` keeps to the real fd 2."""
    with contextlib.suppress(Exception):  # a flush must not hide the import's own error
        sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            kept = filter_startup(sink.read().decode("utf-8", "replace"))
            if kept:
                os.write(2, kept.encode("utf-8"))


class _QuietLoader(importlib.abc.Loader):
    """Delegates to the real loader, running the module's code inside `filtered_stderr()`."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec):  # noqa: ANN001 - importlib's signature
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:  # noqa: ANN001
        with filtered_stderr():
            self._loader.exec_module(module)

    def __getattr__(self, name: str):  # is_package, get_resource_reader, ...: the real loader's
        return getattr(self._loader, name)


class QuietFinder(importlib.abc.MetaPathFinder):
    """Wraps the first import of each top-level module in `names`; removes itself when done."""

    def __init__(self, names: Sequence[str]) -> None:
        self.pending = set(names)

    def find_spec(self, fullname, path, target=None):  # noqa: ANN001
        if fullname not in self.pending:
            return None
        self.pending.discard(fullname)
        if not self.pending:
            with contextlib.suppress(ValueError):
                sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)  # the finders after us, as usual
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def install(names: Sequence[str] = ("tensorflow",)) -> None:
    """Quiet the first import of `names` in this process (no-op for modules already imported)."""
    todo = {n for n in names if n not in sys.modules}
    if not todo:
        return
    for finder in sys.meta_path:
        if isinstance(finder, QuietFinder):
            finder.pending |= todo
            return
    sys.meta_path.insert(0, QuietFinder(sorted(todo)))
