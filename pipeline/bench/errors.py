"""The benchmark's one error type (its own module, so every part can raise it without cycles)."""

from __future__ import annotations


class BenchError(ValueError):
    """Bad benchmark arguments or an unusable data folder / run."""
