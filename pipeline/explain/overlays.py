"""Explain one list of decoded images with every model of a run and write the overlay PNGs.

`write_overlays` is the per-chunk work of `explain.batch.explain_files`: each model's
explanation, prediction and answer warnings (`answer_warners`, built once per command), the
shortcut alarm, and one overlay per image and model, named by `overlay_text.overlay_bases`.
Split from `explain.batch`, which keeps the chunk loop, journal, resume and shards.

Overlays are captioned by default (`render.captioned_overlay`: enlarged to at least
`render.CAPTION_MIN_SIDE` px, a strip saying the model, its answer, the method and class the
heatmap explains, a colour scale and the disclaimer), so a PNG can go on a slide or in a
report as it is; `caption=False` (--bare) writes `render_overlay` at the model's resolution,
for further processing. The file names are the same either way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import sequence
from pipeline.artifacts import Run, crop_head
from pipeline.data.discovery import folders_by_class
from pipeline.data.membership import Membership
from pipeline.explain.agreement import MapFacts, maps_apart
from pipeline.explain.defaults import is_default
from pipeline.explain.explainer import Explainer, Explanation
from pipeline.explain.masks import head_mask_in_frame
from pipeline.explain.metrics import (
    energy_outside_head,
    outside_head_flag,
    top_outside_head,
)
from pipeline.explain.overlay_text import (
    overlay_bases,
    overlay_caption,
    overlay_entry,
    overlay_name,
    overlay_note,
)
from pipeline.explain.render import (
    CAPTION_BACKGROUND,
    CAPTION_MIN_SIDE,
    captioned_overlay,
    peak_words,
    render_overlay,
    to_png,
)
from pipeline.geometry import prepare_image
from pipeline.names import Progress, no_progress


@dataclass
class Warners:
    """What the answers' warnings need, as `predict` gives them. `models`: per model the
    confidence under which an answer is weak and the "unlike the training data" scorer, each
    None where the run does not measure it; `membership`: the run's split hashes
    (`data.membership`), None for a run without them."""

    models: dict[str, tuple[float | None, Callable[[np.ndarray], np.ndarray] | None]]
    membership: Membership | None


def answer_warners(run: Run, explainers: dict[str, Explainer]) -> Warners:
    """The `Warners` of `run` for these models. Built once per command: each scorer traces a
    graph, and the split hashes are read once."""
    from pipeline.calibration import read_calibration
    from pipeline.ood import unlike_scorer

    # a damaged calibration.json or ood.npz turns that model's check off, as a missing one
    # does; explain says so before any answer (gaps.missing_checks)
    below = read_calibration(run.path, list(explainers))[1]
    return Warners({name: (below.get(name), unlike_scorer(run.path, name, ex.model))
                    for name, ex in explainers.items()}, Membership.of_run(run.path))


def _pooled(run: Run, shown: dict[str, np.ndarray]) -> list[dict[str, Any]] | None:
    """Per image, the models' answer together as `predict` gives it (`evaluate.together`: their
    shown probabilities pooled with the run's pool temperature, weak under its threshold);
    None for one model explained."""
    if len(shown) < 2:
        return None
    from pipeline.evaluate import together

    t, below = together.read_pool(run.path)
    out = []
    for p in together.combine(shown, t):
        weak = None if below is None else bool(p.max() < below)
        out.append({"label": run.class_names[int(np.argmax(p))], "weak": weak,
                    "probs": dict(zip(run.class_names, (float(v) for v in p), strict=True))})
    return out


def write_overlays(run: Run, explainers: dict[str, Explainer],
                   decoded: list[tuple[Path, np.ndarray]], out: Path, *, method: str | None,
                   target: int | None, alpha: float, outline: float | None,
                   caption: bool = True, side: int = CAPTION_MIN_SIDE,
                   progress: Progress = no_progress,
                   bases: list[str] | None = None,
                   warners: Warners | None = None,
                   radiological: list[bool] | None = None,
                   headers: list[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Explain every image with every model, write one overlay PNG each into `out`: captioned
    (`overlay_caption`, `captioned_overlay`, at least `side` px on the shorter side, its caption
    scaled with it), or with `caption` False the bare `render_overlay` at the model's
    resolution.

    `method` None: each explainer's own default (`Explainer.method`).
    Returns explain.json's "images" rows: path, overlay_base and, per model, the prediction,
    probabilities, explained class, layer, heatmap stats, the shortcut alarm
    (`energy_outside_head`, `top_outside_head`, `outside_head_flag`), the answer's warnings
    as `predict` gives them (`weak`, `unlike`: true / false / null; `colour`, `photo`: true / false;
    `evaluate.flags.answer_flags`) and the overlay's file name.
    ValueError names the model whose explanation failed. `bases` (one per image) are the
    overlay names when the images are part of a longer list (`overlay_bases` of it);
    `warners` come from `answer_warners` (built here when not given). `radiological` (one per
    image): the file says the patient's right is on the picture's left (a NIfTI slice,
    `series.SliceReader.radiological`): its row's `radiological` is true and its caption's
    small print says so (`overlay_note`), where others say the sides are the picture's.
    `headers` (one per image): what its file says of itself (`series.HEADER_FACTS`: a DICOM
    header's "modality" settles "may be CT", `modality.may_be_ct`, or names another modality,
    `not_mri_modality`; its "t2_header" raises "may be T2 or FLAIR" whatever the learnt hint
    says).
    """
    from pipeline.calibration import apply_temperature, read_calibration
    from pipeline.evaluate.flags import answer_flags, is_colour
    from pipeline.modality import is_small, looks_like_photo, may_be_ct, not_mri_words

    # probabilities shown as everywhere else (a damaged entry: raw, as predict shows them)
    temperatures = read_calibration(run.path, list(explainers))[0]
    warners = warners if warners is not None else answer_warners(run, explainers)
    bases = bases if bases is not None else overlay_bases([p for p, _ in decoded])
    found = [warners.membership.find(img) if warners.membership else None
             for _, img in decoded]
    # `pipeline.sequence`: may be T2 or FLAIR (a learnt hint, as predict's; None: cannot run)
    t2 = sequence.looks_like_t2([img for _, img in decoded]) or [None] * len(decoded)
    headers = headers or [{}] * len(decoded)
    t2 = [h.get("t2_header") or t for h, t in zip(headers, t2, strict=True)]  # a header's first
    # `in_run_split`: the run's split holding the image or a copy (as predict's), else None;
    # `in_run_exact`: whether it is that split's image pixel for pixel (None: cannot tell)
    colour = [is_colour(img) for _, img in decoded]  # one verdict per file, on what it holds
    photo = [looks_like_photo(img) for _, img in decoded]
    ct = [may_be_ct(img, str(h.get("modality") or ""))  # as predict's
          for (_, img), h in zip(decoded, headers, strict=True)]
    # a header naming another acquisition than MRI or CT: its code (`not_mri_words`), as predict's
    codes = [c if not_mri_words(c := str(h.get("modality") or "")) else "" for h in headers]
    rows: list[dict[str, Any]] = [
        {"path": str(p), "overlay_base": base, "models": {},
         "in_run_split": seen.split if seen else None,
         "in_run_exact": seen.exact if seen else None, "may_be_ct": ct[i],
         "not_mri_modality": codes[i],
         # `modality.is_small`: the models explained saw it enlarged
         "small_image": is_small(img, [int(run.model_info(m)["image_size"]) for m in explainers]),
         "may_be_t2": sequence.hint_said(t2[i], ct=ct[i] or bool(codes[i]), colour=colour[i],
                                         photo=photo[i]),
         "radiological": bool(side)}
        for i, ((p, img), base, seen, side) in enumerate(zip(
            decoded, bases, found, radiological or [False] * len(decoded), strict=True))]
    drawn: dict[str, tuple[np.ndarray, Explanation]] = {}  # per model: its inputs, heatmaps
    shown: dict[str, np.ndarray] = {}  # per model: the probabilities shown (calibrated)
    facts: dict[str, tuple[bool, bool]] = {}  # per model: (its default explanation, cropped)
    for k, (name, explainer) in enumerate(explainers.items()):
        progress("explain", k, len(explainers))
        info = run.model_info(name)
        size, crop = int(info["image_size"]), crop_head(info)
        x = np.stack([prepare_image(img, size, crop=crop) for _, img in decoded])
        try:
            ex = explainer(x, method=method, target=target)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from exc
        probs_all = np.asarray(ex.probs)
        if name in temperatures:
            probs_all = apply_temperature(probs_all, temperatures[name])
        shown[name] = probs_all
        below, unlike = warners.models[name]
        warned = answer_flags(probs_all, below, None if unlike is None else unlike(x), colour,
                              photo)
        for i in range(len(decoded)):
            png = out / overlay_name(bases[i], name, ex.method)
            entry = overlay_entry(run.class_names, ex, i, png.name, probs_all[i])
            head = head_mask_in_frame(decoded[i][1], size, crop)
            share = energy_outside_head(ex.heatmaps[i], head)
            top = top_outside_head(ex.heatmaps[i], head)
            entry["peak"] = peak_words(ex.heatmaps[i])  # where it is hottest, in words
            entry["energy_outside_head"] = float(share) if np.isfinite(share) else None
            entry["top_outside_head"] = float(top) if np.isfinite(top) else None
            entry["outside_head_flag"] = outside_head_flag(entry["top_outside_head"])
            entry["weak"], entry["unlike"] = warned["weak"][i], warned["unlike"][i]
            entry["far"] = warned["far"][i]
            entry["colour"], entry["photo"] = warned["colour"][i], warned["photo"][i]
            rows[i]["models"][name] = entry
        drawn[name] = (x, ex)
        facts[name] = (is_default(run, name, ex.method, ex.layer), crop)
    pooled = _pooled(run, shown)
    folders = folders_by_class(run.manifest)  # "Healthy" for no_tumor: said in the caption
    for i, row in enumerate(rows):  # every model's answer known: captions say if they differ
        # None with one model explained: agreement is not known (true claimed it)
        row["agree"] = (len({e["predicted"] for e in row["models"].values()}) == 1
                        if len(row["models"]) > 1 else None)
        # the two default heatmaps' peaks this far apart (None: close, or the rule not applied)
        if pooled is not None:
            row["together"] = pooled[i]
        row["peaks_apart"] = maps_apart([MapFacts(e["heatmap"]["peak"], e["target"], *facts[m])
                                         for m, e in row["models"].items()])
        # a model finds it far unlike its training data (`ood.FAR`): every answer is withheld,
        # and the T2 hint unsaid (`sequence.hint_said`), as on the dashboard's card
        far = [m for m, e in row["models"].items() if e.get("far")]
        if far and row["may_be_t2"] is not None:
            row["may_be_t2"] = False
        pictures = {}
        for name, (x, ex) in drawn.items():
            entry = row["models"][name]
            if caption:  # after the warnings: the caption carries them
                lines = overlay_caption(name, entry, row["in_run_split"], row["in_run_exact"],
                                        disagree=row["agree"] is False,
                                        apart=row["peaks_apart"] is not None,
                                        may_be_ct=row["not_mri_modality"] or row["may_be_ct"],
                                        may_be_t2=bool(row["may_be_t2"]), outline=outline,
                                        small=row["small_image"],
                                        run=run.report_name, folders=folders,
                                        far_models=far)
                pictures[name] = captioned_overlay(x[i], ex.heatmaps[i], lines,
                                                   overlay_note(row["radiological"]),
                                                   alpha=alpha, outline_top_percent=outline,
                                                   min_side=side)
            else:
                pictures[name] = render_overlay(x[i], ex.heatmaps[i], alpha=alpha,
                                                outline_top_percent=outline)
        for name, picture in same_height(pictures).items():
            (out / row["models"][name]["overlay"]).write_bytes(to_png(picture))
    progress("explain", len(explainers), len(explainers))
    return rows


def same_height(pictures: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One image's overlays (one per model) padded at the bottom, in the caption's background,
    to the tallest one's height: captions of different lengths made a slide's pair uneven
    (639 and 619 px, a lecturer's review). Pictures of different widths are left as they are."""
    if len({p.shape[1] for p in pictures.values()}) != 1:
        return pictures
    tallest = max((p.shape[0] for p in pictures.values()), default=0)
    return {name: p if p.shape[0] == tallest else np.concatenate(
        [p, np.full((tallest - p.shape[0], *p.shape[1:]), CAPTION_BACKGROUND, p.dtype)])
        for name, p in pictures.items()}
