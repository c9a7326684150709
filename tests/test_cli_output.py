"""What the commands print around their work: no blank line before an early error, no folder
named twice."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.cli.common import progress_bar


def test_a_progress_bar_draws_nothing_until_its_first_update(capsys) -> None:
    with progress_bar() as update:
        pass
    assert capsys.readouterr().err == ""  # was a blank line
    with progress_bar() as update:
        update("reading", 1, 2)
    assert "reading" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("command", ["explain-eval", "evaluate"])
def test_an_empty_data_folder_is_one_line_naming_it_once(command: str, smoke_run: Path,
                                                          tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(app, [command, "--run", str(smoke_run), "--data", str(empty)])
    assert result.exit_code != 0
    assert result.stderr.splitlines() == [f"error: data folder {empty} is empty"]
