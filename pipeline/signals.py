"""SIGTERM handled like Ctrl-C, and interrupts that surface as other errors (no TensorFlow).

`kill`, `docker stop` or a scheduler's time limit send SIGTERM; `terminate` (the handler
`cli.main` installs) raises `Terminated`, a KeyboardInterrupt, so both run the same cleanup and
say the same line, with SIGTERM's exit code, 143. A signal can land inside library code that
turns whatever is raised there into its own error (seen once in a test: a SIGTERM during
TensorFlow's tracing ended train as a TypeError, exit 1 instead of 143); `interrupted(exc)` and
`terminated(exc)` therefore also look at the exception's chain and at whether the handler ran.
"""

from __future__ import annotations

_state = {"terminated": False}  # set by the handler: the one record that survives a wrapping


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt."""


def terminate(signum: int, frame: object) -> None:
    """The SIGTERM handler: note it, then raise `Terminated`."""
    _state["terminated"] = True
    raise Terminated()


def reset() -> None:
    """Forget a SIGTERM seen (`cli.main` does when it returns: tests call it in-process)."""
    _state["terminated"] = False


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
    """Whether `exc` comes from Ctrl-C or SIGTERM, whatever its own type."""
    return terminated(exc) or _in_chain(exc, KeyboardInterrupt)
