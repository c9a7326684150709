"""The Explanation-quality page's sentences that quote a run's own files: how faithfulness was
measured (what "removed" means, the step, n), ROAD, the sanity check's reading, the
centre-of-head baseline, the pointing game per true class and what the tumour boxes cover.
Pure functions of explanations.json (and counts the page passes in), so tests call them
directly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dashboard.figures.common import class_name, model_label
from dashboard.figures.quality import RANDOM_WORDS, SANITY_READING_LIMIT

# What deletion / insertion put in place of a removed pixel, per explanations.json `baseline`
# (pipeline.explain.metrics.baseline_image; tests check both name the same baselines).
BASELINE_WORDS = {
    "blur": "replaced by a blurred copy of the image (Gaussian, sigma a tenth of its side)",
    "black": "set to black",
}


def _per_model(explanations: Mapping[str, Mapping[str, Any]],
               value: Callable[[Mapping[str, Any]], str]) -> str:
    """`value` of each model's file: once when all agree, else "Custom CNN: a, MobileNetV2: b"."""
    shown = {m: value(e) for m, e in explanations.items()}
    if len(set(shown.values())) == 1:
        return next(iter(shown.values()))
    return ", ".join(f"{model_label(m)}: {v}" for m, v in shown.items())


def _count(e: Mapping[str, Any], key: str) -> str:
    n = e.get(key, e.get("n"))
    return str(n) if isinstance(n, int) else "?"


def faithfulness_caption(explanations: Mapping[str, Mapping[str, Any]],
                         n_classes: int | None = None) -> str:
    """The deletion / insertion caption: the question, then how it was measured, from the files
    (`baseline`, `steps`, `n_faithfulness`), and the chance line when the curves draw one."""
    def removed(e: Mapping[str, Any]) -> str:
        b = e.get("baseline")
        return BASELINE_WORDS.get(str(b), f"'{b}'") if b is not None else "not recorded"

    def step(e: Mapping[str, Any]) -> str:
        steps = e.get("steps")
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            return "not recorded"
        return f"{1 / steps:.0%} of the pixels at a time ({steps} steps)"

    text = ("Does the heatmap show what the model actually uses? Removing the pixels it ranks "
            "highest should make the prediction fall faster than removing random ones (lower "
            "deletion curve), and putting them back first should restore it faster (higher "
            "insertion curve); dotted or grey = random heatmaps. Removed = "
            f"{_per_model(explanations, removed)}; {_per_model(explanations, step)}; mean over "
            f"n = {_per_model(explanations, lambda e: _count(e, 'n_faithfulness'))} test images.")
    if n_classes:
        text += (f" Dashed line: chance, 1/{n_classes} = {1 / n_classes:.2f}, the probability "
                 f"of a guess among the {n_classes} classes.")
    return text


def road_caption(explanations: Mapping[str, Mapping[str, Any]]) -> str:
    """ROAD's one-paragraph explanation with its removal shares and n, from the files."""
    def shares(e: Mapping[str, Any]) -> str:
        xs = [x for x in e.get("road_fractions") or [] if isinstance(x, (int, float)) and x > 0]
        return ", ".join(f"{x:.0%}" for x in xs) if xs else "not recorded"

    return ("ROAD (remove and debias, Rong et al. 2022): the same removal, but each removed "
            "pixel is filled by noisy linear imputation (the mean of its neighbours plus a "
            "little noise), so the shape of the removed region carries no signal the model "
            "could react to. Bars: the mean area under the probability of the explained class "
            f"as {_per_model(explanations, shares)} of the pixels are removed, on "
            f"n = {_per_model(explanations, lambda e: _count(e, 'n_faithfulness'))} test "
            "images. Most relevant first (MoRF) should fall fast (low), least relevant first "
            "(LeRF) should hold (high): the larger the gap LeRF − MoRF, the more faithful the "
            "heatmap.")


