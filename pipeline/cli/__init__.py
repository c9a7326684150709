"""Command line: `python -m pipeline COMMAND --help`; each command is a thin stage wrapper.

Commands parse their options, call one stage of the pipeline and print. They live one module per
group or command (`data_cmds`, `train_cmds`, `eval_cmds`, `calibrate_cmd`, `explain_cmd`,
`explain_eval_cmd`, `explain_choose_cmd`, `ood_cmd`, `bench_cmd`) and are registered below, in
the order `--help` lists them. Importing this package stays cheap: TensorFlow and the stages are
imported inside the commands.
"""

from __future__ import annotations

import inspect
import sys

from pipeline.cli.bench_cmd import bench
from pipeline.cli.calibrate_cmd import calibrate
from pipeline.cli.common import app, err, fail, one_line, print_json, progress_bar, shown
from pipeline.cli.data_cmds import audit, synth
from pipeline.cli.eval_cmds import evaluate, figures, predict
from pipeline.cli.explain_choose_cmd import explain_choose_cmd
from pipeline.cli.explain_cmd import explain
from pipeline.cli.explain_eval_cmd import explain_eval_cmd
from pipeline.cli.ood_cmd import ood
from pipeline.cli.train_cmds import run, train, tune
from pipeline.signals import Terminated, installed, interrupted, terminated

__all__ = [
    "Terminated", "app", "err", "fail", "main", "one_line", "print_json",
    "progress_bar", "shown",
]


def flowed(doc: str | None) -> str:
    """A command's docstring as `--help` text: each paragraph on one line, so help wraps it to
    the terminal. Typer's rich mode keeps a docstring's line breaks in the command list, where
    they broke sentences mid-way ("... from foreign and from⏎ shifted ones"); a paragraph
    starting with click's "\\b" (keep my lines) is left as written."""
    paragraphs = inspect.cleandoc(doc or "").split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(p.split()) for p in paragraphs)


for _name, _fn in [("audit", audit), ("synth", synth), ("train", train), ("run", run),
                   ("predict", predict), ("evaluate", evaluate), ("calibrate", calibrate),
                   ("tune", tune), ("explain", explain), ("explain-eval", explain_eval_cmd),
                   ("explain-choose", explain_choose_cmd), ("ood", ood), ("figures", figures),
                   ("bench", bench)]:
    app.command(_name, help=flowed(_fn.__doc__))(_fn)


def main() -> None:
    """Entry point of `python -m pipeline`: Ctrl-C prints one line and exits with 130 (SIGTERM
    the same, exit 143); a write the system refuses (a full disk, a read-only folder) is one
    `error:` line and exit 1, wherever a command did not say it better itself."""
    # SIGTERM killed train silently, leaving its feature cache behind (review 4, #6); the
    # caller's own handler is back afterwards (tests call main() in-process)
    with installed():
        try:
            app()
        except KeyboardInterrupt as exc:
            err.print("interrupted")
            sys.exit(143 if terminated(exc) else 130)
        except SystemExit as exc:
            # typer turns Ctrl-C into a silent exit 130; a command that said more (explain: how to
            # continue) raised its own exit, not from the interrupt
            cause = exc.__context__.__cause__ if exc.__context__ is not None else None
            if exc.code == 130 and isinstance(cause, KeyboardInterrupt):
                err.print("interrupted")
            if exc.code == 130 and terminated(exc):
                sys.exit(143)
            raise
        except Exception as exc:
            if interrupted(exc):  # an interrupt a library turned into its own error (signals.py)
                err.print("interrupted")
                sys.exit(143 if terminated(exc) else 130)
            if not isinstance(exc, OSError):
                raise
            where = f" ({one_line(exc.filename)})" if exc.filename else ""
            err.print(f"[bold red]error:[/] {shown(exc.strerror or str(exc))}{shown(where)}",
                      highlight=False, soft_wrap=True)
            sys.exit(1)
