"""What a command that reads many files says about the ones it could not use: files skipped or
given twice (`report_inputs`), unreadable files and a series' blank slices as they come
(`unreadable_report`), and whether any file went unanswered (`unanswered`). Shared by
`predict` and `explain` (split out of `cli.common`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from pipeline.cli.common import err, shown

if TYPE_CHECKING:
    from pipeline.stream import Inputs


def report_inputs(inputs: Inputs) -> None:
    """One stderr line each for the files of the folders given that are not read (not images
    by name, nor DICOM by content) and for files given more than once (read once): both were
    silent, so a folder's count of answers could not be checked."""
    if inputs.skipped:
        names = ", ".join(shown(p.name) for p in inputs.skipped[:3])
        more = ", …" if len(inputs.skipped) > 3 else ""
        err.print(f"skipped {len(inputs.skipped)} file(s) in folders that are not images by "
                  f"name ({names}{more})", highlight=False, soft_wrap=True)
    if inputs.repeated:
        # the kept name beside a dropped one: through a symlink the two names differ, and the
        # answer stands under the kept one only
        names = ", ".join(shown(p.name) if p.name == kept.name else
                          f"{shown(p.name)} as {shown(kept.name)}"
                          for p, kept in inputs.repeated[:3])
        more = ", …" if len(inputs.repeated) > 3 else ""
        err.print(f"{len(inputs.repeated)} file(s) given more than once ({names}{more}): each "
                  "is read once", highlight=False, soft_wrap=True)


def _report_unreadable(path: str, reason: str) -> None:
    """One "cannot read" line on stderr for an image file that could not be decoded; a file
    with nothing to classify (`images.blank_failure`: a blank image, a series of blank slices)
    is said to be blank, without "cannot read": it was read."""
    from pipeline.images import blank_failure

    # ImageError messages already start with the file name; do not print it twice.
    # shown(): a name is user text, never rich markup, and stays on one line.
    line = reason if reason.startswith(f"{path}: ") else f"{path}: {reason}"
    lead = "" if blank_failure(reason) else "[red]cannot read[/] "
    err.print(f"{lead}{shown(line)}", highlight=False, soft_wrap=True)


def unanswered(failures: Sequence[tuple[str, str]]) -> bool:
    """Whether a file given has no answer, or a slice of one that is not blank: a series' blank
    slices (`images.blank_failure` "slice": the padding at its ends) are left out with a note,
    and alone never make `predict` or `explain` exit 1; a file that is blank throughout does."""
    from pipeline.images import blank_failure

    return any(blank_failure(reason) != "slice" for _, reason in failures)


class UnreadableReport:
    """`_report_unreadable` for a stream of failures, where the slices of one series failing
    one after another for one reason are one line ("scan.dcm · 64 frames (frame 1 to 100):
    <reason>"): a series whose pixel data cannot be decoded printed a line per slice, 64 of
    them. Each line is printed when the next failure or `close` shows its group has ended.
    A series whose slices all fail as blank is one line naming the file ("flat.dcm: all 3
    slices are blank ..."). A series' blank slices left out beside answered ones are one note
    per series, printed by `finish` ("scan.dcm: slices 1 and 5 of 5 are blank (almost all one
    grey level), not analysed"), as the dashboard says it (`series.blank_note`): they were a
    "cannot read" line each, and made the command exit 1."""

    def __init__(self) -> None:
        # (file, unit, reason, the slices' numbers, the first failure)
        self._group: tuple[str, str, str, list[int], tuple[str, str]] | None = None
        # file -> (unit, the file's count, its blank slices' numbers), in order met
        self._blank: dict[str, tuple[str, int, list[int]]] = {}

    def __call__(self, path: str, reason: str) -> None:
        from pipeline.images import blank_failure
        from pipeline.series import parse_slice_name

        cut = reason.removeprefix(f"{path}: ")
        part = parse_slice_name(path)
        if part and blank_failure(reason) == "slice":
            self._blank.setdefault(part.file, (part.unit, part.total, []))[2].append(part.number)
            return
        g = self._group
        if part and g and (part.file, part.unit, cut) == g[:3]:
            g[3].append(part.number)
            return
        self.close()
        if part is None:
            _report_unreadable(path, reason)
        else:
            self._group = (part.file, part.unit, cut, [part.number], (path, reason))

    def close(self) -> None:
        """Print the group held back, if any."""
        g, self._group = self._group, None
        if g is None:
            return
        from pipeline.images import blank_failure
        from pipeline.series import places_words

        file, unit, cut, numbers, one = g
        if blank_failure(cut) == "file":  # the whole file is blank: said of the file
            _report_unreadable(file, cut)
        elif len(numbers) == 1:
            _report_unreadable(*one)
        else:  # "slices 1 and 5" (a blank slice each end) was "slice 1 to 5", read as a run,
            # and "8 slices (slice 1 to 20)" as 20 (a review): the places, or their run
            _report_unreadable(f"{file} · {len(numbers)} {unit}s "
                               f"({places_words(unit, numbers)})", cut)

    def finish(self) -> None:
        """`close`, then one note per series whose blank slices were left out."""
        from pipeline.series import blank_note

        self.close()
        blank, self._blank = self._blank, {}
        for file, (unit, total, numbers) in blank.items():
            err.print(shown(f"{file}: {blank_note(unit, sorted(numbers), total)}"),
                      highlight=False, soft_wrap=True)


@contextlib.contextmanager
def unreadable_report() -> Iterator[UnreadableReport]:
    """An `UnreadableReport` whose last group and blank-slice notes are printed on the way
    out, whatever happens."""
    report = UnreadableReport()
    try:
        yield report
    finally:
        report.finish()