def sanity_caption(explanations: Mapping[str, Mapping[str, Any]]) -> str:
    """The sanity check's caption: n, what is randomised and the reading line with its source."""
    n = _per_model(explanations, lambda e: _count(e, "n_faithfulness"))
    return ("Does the heatmap depend on what the model learned? Each image's heatmap is compared "
            "(Spearman rank correlation, mean over n = " + n + " test images) with the heatmap "
            "of a copy of the model whose weights were all re-initialised (full randomisation: "
            "every layer at once, not the cascade one layer at a time). Near 0 is good; near 1 "
            "means the map only reflects the image itself (an edge detector, not an "
            f"explanation). Dashed lines at ±{SANITY_READING_LIMIT:g}: this project's rule of "
            "thumb (Cohen's conventional border between a small and a medium correlation); "
            "Adebayo et al. (2018), who proposed the test, give no numeric threshold.")


def sanity_reading(explanations: Mapping[str, Mapping[str, Any]]) -> str | None:
    """A sentence naming the models whose mean correlation, or mean correlation ignoring its
    sign (`sanity_abs_rank_correlation`: in the plain mean, images of opposite signs cancel),
    is at or beyond the reading line; None when every measured one is inside it."""
    def number(e: Mapping[str, Any], key: str) -> float | None:
        v = e.get(key)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    beyond = []
    for m, e in explanations.items():
        mean, size = number(e, "sanity_rank_correlation"), number(e, "sanity_abs_rank_correlation")
        if mean is not None and abs(mean) >= SANITY_READING_LIMIT:
            beyond.append(f"{model_label(m)}: {mean:.2f}")
        elif size is not None and size >= SANITY_READING_LIMIT:
            beyond.append(f"{model_label(m)}: {size:.2f} ignoring sign (mean "
                          f"{mean if mean is not None else float('nan'):.2f})")
    if not beyond:
        return None
    return ("; ".join(beyond)
            + f", at or beyond the rule of thumb (±{SANITY_READING_LIMIT:g}): part of what "
            "these maps show is the image itself, whatever the model learned.")


def centre_sentence(explanations: Mapping[str, Mapping[str, Any]]) -> str | None:
    """What the centre-of-head baseline scores on the boxed images, in words and counts; None
    for files explained before it was measured."""
    def hits(e: Mapping[str, Any]) -> str:
        share, n = e["pointing_game_centre"], e.get("n_localisation")
        count = f" ({round(share * n)} of {n})" if isinstance(n, int) and n > 0 else ""
        return f"{share:.0%}{count}"

    measured = {m: e for m, e in explanations.items()
                if isinstance(e.get("pointing_game_centre"), (int, float))}
    if not measured:
        return None
    return ("A map that always points at the centre of the head would hit the box on "
            f"{_per_model(measured, hits)} of the boxed images; a {RANDOM_WORDS.split(' (')[0]} "
            f"on {_per_model(measured, lambda e: _share(e.get('pointing_game_chance')))}. A "
            "heatmap's pointing game means something only well above both.")


def class_pointing_counts(rows: Any) -> dict[str, tuple[int, int]]:
    """Per true class, (peaks in the mask, images with a mask) from explanations.json's
    per-image `rows`; {} without such rows (a file written before them)."""
    counts: dict[str, tuple[int, int]] = {}
    for r in rows or []:
        hit = r.get("pointing_hit") if isinstance(r, Mapping) else None
        if isinstance(hit, bool) and isinstance(r.get("label"), str):
            h, n = counts.get(r["label"], (0, 0))
            counts[r["label"]] = (h + hit, n + 1)
    return counts


