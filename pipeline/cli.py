"""Command line: `python -m pipeline COMMAND --help`. Each command is a thin wrapper over a stage."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Brain-tumour MRI classifiers with explanations. Research and teaching only, not diagnosis.",
)
err = Console(stderr=True)

ProgressFn = Callable[[str, int, int], None]


class CliError(Exception):
    """An expected failure: printed as one line, exit code 2, no traceback."""


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def progress_bar(enabled: bool = True) -> Iterator[ProgressFn]:
    """Yield a callback `update(description, done, total)` drawing a rich progress bar on stderr."""
    if not enabled:
        yield lambda desc, done, total: None
        return
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=False,
    ) as prog:
        tasks: dict[str, int] = {}

        def update(desc: str, done: int, total: int) -> None:
            if desc not in tasks:
                tasks[desc] = prog.add_task(desc, total=total)
            prog.update(tasks[desc], completed=done, total=total)

        yield update


def print_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _existing_dir(path: Path, what: str) -> Path:
    if not path.exists():
        fail(f"{what} {path} does not exist")
    if not path.is_dir():
        fail(f"{what} {path} is not a folder")
    return path


# Commands live below, one section per stage. Keep them thin: parse, call the stage, print.

# --- data (audit, synth) ---

# --- training (train, run, predict) ---

# --- evaluation (evaluate, tune) ---

# --- explanations (explain, explain-eval) ---

# --- benchmarks and figures (bench, figures) ---


def main() -> None:
    """Entry point: expected errors become one line on stderr and a non-zero exit."""
    try:
        app()
    except CliError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
