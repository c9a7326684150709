"""What every command shares: the typer `app`, the stderr console, one-line errors, progress
bars, JSON output, and the checks of folders, model lists and `--target`."""

from __future__ import annotations

import contextlib
import datetime
import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer
from rich import progress as rich_progress
from rich.console import Console

from pipeline import signals
from pipeline.explain import METHODS
from pipeline.names import DEFAULT_MODELS, MODEL_NAMES, Progress, model_words, one_line

if TYPE_CHECKING:
    from pipeline.artifacts import Run

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Brain-tumour MRI classifiers with explanations. Research/teaching only, not diagnosis.",
)
err = Console(stderr=True)
T = TypeVar("T")
_option_type = typer.core.TyperOption.display_type_rich


def _flag_type(self: typer.core.TyperOption, ctx: Any) -> str | None:
    """An option's type in `--help`, none for a flag: typer showed `--json <bool>`, read as an
    option taking a value (`--json true` is refused as an extra argument)."""
    return None if self.is_flag else _option_type(self, ctx)


typer.core.TyperOption.display_type_rich = _flag_type  # every command's help, `--help` too




def shown(text: object) -> str:
    """`one_line(text)` with rich markup escaped: a file called `[/].png` is printed, not parsed."""
    from rich.markup import escape

    return escape(one_line(text))


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `error: <message>` as one line on stderr and exit with `code` (2: usage error)."""
    err.print(f"[bold red]error:[/] {shown(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


# Where stderr is no terminal (a log file, Slurm, nohup), rich draws its bar only when the work
# ends: a plain line says how far the work is at most this often (the first after as long)
PLAIN_PROGRESS_EVERY_S = 30.0


@contextlib.contextmanager
def progress_bar(enabled: bool = True, bar: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> Iterator[Progress]:
    """Yield a callback `update(description, done, total)` drawing a rich progress bar on stderr
    (`bar` False: none; `predict` and `audit` draw one only on a terminal).

    The bar starts with its first update: started at once, a command that failed before any
    (an empty data folder) printed a blank line above its one-line error. Each update also
    raises an interrupt that was dropped on its way (`signals.check`), bar or not: every long
    loop reports progress. Where stderr is no terminal, a plain line ("explain: 120/2870 (4%),
    0:01:02 elapsed") every `PLAIN_PROGRESS_EVERY_S` seconds (`clock`) says how far the work
    is: rich draws its bar only at the end there, and a review's log (`predict 2>log`, as a
    Slurm job's) stayed empty for minutes."""
    if not enabled:
        yield lambda desc, done, total: signals.check()
        return
    prog: rich_progress.Progress | None = None
    tasks: dict[str, int] = {}
    started: float | None = None
    said = 0.0

    def update(desc: str, done: int, total: int) -> None:
        nonlocal prog, started, said
        signals.check()
        if not err.is_terminal:
            now = clock()
            if started is None:
                started = said = now
            if now - said >= PLAIN_PROGRESS_EVERY_S:
                said = now
                share = f" ({done / total:.0%})" if total else ""
                spent = datetime.timedelta(seconds=round(now - started))
                err.print(f"{desc}: {done}/{total}{share}, {spent} elapsed", highlight=False,
                          markup=False, soft_wrap=True)
        if not bar:
            return
        if prog is None:
            prog = rich_progress.Progress(
                rich_progress.TextColumn("{task.description}"), rich_progress.BarColumn(),
                rich_progress.MofNCompleteColumn(), rich_progress.TimeElapsedColumn(),
                console=err, transient=False)
            prog.start()
        if desc not in tasks:
            tasks[desc] = prog.add_task(desc, total=total)
        prog.update(tasks[desc], completed=done, total=total)

    try:
        yield update
    finally:
        if prog is not None:
            prog.stop()


def print_json(obj: object) -> None:
    """Print `obj` as indented JSON on stdout (non-JSON values such as paths as strings)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def say(message: str) -> None:
    """A stage's progress message, as it is, on stderr (the `say` callback of long stages):
    no markup, since messages carry folder and file names."""
    err.print(message, highlight=False, markup=False)


def warning_tags(answer: dict, seen: set[str]) -> str:
    """" [weak answer (low confidence)] [unlike the training data]": the warnings raised on one
    model's `answer` (its `photo` / `colour` / `weak` / `unlike` keys, `raised_flags`), in the
    dashboard's words; adds them to `seen` for `warning_legend`."""
    from pipeline.evaluate.flags import FLAG_LABELS, raised_flags

    raised = raised_flags(answer)
    seen.update(raised)
    return "".join(f" [{FLAG_LABELS[k]}]" for k in raised)


def far_tag(row: Mapping[str, Any], own: bool) -> list[str]:
    """["[far unlike Custom CNN's training data]"]: the image's tag when a model finds it far
    unlike its training data (`ood.FAR`, `evaluate.flags.far_label`), as the dashboard's card
    withholds every answer then; the other model's and the pooled answer went untagged (a
    review). [] without one, or for the run's own image (`own`, `membership.hides_unlike`)."""
    from pipeline.evaluate.flags import far_label

    far = [m for m, v in row["models"].items() if v.get("far")]
    return [f"[{far_label(far)}]"] if far and not own else []


def pooled_part(row: Mapping[str, Any], folders: Mapping[str, list[str]] | None,
                seen: set[str]) -> list[str]:
    """["averaged: glioma (84%) [weak answer (low confidence)]"]: the models' answer together
    (`evaluate.together`, a row's "together"), the field `predict` and `explain` print after
    the models', "[neither model's answer]" where it is a class no model answered
    (`together.neither`); [] for a row without one (one model)."""
    from pipeline.cli.class_folders import answer_words
    from pipeline.names import NEITHER_WORDS, TOGETHER_COLUMN, percent

    pooled = row.get("together")
    if not pooled:
        return []
    # a model's answer: predict's "label", explain's "predicted"
    third = all(m.get("label", m.get("predicted")) != pooled["label"]
                for m in (row.get("models") or {}).values())
    return [f"{TOGETHER_COLUMN}: {answer_words(pooled['label'], folders or {}, seen)} "
            f"({percent(max(pooled['probs'].values()))})"
            + warning_tags({"weak": pooled.get("weak")}, seen)
            + (f" [{NEITHER_WORDS}]" if third else "")]


def warning_legend(seen: set[str], splits: set[str] | frozenset[str] = frozenset(),
                   answered: bool = True, sartaj: bool = False, n_models: int = 2,
                   extra: Sequence[str] = ()) -> None:
    """One line on stderr per warning in `seen` saying what it means, in a fixed order, one
    for "no tumour" answers when `seen` holds `names.NO_TUMOR` (never a rule-out), one per
    split of the run that answered images were found in (`splits`, `data.membership`), then
    the disclaimer every answer comes with (the dashboard's and the PDF's; none without an
    answer, `answered` False). `splits`: the split tags printed (`membership.seen_tag`: the
    image itself or a near copy), or bare split names. `sartaj`: the run was trained on the
    Sartaj data (`known_data.trained_on_sartaj`), whose facts the lines may then state.
    `n_models`: how many models the run has, the lines' number as About's ("the model
    learnt…, so its answer" for a run of one). `extra`: lines of the command's own tags, said
    before the disclaimer."""
    from pipeline.data.membership import SEEN_TAGS, seen_meaning, seen_tag
    from pipeline.evaluate.flags import FLAG_LABELS, FLAG_MEANINGS, flag_meaning, no_tumour_caution
    from pipeline.names import DISCLAIMER, NO_TUMOR

    lines = [f"[{FLAG_LABELS[k]}]: {flag_meaning(k, sartaj, n_models)}." for k in FLAG_MEANINGS
             if k in seen]
    if NO_TUMOR in seen:  # any answer was "no tumour": never a rule-out
        lines.append(f"{NO_TUMOR}: {no_tumour_caution(sartaj)}.")
    for k in SEEN_TAGS:  # a split's tags (the image, a near copy) printed: what they mean
        tags = [t for t in (seen_tag(k, None), seen_tag(k, False)) if t in splits or k in splits]
        if tags:  # "a near copy" had no line of its own (a review)
            lines.append(f"{', '.join(tags) if len(tags) > 1 else tags[0]}: "
                         f"{seen_meaning(k, n_models)}.")
    lines += extra
    for line in [*lines, DISCLAIMER] if answered else lines:
        err.print(line, highlight=False, markup=False, soft_wrap=True)


def report_gaps(gaps: Sequence[object]) -> None:
    """One "note:" line on stderr per check the run's answers go without (`gaps`), before any
    answer: a missing file used to drop its warning silently."""
    for gap in gaps:
        err.print(f"note: {gap}", highlight=False, markup=False, soft_wrap=True)


def report_unavailable_hints() -> None:
    """A "note:" line on stderr when the T2/FLAIR hint cannot run here
    (`sequence.unavailable`: no ImageNet weights), so that its silence is not read as "T1"."""
    from pipeline import sequence
    from pipeline.evaluate.flags import FLAG_LABELS

    if why := sequence.unavailable():
        err.print(f"note: no image is marked \"{FLAG_LABELS['t2']}\": {why}",
                  highlight=False, markup=False, soft_wrap=True)


def some_named(names: Sequence[str], total: int | None = None, shown_n: int = 3) -> str:
    """"a.png, b.png, c.png and 6 more": the first few of `names` (escaped for rich), and how
    many of `total` (default: all of them) are left unsaid."""
    names = [shown(n) for n in names]
    total = len(names) if total is None else max(total, len(names))
    listed = names[:shown_n] if total > shown_n + 1 else names
    more = total - len(listed)
    parts = [*listed, f"{more} more"] if more else listed
    return ", ".join(parts[:-1]) + f" and {parts[-1]}" if len(parts) > 1 else "".join(parts)


def plural(n: int, word: str, words: str | None = None) -> str:
    """"1 image", "9 images": `n` and the word in its number (`words`: an irregular plural)."""
    return f"{n} {word if n == 1 else words or word + 's'}"


def report_source(src: dict, n_models: int = 2) -> None:
    """The warnings about an external data folder, on stderr, said alike by evaluate and
    explain-eval (their JSON's `source`), before their figures: images the run trained or
    was validated on, or copies of them (`evaluate.external.training_overlap`), or that this
    could not be checked, and the official-`Testing/` run to use instead; classes the run does
    not know, folders with no known class name (`data.ignored_note`), series files not scored
    (`evaluate.external.series_line`). `n_models`: the models evaluated ("the model met
    them" for one)."""
    from pipeline.data.discovery import ignored_note
    from pipeline.evaluate.external import series_line

    for line in overlap_lines(src.get("overlap_with_training") or {}, n_models):
        err.print(line, highlight=False, soft_wrap=True)
    if skipped := src.get("skipped_classes"):  # "pituitary (20 images)", not a dict's repr
        words = ", ".join(f"{shown(c)} ({plural(n, 'image')})" if isinstance(n, int)
                          else shown(c) for c, n in dict(skipped).items())
        err.print(f"[yellow]skipped classes the run does not know:[/] {words}", highlight=False)
    if note := ignored_note(src.get("ignored_folders") or []):
        err.print(f"[yellow]{shown(note)}[/]", highlight=False, soft_wrap=True)
    if line := series_line(src.get("skipped_series")):
        err.print(f"[yellow]{line}[/]", highlight=False, soft_wrap=True)


def overlap_lines(overlap: dict, n_models: int = 2) -> list[str]:
    """`report_source`'s lines (rich markup, user text escaped) for an `overlap_with_training`,
    said of `n_models` models (`names.model_words`)."""
    if not overlap:
        return []
    if not overlap.get("checked"):
        return [f"[yellow]warning:[/] the images were not checked against the run's own: "
                f"{shown(overlap.get('reason', ''))}"]
    splits, n_seen = overlap.get("splits") or {}, int(overlap.get("n_seen") or 0)
    lines = []
    if n_seen:
        parts = [f"{sum(splits[s].values())} {word}" for s, word in
                 (("train", "training"), ("val", "validation")) if sum(splits[s].values())]
        near = sum(splits[s]["near"] for s in ("train", "val"))
        copies = "a changed copy" if near == 1 else "changed copies"
        how = f"; {near} of them {copies} (re-encoded, resized or mirrored)" if near else ""
        lines.append(f"[yellow]warning:[/] {n_seen} of these {n_seen + overlap['n_new']} images "
                     f"are in the run's training or validation split ({', '.join(parts)}{how}): "
                     "the {models} met them, so {their} scores are not independent"
                     .format(**model_words(n_models)))
    if overlap.get("n_new"):
        from pipeline.evaluate.external import NOT_FOUND_NOTE

        lines.append(f"note: {NOT_FOUND_NOTE}")
    if other := overlap.get("official_test_run"):
        title = f" ({shown(other['title'])})" if other.get("title") else ""
        lines.append(f"hint: {other['n_in_its_test']} of these images are in the test split of "
                     f"run {shown(other['run_id'])}{title}, which never trained on them: use "
                     f"--run {shown(other['run_id'])}")
    return lines


def keep_larger(path: Path, keys: tuple[str, ...], asked: int, what: str, fix: str, *,
                within: tuple[str, ...] = (), instead: str | None = None) -> None:
    """Fail before any work when the measurement in `path` (the first of `keys` it holds: its
    image count) covers more images than `asked`: a quick check with a small --max-images
    silently replaced a run's shipped measurement, which the dashboard and the docs show. `fix`
    may name the count as {n}. `within`: the keys leading to the measurement inside the file
    (one model's entry of a shared file). `instead`: the whole refusal when this call would
    measure something else than the file's measurement stands for (another method than the
    default), said whatever the counts. A missing or damaged file, or one without the entry,
    is no measurement to keep."""
    from pipeline.measured import held_measurement, images_measured

    if held_measurement(path, within) is None:
        return
    if instead is not None:
        fail(instead)
    n = images_measured(path, keys, within)
    if n is not None and n > asked:
        fail(f"{what} was measured on {n} images, this would use {asked}: "
             + fix.format(n=n))


# Two kinds of dataset option, one name each: `--data DIR` is a dataset the command reads as
# its input (train/run/tune/bench: what to train on; evaluate/explain-eval: another folder to
# evaluate on), `--run-data DIR` is where the dataset a run was trained on is now, if it moved
# (calibrate, ood, evaluate, explain-choose, explain-eval: they read the run's own splits from
# it). Both were "--data" or "--data-root" here and there; the old spellings stay as hidden
# aliases (explain-eval's --data still reads a folder holding the run's test split as its own).
RUN_DATA_HELP = ("where the dataset this run was trained on is now, if it moved since training "
                 "(default: the folder recorded in the run)")


def renamed(value: T | None, old: T | None, name: str, old_name: str) -> T | None:
    """An option's value given under its name or under its old, hidden spelling (`old_name`),
    which keeps scripts and notes written before the rename working; both at once: fail."""
    if old is None:
        return value
    if value is not None and value != old:
        fail(f"{old_name} is the old name of {name}: give it once")
    return old


def as_given(path: str | Path) -> str:
    """A path to print, as the user gave it: a relative one as it is, an absolute one inside the
    current folder relative to it (a header showed /home/<user>/... for `audit data/x`)."""
    p = Path(path)
    if p.is_absolute():
        with contextlib.suppress(ValueError):
            return p.relative_to(Path.cwd()).as_posix() or "."
    return one_line(p)


def artifacts_option(*names: str, help: str = "artifacts folder") -> Any:  # noqa: A002
    """A command's artifacts-folder option (`--artifacts`, or `names`): `artifacts` unless
    `$BRAIN_MRI_ARTIFACTS` (`artifacts.ARTIFACTS_ENV`, which the dashboard reads) names
    another, so `--run latest` and run ids are looked up where the dashboard finds them."""
    from pipeline.artifacts import ARTIFACTS_ENV, DEFAULT_ARTIFACTS

    return typer.Option(DEFAULT_ARTIFACTS, *(names or ("--artifacts",)), envvar=ARTIFACTS_ENV,
                        help=help)


def _existing_dir(path: Path, what: str) -> Path:
    """`path` if it is a folder, else fail: "<what> <path> does not exist" / "is not a folder"."""
    if not path.exists():
        fail(f"{what} {path} does not exist")
    if not path.is_dir():
        fail(f"{what} {path} is not a folder")
    return path


def _open_run(artifacts_dir: Path, run: str) -> Run:
    """The complete run `run` (id, folder or "latest") in `artifacts_dir`; else fail in one line."""
    from pipeline.artifacts import ArtifactError, open_run, resolve_run

    try:
        return open_run(resolve_run(artifacts_dir, run))
    except ArtifactError as exc:
        fail(str(exc))


def run_ref(artifacts_dir: Path, run: str) -> str:
    """The run as the user named it, to quote in a fix command: `--run` as typed, with
    `--artifacts` when it matters (an id or "latest" looked up in another folder)."""
    import shlex

    from pipeline.artifacts import default_artifacts

    ref = shlex.quote(run)
    # the folder the same command finds without --artifacts ($BRAIN_MRI_ARTIFACTS or artifacts)
    if Path(run).is_dir() or artifacts_dir == default_artifacts():
        return ref
    return f"{ref} --artifacts {shlex.quote(str(artifacts_dir))}"


MODEL_HELP = (", ".join(MODEL_NAMES) + ", or all (= " + " + ".join(DEFAULT_MODELS) + ")")
# From the method registry (no TensorFlow import: pipeline.explain loads names on demand);
# explain and explain-eval add their own default.
METHOD_HELP = " | ".join(METHODS)


def _split_models(text: str) -> list[str]:
    """A comma-separated --model value -> its names, stripped, empty entries dropped."""
    return [m.strip() for m in text.split(",") if m.strip()]


def _model_list(model: str, known: Sequence[str] | None = None,
                everything: Sequence[str] = DEFAULT_MODELS, *, what: str = "model",
                hint: str = f"choose from {MODEL_HELP}") -> list[str]:
    """A --model value ("all" or a comma list) -> model names, each checked against `known`.

    "all" means `everything` (default: the default pair). `known` defaults to every registry
    model. An unknown or empty list fails with "unknown <what> <names>; <hint>".
    """
    if model == "all":
        return list(everything)
    if known is None:
        known = MODEL_NAMES
    names = _split_models(model)
    bad = [m for m in names if m not in known]
    if bad or not names:
        fail(f"unknown {what} {', '.join(bad) or model!r}; {hint}")
    return names


def _target_index(target: str | None, class_names: list[str],
                  folders: Mapping[str, list[str]] | None = None) -> int | None:
    """A --target given as a class name or index -> index (None = each image's prediction);
    on a run trained on class folders of other names (`folders`, `discovery.folders_by_class`),
    a folder's name too: `--target Healthy` for no_tumor, the name its user gave the class."""
    from pipeline.cli.class_folders import folder_class
    from pipeline.names import class_index

    try:
        return class_index(target, class_names)
    except ValueError as exc:  # same message, named after the option the user typed
        message = str(exc).replace("unknown class", "unknown --target", 1)
    hits = [c for c in folder_class(str(target), folders or {}) if c in class_names]
    if len(hits) == 1:
        return class_names.index(hits[0])
    if hits:  # one folder name for two classes: say which, never pick one
        fail(f"--target {target!r} names class folders of {' and '.join(hits)}: give the class "
             "name instead")
    if folders:  # the choices said include the run's own folder names
        named = ", ".join(f"{n} for {c}" for c, ns in folders.items() for n in ns)
        message += f", or a class folder of this run ({named})"
    fail(message)
