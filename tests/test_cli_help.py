"""Every option's help text reaches `--help` whole (rich reads "[…]" as markup and drops it)."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from pipeline.cli import app

COMMANDS = sorted(c.name for c in typer.main.get_command(app).commands.values())


def _words(text: str) -> str:
    """Text with the help panels' box characters and line breaks gone: words one space apart."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_help_is_printed_whole(command: str) -> None:
    click_cmd = typer.main.get_command(app).commands[command]
    result = CliRunner().invoke(app, [command, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    shown = _words(result.output)
    for param in click_cmd.params:
        text = getattr(param, "help", None)
        if text:  # evaluate's "[default: 2000]" vanished here
            assert _words(text) in shown, (command, param.name, text)
