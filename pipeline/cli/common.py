"""What every command shares: the typer `app`, the stderr console, one-line errors, progress
bars, JSON output, and the checks of folders, model lists and `--target`."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import typer
from rich import progress as rich_progress
from rich.console import Console

from pipeline.names import DEFAULT_MODELS, Progress

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Brain-tumour MRI classifiers with explanations. Research/teaching only, not diagnosis.",
)
err = Console(stderr=True)


def one_line(text: object) -> str:
    """User-controlled text (file names, decoder messages) as one printable line.

    Control characters (a newline or a terminal escape sequence in a file name) are shown as
    Python escapes, so one message stays one line and cannot drive the terminal.
    """
    s = str(text)
    if s.isprintable():
        return s
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in s)


def shown(text: object) -> str:
    """`one_line(text)` with rich markup escaped: a file called `[/].png` is printed, not parsed."""
    from rich.markup import escape

    return escape(one_line(text))


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {shown(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Progress]:
    """Yield a callback `update(description, done, total)` drawing a rich progress bar on stderr."""
    if not enabled:
        yield lambda desc, done, total: None
        return
    with rich_progress.Progress(
        rich_progress.TextColumn("{task.description}"), rich_progress.BarColumn(),
        rich_progress.MofNCompleteColumn(), rich_progress.TimeElapsedColumn(),
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


MODEL_HELP = "custom_cnn, mobilenetv2, efficientnetb0, or all (= custom_cnn + mobilenetv2)"


def _model_list(model: str) -> list[str]:
    from pipeline.models import MODEL_NAMES

    if model == "all":
        return list(DEFAULT_MODELS)
    names = [m.strip() for m in model.split(",") if m.strip()]
    bad = [m for m in names if m not in MODEL_NAMES]
    if bad or not names:
        fail(f"unknown model {', '.join(bad) or model!r}; choose from {MODEL_HELP}")
    return names


def _target_index(target: str | None, class_names: list[str]) -> int | None:
    """A --target given as a class name or index -> index (None = each image's prediction)."""
    if target is None:
        return None
    if target in class_names:
        return class_names.index(target)
    if target.isdigit() and int(target) < len(class_names):
        return int(target)
    fail(f"unknown --target {target!r}; choose a class name ({', '.join(class_names)}) "
         f"or an index 0..{len(class_names) - 1}")