def class_pointing_sentence(explanations: Mapping[str, Mapping[str, Any]],
                            region: str = "box") -> str | None:
    """The pointing game per true class, in counts, from each file's per-image `rows` (images
    with a mask only): where a model's heatmaps can be trusted less. `region`: what the masks
    are, "box" for tumour boxes, "mask" for drawn tumours (the phantoms), as the page says it.
    On the shipped main-split run the custom CNN's default hit 75 of 124 boxed gliomas against
    95 of 101 meningiomas, a gap the overall figure hides. None when no file has such rows
    (files written before them)."""
    parts = []
    for m, e in explanations.items():
        counts = class_pointing_counts(e.get("rows"))
        if counts:
            shown = ", ".join(f"{class_name(k)} {h} of {n} ({h / n:.0%})"
                              for k, (h, n) in sorted(counts.items()))
            parts.append(f"{model_label(m)}: {shown}")
    if not parts:
        return None
    return (f"Heatmap peak in the {region}, by the image's true class: " + "; ".join(parts) + ". "
            "Where one class's share is well below the others', read that class's heatmaps "
            "with more care.")


def relabelled_sentence(explanations: Mapping[str, Mapping[str, Any]],
                        relabelled: Mapping[str, str], source: str | None) -> str | None:
    """What the per-class figures mean where the boxes' source files a boxed test image under
    another class than the dataset's folder does (`BoxFacts.relabelled`): on the official
    `Testing/` run all 10 boxed "pituitary" images are figshare meningiomas (an explanation
    review), so that class's pointing game was measured on meningiomas, explaining "pituitary".
    None when no localised image of any model is such an image."""
    groups: dict[tuple[str, str], set[str]] = {}
    boxed: dict[str, set[str]] = {}
    for e in explanations.values():
        for r in e.get("rows") or []:
            if not (isinstance(r, Mapping) and isinstance(r.get("pointing_hit"), bool)
                    and isinstance(r.get("path"), str) and isinstance(r.get("label"), str)):
                continue
            boxed.setdefault(r["label"], set()).add(r["path"])
            other = relabelled.get(r["path"])
            if other and other != r["label"]:
                groups.setdefault((r["label"], other), set()).add(r["path"])
    if not groups:
        return None
    where = f"the boxes' source ({source})" if source else "the boxes' source"
    parts = [f"{len(paths)} of the {len(boxed[label])} boxed test images filed as "
             f"{class_name(label)} are {class_name(other)} slices"
             for (label, other), paths in sorted(groups.items())]
    whole = all(len(paths) == len(boxed[label]) for (label, _), paths in groups.items())
    figure = "that class's figure above is" if len(groups) == 1 else "those figures above are"
    return (f"In {where}, " + "; ".join(parts) + ": the dataset's label noise. Their heatmaps "
            f"explain the folder's class, so {figure} {'' if whole else 'partly '}measured on "
            "another tumour type.")


def _share(value: Any) -> str:
    return f"{value:.0%}" if isinstance(value, (int, float)) else "?"


def box_coverage_sentence(explanations: Mapping[str, Mapping[str, Any]], tumour_test: int,
                          source: str | None = None,
                          train_boxed: tuple[int, int] | None = None) -> str | None:
    """What the boxes cover: of the `tumour_test` tumour images of the test split, how many
    were scored for localisation, their image sizes (`localisation_image_sizes`), and, with
    `source` (the collection the boxes were matched to) and `train_boxed` (boxed, all) training
    tumour images, that they come from the training tumours' own collection. None when every
    tumour image was scored or nothing was."""
    ks = {e.get("n_localisation") for e in explanations.values()}
    ks.discard(None)
    if not ks or tumour_test <= 0 or min(ks) >= tumour_test or max(ks) == 0:
        return None
    k = _per_model(explanations, lambda e: str(e.get("n_localisation", "?")))
    text = f"Only {k} of the test split's {tumour_test} tumour images have a box"
    sizes = {size for e in explanations.values()
             for size in (e.get("localisation_image_sizes") or {})}
    if len(sizes) == 1:
        text += f", all {next(iter(sizes))} pixels"
    if source:
        text += f", and every box comes from a match with the {source} collection"
        if train_boxed and train_boxed[1] > 0:
            text += (f", the collection {train_boxed[0]} of the {train_boxed[1]} "
                     f"({train_boxed[0] / train_boxed[1]:.0%}) training tumour images were "
                     "matched to")
    return (text + ". These figures do not show how the maps behave on the test images from "
            "other sources, which have no box.")
