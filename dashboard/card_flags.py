"""Good image j's warnings, worked out from the dashboard's `Results` without drawing
anything: about its answers (`flags.answer_flags`) and about its heatmaps (evidence mostly
outside the head, an empty map, the two models' default maps far apart). The card, its PDF
page, the overlay's download, the Predict page's summary table and the series view all take
them from here.
"""

from __future__ import annotations

from collections.abc import Sequence

from dashboard import figures as F
from dashboard import flags
from dashboard.inference import Results
from pipeline.data.membership import hides_unlike
from pipeline.evaluate.flags import FLAG_LABELS, far_label
from pipeline.explain import agreement
from pipeline.explain.alarm import OUTSIDE_HEAD_MESSAGE, outside_share_words
from pipeline.explain.render import heatmap_stats


def image_flags(results: Results, j: int) -> tuple[list[str], list[str]]:
    """Good image j's flags in plain words: about its answers (a colour image, weak, unlike the
    training data, disagreement) and about its heatmaps (evidence mostly outside the head, or
    none at all, or the two models' maps far apart)."""
    size = results.image_sizes[j] if j < len(results.image_sizes) else None
    colour = j < len(results.colour) and results.colour[j]
    # an image the models trained (or were validated) on, pixel for pixel, is not "unlike the
    # training data", whatever the score says: the card's note says where it was met instead
    own = j < len(results.seen_split) and hides_unlike(results.seen_split[j], True)
    answers = flags.answer_flags(results.probs, j, results.low_below,
                                 {} if own else results.unlike(j),
                                 results.shifted_accuracy, results.class_names, size,
                                 results.by_size, results.flag_accuracy, colour,
                                 results.tumour_records,
                                 ct=j < len(results.ct) and results.ct[j],
                                 photo=j < len(results.photo) and results.photo[j],
                                 t2=j < len(results.t2) and bool(results.t2[j]),
                                 sartaj=results.sartaj, input_sides=input_sides(results, j))
    shortcuts = [flags.Flag(f"{F.model_label(m)}: {OUTSIDE_HEAD_MESSAGE} "
                            f"({outside_share_words(rs[j].outside_head)}).", "outside_head", [m])
                 for m, rs in results.per_model.items() if rs[j].outside_head_flag]
    shortcuts += [flags.Flag(f"{F.model_label(m)}: the heatmap is empty (no positive evidence "
                             "for the explained class).", "empty", [m])
                  for m, rs in results.per_model.items() if rs[j].empty]
    apart = heatmaps_apart(results, j)
    if apart is not None:
        shortcuts.append(flags.Flag(agreement.apart_sentence(apart, results.apart_record),
                                    "apart", list(results.per_model)))
    return answers, shortcuts


def input_sides(results: Results, j: int) -> list[int]:
    """Each model's input side, from good image j's prepared input (`modality.is_small`)."""
    return [int(rs[j].prepared.shape[0]) for rs in results.per_model.values() if j < len(rs)]


def heatmaps_apart(results: Results, j: int) -> float | None:
    """How far apart good image j's two heatmaps peak, when the two-heatmap rule applies and
    finds them apart (`agreement.maps_apart`), else None."""
    return agreement.maps_apart([
        agreement.MapFacts(heatmap_stats(rs[j].heatmap)["peak"],
                           results.class_names[rs[j].target]
                           if rs[j].target < len(results.class_names) else "",
                           rs[j].default, rs[j].crop)
        for rs in results.per_model.values()])


def withheld(warnings: Sequence[object]) -> str:
    """The label of the first of an image's warnings that says it may be no brain MRI
    (`flags.NOT_MRI_KINDS`: "may be CT, not MRI"), whose card folds the answers behind "Show
    the answers anyway"; "" for an image without one. The summary table and the PDF page say it
    where they show (or hide) those answers: both printed a CT slice's confident "no tumour"
    that its card hid (a review)."""
    for f in warnings:
        kind = getattr(f, "kind", "")
        if kind == "far":  # per model: whose verdict folds every answer (`far_label`)
            return far_label([m for g in warnings if getattr(g, "kind", "") == "far"
                              for m in g.models])
        if kind in flags.NOT_MRI_KINDS:
            return FLAG_LABELS[kind]
    return ""
