"""results.md: a run's figures as one citable Markdown file (`figures` writes it, the dashboard's
Overview offers it for download; both call `results_markdown`, so the two are the same bytes).

A header names the run, what its test set is (main split, or the official Testing/ folder:
shift validation), when the run was made and how the intervals were computed; then the test
table (`report.results_table`, which README and MODEL_CARD quote line for line), and, when the
run has them, both models' pooled answer (comparison.json's "together"), robustness
(`robustness.json`), the warnings' record (`flags.json`) and every
`evaluate --data NAME` result (`<run>/<model>/external/NAME/`). Every file is read defensively:
a missing or damaged section is left out, a missing figure shown as "–", never a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from pipeline import run_files
from pipeline.artifacts import Run
from pipeline.evaluate.external import NOT_FOUND_NOTE, series_line
from pipeline.evaluate.flags import FILE as FLAGS_FILE
from pipeline.evaluate.flags import audit_caption, flag_table, not_singling_out, t2_tumours
from pipeline.intervals import share_interval
from pipeline.names import DISCLAIMER, SHIFT_VALIDATION_NOTE, display_name, one_line
from pipeline.report import _optional, results_table

DASH = "–"  # a figure the files do not have
FLAG_COLUMNS = ("model", "warning", "answers flagged", "right when flagged", "right otherwise",
                "errors flagged")


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _cell(text: Any) -> str:
    """Text from a file as a table cell: one line, no column break (a "|" split the row), no
    control character (`one_line`)."""
    return one_line(" ".join(str(text).split())).replace("|", "\\|")


def _code(text: Any) -> str:
    """User-given text (a run title) as a code span: never read as Markdown, and no control
    character (`one_line`: a title's terminal escape turned `cat results.md` red, a review)."""
    return "`" + one_line(" ".join(str(text).split())).replace("`", "'") + "`"


def _date(stamp: Any) -> str | None:
    """"2026-12-05 00:38 UTC" from an ISO time stamp; None for anything else."""
    try:
        when = datetime.fromisoformat(str(stamp))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def test_set_kind(run: Run) -> str:
    """"official Testing/ folder" or "main split": which of the two kinds of test set a run has
    (the manifest's `splits.official_test`)."""
    official = _dict(run.manifest.get("splits")).get("official_test")
    return "official Testing/ folder" if isinstance(official, Mapping) else "main split"


def title_line(run_id: str) -> str:
    """results.md's first line, naming its run (`run_of` reads it back)."""
    return f"# Results of run {_code(run_id)}"


def run_of(text: str) -> str | None:
    """The run a results.md names in its first line (`title_line`); None for any other text.
    `figures` reads it so as not to overwrite another run's figures."""
    found = re.fullmatch(r"# Results of run `([^`\n]+)`", text.split("\n", 1)[0].rstrip())
    return found.group(1) if found else None


def header(run: Run) -> str:
    """The lines that make the file citable: run, test set, date, interval methods."""
    title = run.manifest.get("title")
    comp = _dict(_optional(run, run_files.COMPARISON))
    kind = test_set_kind(run)
    note = (SHIFT_VALIDATION_NOTE if kind.startswith("official")
            else "held out of the run's dataset by its own split, from the same sources as the "
                 "training images")
    created = _date(run.manifest.get("created"))
    method = comp.get("ci_method")
    lines = [title_line(run.run_id), "",
             f"- Run: {_code(run.run_id)}" + (f" ({_code(title)})" if title else ""),
             f"- Test set: {kind}; {note}",
             f"- Date: run finished {created or 'at an unrecorded time'}",
             "- Intervals: 95 %; " + (_cell(method) if isinstance(method, str) else
                                     "methods not recorded (comparison.json has no ci_method)"),
             f"- Written by `python -m pipeline figures --run {run.run_id}` (brain-mri-xai)",
             "", DISCLAIMER]
    return "\n".join(lines) + "\n"


def _signed(x: float) -> str:
    text = f"{x:+.3f}"
    return "+0.000" if text == "-0.000" else text


def robustness_section(run: Run) -> str | None:
    """Accuracy per shift and severity against the unshifted test images (robustness.json)."""
    rob = _dict(_optional(run, run_files.ROBUSTNESS))
    models = {m: _dict(v) for m, v in _dict(rob.get("models")).items() if m in run.model_names}
    unshifted = {m: _num(_dict(v.get("clean")).get("accuracy")) for m, v in models.items()}
    if not models or not any(x is not None for x in unshifted.values()):
        return None
    shifts = list(_dict(rob.get("shifts")))
    for v in models.values():
        shifts += [s for s in _dict(v.get("shifts")) if s not in shifts]
    names = [display_name(m) for m in models]
    n = _count(rob.get("n_images"))
    when = _date(rob.get("created"))
    lines = ["## Robustness to image shifts (shift validation, not a clean test)", "",
             f"Accuracy on shifted copies of the {f'{n} ' if n else ''}test images "
             "(`evaluate --robustness`, robustness.json"
             + (f", measured {when}" if when else "")
             + "); the change from the unshifted images' accuracy in brackets.", "",
             "| shift | severity | level | " + " | ".join(names) + " |",
             "|---|---|---|" + "---|" * len(names),
             "| unshifted | | | " + " | ".join(
                 DASH if x is None else f"{x:.3f}" for x in unshifted.values()) + " |"]
    for shift in shifts:
        parameter = _dict(_dict(rob.get("shifts")).get(shift)).get("parameter")
        depth = max((len(r) for v in models.values()
                     if isinstance(r := _dict(v.get("shifts")).get(shift), list)), default=0)
        for k in range(depth):
            cells, severity, level = [], DASH, DASH
            for m, v in models.items():
                rows = _dict(v.get("shifts")).get(shift)
                row = _dict(rows[k]) if isinstance(rows, list) and k < len(rows) else {}
                severity = str(row.get("severity", severity))
                if _num(row.get("level")) is not None:
                    level = f"{_num(row.get('level')):.3g}"
                    if isinstance(parameter, str):
                        level = f"{parameter} = {level}"
                acc, base = _num(row.get("accuracy")), unshifted[m]
                cells.append(DASH if acc is None else f"{acc:.3f}" + (
                    "" if base is None else f" ({_signed(acc - base)})"))
            lines.append(f"| {_cell(shift.replace('_', ' '))} | {_cell(severity)} | "
                         f"{_cell(level)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def together_section(run: Run) -> str | None:
    """The models' pooled answer on the test images (comparison.json's "together", in
    `evaluate`'s words, `evaluate.together.line`)."""
    from pipeline.evaluate import together

    record = _dict(_dict(_optional(run, run_files.COMPARISON)).get(together.KEY))
    try:
        text = together.line(record)
    except (KeyError, TypeError, ValueError):  # none, or a damaged one: left out
        return None
    return f"## Both models together\n\n{_cell(text)} ({together.RULE}).\n"


def warnings_section(run: Run) -> str | None:
    """How often each warning marks the test answers' errors (flags.json, `flag_table`)."""
    report = _dict(_optional(run, FLAGS_FILE))
    shown = {m: display_name(m) for m in run.model_names}
    rows = flag_table(report, shown) if report else []
    if not rows:
        return None
    when = _date(report.get("created"))
    lines = ["## Do the warnings catch the errors?", "",
             audit_caption(report) + (f" Measured {when} (flags.json)." if when else ""), "",
             "| " + " | ".join(FLAG_COLUMNS) + " |", "|" + "---|" * len(FLAG_COLUMNS)]
    lines += ["| " + " | ".join(_cell(r[c]) for c in FLAG_COLUMNS) + " |" for r in rows]
    extra = not_singling_out(report, shown)
    if words := t2_tumours(report.get("models"), shown):  # what that hint warns of
        extra.append(f"On these test images {words}.")
    return "\n".join(lines + ([""] + extra if extra else [])) + "\n"


def _accuracy(met: Mapping[str, Any], ci: Any) -> str:
    """"0.750 (0.551–0.880)": the stored interval, else Wilson's from accuracy and n."""
    acc, n = _num(met.get("accuracy")), _count(met.get("n"))
    if acc is None:
        return DASH
    lo_hi = ci if isinstance(ci, list) and len(ci) == 2 and all(
        _num(x) is not None for x in ci) else (
        share_interval(round(acc * n), n) if n else None)
    return f"{acc:.3f}" + (f" ({lo_hi[0]:.3f}–{lo_hi[1]:.3f})" if lo_hi else "")


def _seen(source: Mapping[str, Any]) -> str:
    """How many images were the run's training or validation images (or copies of them)."""
    overlap = _dict(source.get("overlap_with_training"))
    if overlap.get("checked") is False or not overlap:
        return "not checked"
    seen = _count(overlap.get("n_seen"))
    if seen is not None:
        return str(seen)
    exact = _count(overlap.get("n_exact"))  # files written before near copies were looked up
    return DASH if exact is None else f"{exact} (byte-identical only)"


def external_names(run: Run) -> list[str]:
    """The `evaluate --data NAME` results the run holds, any model's, sorted."""
    return sorted({p.parent.name for m in run.model_names
                   for p in (run.path / m / "external").glob(f"*/{run_files.METRICS}")})


def external_section(run: Run) -> str | None:
    """Each `evaluate --data NAME` result: where recorded, the figures on the images new to
    the run first (the ones to cite), then accuracy with its interval and n on all images and
    the copies of the run's training/validation images among them."""
    rows, verdicts, newer = [], [], False
    for name in external_names(run):
        comp = _dict(_optional(run, f"external/{name}/{run_files.COMPARISON}"))
        if line := series_line(_dict(comp.get("source")).get("skipped_series")):
            verdicts.append(f"- {_cell(name)}: {_cell(line)}")
        for m in run.model_names:
            met = _dict(_optional(run, f"{m}/external/{name}/{run_files.METRICS}"))
            if not met:
                continue
            new = _dict(met.get("new_to_run"))
            newer = newer or bool(new)
            new_ci = _dict(_dict(_dict(comp.get("new_to_run")).get("ci")).get(m)).get("accuracy")
            # the figures on the images new to the run first, as evaluate and its CLI table
            # put them (the headline), those on all images after
            rows.append([_cell(name), display_name(m),
                         str(_count(new.get("n"))) if _count(new.get("n")) is not None else DASH,
                         _accuracy(new, new_ci) if new else DASH,
                         str(_count(met.get("n")) or DASH),
                         _accuracy(met, _dict(_dict(comp.get("ci")).get(m)).get("accuracy")),
                         _seen(_dict(met.get("source")))])
        verdicts += [f"- {_cell(name)}{where}: {_cell(v)}" for where, c in (
            (" (images new to the run)", _dict(comp.get("new_to_run"))), ("", comp))
            if c and (v := _verdict(c))]
    if not rows:
        return None
    columns = ["folder", "model", "images", "accuracy (95 % CI)",
               "in the run's training/validation"]
    if newer:
        columns = [*columns[:2], "new to the run", "accuracy on new images (95 % CI)",
                   "all images", "accuracy on all images (95 % CI)", columns[-1]]
    else:
        rows = [r[:2] + r[4:] for r in rows]
    lines = ["## Other folders (`evaluate --data`)", "",
             "Each folder's labelled images scored by this run's models "
             "(`<run>/<model>/external/NAME/`). Images in the run's training or validation split "
             "(or copies of them) are not held out: the figures on images new to the run are the "
             f"ones to cite where recorded ({NOT_FOUND_NOTE}).", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines + ([""] + verdicts if verdicts else [])) + "\n"


def _verdict(comp: Mapping[str, Any]) -> str | None:
    from pipeline.evaluate.comparison import verdict_of  # scipy: only where there is a file

    try:
        return verdict_of(dict(comp))
    except (TypeError, ValueError, KeyError):  # a damaged file: the table stands without it
        return None


def section_problems(run: Run, run_ref: str | None = None) -> dict[str, str]:
    """{file: one line naming it, what is wrong, what results.md leaves out and the command
    that rebuilds it} for each of comparison.json, robustness.json and flags.json that is
    there but unusable. Such a file's section was dropped as if the run had none, without a
    word (a review): `figures` warns with these lines and results.md ends with them."""
    from pipeline.artifacts import ArtifactError, shown_path
    from pipeline.gaps import fix_command, to_fix

    checks = (  # file, what results.md leaves out without it, its usable test, its command
        (run_files.COMPARISON, "the intervals, the paired test and the pooled answer",
         lambda: isinstance(_dict(run.read_json(run_files.COMPARISON)).get("models"), list),
         ("evaluate",)),
        (run_files.ROBUSTNESS, "the robustness section", lambda: robustness_section(run),
         ("evaluate", "--robustness")),
        (FLAGS_FILE, "the warnings' section", lambda: flag_table(
            _dict(run.read_json(FLAGS_FILE))), ("ood",)),
    )
    out = {}
    for rel, lost, usable, command in checks:
        if not (run.path / rel).is_file():
            continue  # not measured: nothing to say
        fix = (f"python -m pipeline {command[0]} --run {run_ref} {' '.join(command[1:])}".strip()
               if run_ref else fix_command(run, *command))
        try:
            ok = usable()
            problem = f"damaged file {shown_path(run.path / rel)}: not what it should hold"
        except ArtifactError as exc:
            ok, problem = False, str(exc)
        if not ok:
            out[rel] = to_fix(f"{problem}; results.md leaves out {lost}", fix)
    return out


def results_markdown(run: Run, run_ref: str | None = None) -> str:
    """The whole results.md of a run: header, test table, then robustness, warnings and
    external folders where the run has them, and last what a damaged file left out
    (`section_problems`). `run_ref`: how a fix names the run (the CLI's `--run`), default
    `gaps.run_arg`."""
    table = results_table(run, run_ref)
    parts = [header(run), f"## Test set ({test_set_kind(run)})\n", table]
    parts += [s for s in (together_section(run), robustness_section(run),
                          warnings_section(run), external_section(run)) if s]
    if problems := section_problems(run, run_ref):
        parts.append("## Left out\n\n" + "\n".join(f"- {_cell(line)}"
                                                     for line in problems.values()) + "\n")
    return "\n".join(parts)

