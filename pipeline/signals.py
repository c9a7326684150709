"""SIGTERM handled like Ctrl-C, and interrupts that surface as other errors or not at all (no
TensorFlow).

`kill`, `docker stop` or a scheduler's time limit send SIGTERM; `terminate` (the handler
`cli.main` installs) raises `Terminated`, a KeyboardInterrupt, so both run the same cleanup and
say the same line, with SIGTERM's exit code, 143. A signal can land inside library code that
turns whatever is raised there into its own error (seen once in a test: a SIGTERM during
TensorFlow's tracing ended train as a TypeError, exit 1 instead of 143); `interrupted(exc)` and
`terminated(exc)` therefore also look at the exception's chain and at whether the handler ran.

A signal can also land where what the handler raises is dropped: in a finaliser (a `__del__`,
a weakref callback; Python prints "Exception ignored" and goes on), or in library code that
clears it (Keras' TensorFlow `shape` wraps each dynamic dimension in `except: pass`, and runs
for every op traced with an unknown batch size, as `models.compiled` does when feature caching
starts: 6 of 20 SIGTERMs sent then landed in that tracing, 14 while Keras built the models).
A SIGTERM at that moment was lost in three test runs under load (2026-12), and training ran to
its end, exit 0; a Ctrl-C in TensorFlow's `Flatten` became a TypeError. So the handlers
(`installed()`: SIGTERM's, and Ctrl-C's where Python's own was in place) also note the
interrupt as pending, and `check()`, which training calls after each batch and the command
line at each progress update, raises it once more unless it is already on its way out.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

# terminated / interrupted: set by SIGTERM's / Ctrl-C's handler, the one record that survives
# a wrapping; pending: the kind of interrupt a handler raised, until `check` raises it again
_state: dict[str, Any] = {"terminated": False, "interrupted": False, "pending": None}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt."""


def terminate(signum: int, frame: object) -> None:
    """The SIGTERM handler: note it, then raise `Terminated`."""
    _state["terminated"] = True
    _state["pending"] = Terminated
    raise Terminated()


def interrupt(signum: int, frame: object) -> None:
    """The Ctrl-C handler while `installed()`: Python's own (KeyboardInterrupt), noted (a
    Ctrl-C landing in TensorFlow's `Flatten` ended train as a TypeError, exit 1, in a test)."""
    _state["interrupted"] = True
    _state["pending"] = KeyboardInterrupt
    raise KeyboardInterrupt()


def reset() -> None:
    """Forget a signal seen (`installed()` does on its way out: tests call `cli.main`
    in-process)."""
    _state["terminated"] = _state["interrupted"] = False
    _state["pending"] = None


def check() -> None:
    """Raise the interrupt a handler raised when it was dropped on the way (see the module
    docstring); nothing when none came, or while one is being handled (an `except` or `finally`
    on its way out: the interrupt reached it). Only in the main thread, where handlers run: a
    worker thread that raised it would end itself and leave the work running."""
    kind = _state["pending"]
    if kind is None or threading.current_thread() is not threading.main_thread():
        return
    if isinstance(sys.exc_info()[1], KeyboardInterrupt):
        return
    _state["pending"] = None
    raise kind()


def _quiet(previous: Any) -> Any:
    """An unraisable hook that drops the interrupt a finaliser swallowed (`check` raises it
    again; printed, it was a traceback on a kill), and the error Python made of it where it
    landed in a builtin that C code called (TensorFlow's `Flatten` reports it as unraisable: a
    bare "SystemError: <built-in function __import__> returned a result with an exception set"
    traceback on a SIGTERM during feature caching, in a CI rehearsal), and passes anything else
    on."""
    def hook(unraisable: Any) -> None:
        noted = _state["pending"] is not None or _state["terminated"] or _state["interrupted"]
        exc = unraisable.exc_value
        if not (noted and isinstance(exc, BaseException) and _in_chain(exc, KeyboardInterrupt)):
            previous(unraisable)
    return hook


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """SIGTERM raises `Terminated` and Ctrl-C KeyboardInterrupt, both noted for `check`; the
    caller's handlers and unraisable hook are back afterwards, and the state is reset. Ctrl-C's
    handler replaces only Python's own (a background job that ignores SIGINT keeps ignoring it);
    outside the main thread signals cannot be set (ValueError) and are left alone."""
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _quiet(previous_hook)
    restore: list[tuple[int, Any]] = []
    with contextlib.suppress(ValueError):
        restore.append((signal.SIGTERM, signal.signal(signal.SIGTERM, terminate)))
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            restore.append((signal.SIGINT, signal.signal(signal.SIGINT, interrupt)))
    try:
        yield
    finally:
        for signum, previous in reversed(restore):
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
        sys.unraisablehook = previous_hook
        reset()


def _in_chain(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def terminated(exc: BaseException) -> bool:
    """Whether `exc` comes from a SIGTERM: `Terminated` in its chain, or the handler ran."""
    return _state["terminated"] or _in_chain(exc, Terminated)


def interrupted(exc: BaseException) -> bool:
    """Whether `exc` comes from Ctrl-C or SIGTERM, whatever its own type: an interrupt in its
    chain, or a handler ran."""
    return terminated(exc) or _state["interrupted"] or _in_chain(exc, KeyboardInterrupt)
