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


@pytest.mark.parametrize("command", COMMANDS)
def test_a_flag_shows_no_value_type(command: str) -> None:
    """`--json <bool>` read as an option taking a value (`--json true` is refused): a flag has
    no type in the help; an option with a value keeps its own."""
    output = _help(command)
    assert "<bool>" not in output, output
    if command == "predict":
        assert "--json print JSON" in output and "--out <path>" in output, output


def _help(command: str) -> str:
    result = CliRunner().invoke(app, [command, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    return _words(result.output)


def _names_option(text: str, option: str) -> bool:
    """Whether `text` names `option` itself (--data is not named by --run-data)."""
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


# (command, the option's name, its old spelling, kept as a hidden alias): "--data-root" and
# "--data" both meant the run's own dataset here, while "--data" elsewhere is a dataset to read;
# "--split-test" was the obscure negative of --official-test
RENAMED = [("calibrate", "--run-data", "--data-root"), ("ood", "--run-data", "--data-root"),
           ("evaluate", "--run-data", "--data-root"), ("explain-choose", "--run-data", "--data"),
           ("train", "--own-test-split", "--split-test")]


@pytest.mark.parametrize(("command", "name", "old"), RENAMED)
def test_renamed_options_show_their_new_name_only(command: str, name: str, old: str) -> None:
    shown = _help(command)
    assert _names_option(shown, name) and not _names_option(shown, old), shown


@pytest.mark.parametrize(("command", "name", "old"), RENAMED[:4])
def test_the_old_name_of_run_data_still_works(command: str, name: str, old: str,
                                              tmp_path) -> None:
    gone = tmp_path / "gone"
    result = CliRunner().invoke(app, [command, old, str(gone)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"error: --run-data folder {gone} does not exist"]
    here = tmp_path / "here"
    here.mkdir()
    result = CliRunner().invoke(app, [command, name, str(here), old, str(gone)])
    assert result.stderr.splitlines() == [f"error: {old} is the old name of {name}: give it "
                                          "once"]


def test_run_data_help_says_whose_dataset_it_is() -> None:
    for command in ("calibrate", "ood", "evaluate", "explain-choose", "explain-eval"):
        assert "where the dataset this run was trained on is now" in _help(command)
    # explain-eval's --data is another folder, as evaluate's; its old meaning is said kept
    assert "another folder to measure, as evaluate --data" in _help("explain-eval")
    assert "(--run-data, the old meaning, kept)" in _help("explain-eval")
    # evaluate's --data is another dataset, and says where the run's own one is given
    assert "another dataset to evaluate on instead of the run's test split" in _help("evaluate")
    assert "the run's own dataset moved? --run-data" in _help("evaluate")


# (options, the config file's official_test, the split trained): an option wins over the file
@pytest.mark.parametrize(("args", "in_file", "official"), [
    ([], True, True), (["--official-test"], False, True), (["--own-test-split"], True, False),
    (["--split-test"], True, False)])
def test_the_test_split_options(args: list[str], in_file: bool, official: bool,
                                tmp_path) -> None:
    import json

    cfg = tmp_path / "split.json"
    cfg.write_text(json.dumps({"official_test": in_file}))
    result = CliRunner().invoke(app, ["train", "--print-config", "--profile", "smoke",
                                      "--config", str(cfg), *args])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["official_test"] is official
    both = CliRunner().invoke(app, ["train", "--print-config", "--official-test",
                                    "--split-test"])
    assert both.exit_code == 2 and both.stderr.splitlines() == [
        "error: --official-test and --split-test (the old name of --own-test-split) ask for "
        "two test splits: give one"]


@pytest.mark.parametrize(("command", "default"), [("train", "full"), ("run", "quick"),
                                                  ("tune", "quick")])
def test_profile_help_gives_each_commands_default_and_why(command: str, default: str) -> None:
    from pipeline.config import PROFILE_NOTES

    shown = _help(command)
    assert f"Default {default}: " in shown and f"[default: {default}]" in shown
    for name, note in PROFILE_NOTES.items():
        assert f"{name}: {_words(note)}" in shown


def _breaks_early(lines: list[str], width: int) -> list[tuple[str, str]]:
    """Pairs of consecutive lines of one paragraph where the second line's first word would have
    fitted on the first: a hard line break, not the terminal's wrapping."""
    return [(a, b) for a, b in zip(lines, lines[1:], strict=False)
            if a.strip() and b.strip() and len(a.rstrip()) + 1 + len(b.split()[0]) <= width]


def test_the_command_list_wraps_descriptions_at_the_terminal() -> None:
    """`--help`'s command list kept each docstring's line breaks ("… from foreign and from⏎
    shifted ones", a review): every description must wrap only where the next word does not fit."""
    result = CliRunner().invoke(app, ["--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    top = next(i for i, ln in enumerate(lines) if ln.startswith("╭─ Commands"))
    rows = lines[top + 1:next(i for i in range(top, len(lines)) if lines[i].startswith("╰"))]
    start = re.match(r"│ \S+\s+", rows[0]).end()  # where the description column begins
    width = len(rows[0]) - start - 2  # up to the padding before the panel's edge
    described: dict[str, list[str]] = {}
    for row in rows:
        name = row[1:start].strip()
        if name:
            described[name] = []
        described[list(described)[-1]].append(row[start:-1].rstrip())
    assert set(described) == set(COMMANDS)
    for name, text in described.items():
        assert not _breaks_early(text, width), (name, text)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_commands_description_wraps_at_the_terminal(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    usage = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("Usage:"))
    end = next(i for i in range(usage, len(lines)) if lines[i].startswith("╭"))
    text = [ln.rstrip() for ln in lines[usage + 1:end]]
    assert any(text), (command, result.output)
    assert not _breaks_early(text, 78), (command, text)  # 80 columns less a space each side


@pytest.mark.parametrize("args, named", [
    (["--quick"], "--quick"), (["--data", "."], "--data"), (["--model", "custom_cnn"], "--model"),
    (["--stream", "10", "--no-dashboard"], "--stream, --no-dashboard"),
    (["--dashboard-only"], "--dashboard-only")])
def test_bench_explain_only_refuses_the_options_it_would_ignore(args: list[str],
                                                                named: str) -> None:
    """`bench --explain-only --quick` (and --data, --model, ...) ran, ignoring them (a review)."""
    result = CliRunner().invoke(app, ["bench", "--explain-only", *args])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: --explain-only measures only the explanation methods of --run (both models); "
        f"it takes no {named}"], result.stderr
