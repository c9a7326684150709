"""explain-eval: the measured quality of a run's explanations (`<run>/<model>/explanations.json`).

`explain_eval` picks a run's test images and masks (or every image of an external folder whose
labels the run can score), decides which class each image is explained for, prepares the images
per model, scores them with `scoring.explain_model` and writes the file.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import geometry, run_files
from pipeline.artifacts import (
    Run,
    crop_head,
    ensure_writable,
    open_run,
    read_json,
    recorded_path,
    shown_path,
    utc_now,
    write_json_atomic,
)
from pipeline.explain.decoding import Decoded, decode, no_localisation, usable_masks
from pipeline.explain.defaults import method_at, not_the_default, resolve_explanation, usable_layer
from pipeline.explain.explainer import Explainer
from pipeline.explain.external import (
    external_file,
    external_source,
    refuse_replacing,
    with_overlap,
)
from pipeline.explain.masks import (
    MOSTLY_MASK,
    default_masks_dir,
    find_mask,
    head_mask_in_frame,
    no_mask_message,
    prepare_mask,
)
from pipeline.explain.methods import get_method
from pipeline.explain.metrics import BASELINES
from pipeline.explain.scoring import Chunk, explain_model
from pipeline.measured import held_measurement, refuse_smaller
from pipeline.names import DELETION_STEPS, EXPLAIN_EVAL_IMAGES, Progress, size_label

# Which class each image is explained for (explanations.json `target_mode`, per row
# `target_rule`): its true class, or, for images labelled only "tumor" (yes/no folders), the
# model's most probable tumour class.
TARGET_TRUE = "true"
TARGET_TOP_TUMOUR = "most-probable-tumour-class"
# Images scored for localisation only: (records, data folder, masks folder, failures list, mask
# counts as `_decode` keeps them), read MORE_CHUNK at a time.
MoreImages = tuple[list[dict[str, str]], Path, Path, list[dict[str, str]], Counter[str]]
MORE_CHUNK = 32
SELECTION = ("up to max_images, balanced over labels, images with a mask first, fully scored; "
             "every other image with a mask (up to max_localisation, balanced over labels; null: "
             "all) explained for localisation and the shortcut alarm only")


def _pick(records: list[dict[str, str]], max_images: int, seed: int,
          has_mask: Callable[[dict[str, str]], bool] | None = None) -> list[dict[str, str]]:
    """Up to `max_images` records, balanced over labels, reproducible for a seed.

    With `has_mask`, each label's images that have a mask file come first (in the same seeded
    order): the balance over labels is kept, and as many images as possible can be scored for
    localisation when only some have a mask (real tumour boxes).
    """
    by_label: dict[str, list[dict[str, str]]] = {}
    for rec in sorted(records, key=lambda r: r["path"]):
        by_label.setdefault(rec["label"], []).append(rec)
    rng = np.random.default_rng(seed)
    queues = [list(rng.permutation(np.array(v, dtype=object))) for _, v in sorted(by_label.items())]
    if has_mask is not None:
        queues = [sorted(q, key=lambda r: not has_mask(r)) for q in queues]  # stable
    out: list[dict[str, str]] = []
    while len(out) < max_images and any(queues):
        for q in queues:
            if q and len(out) < max_images:
                out.append(q.pop(0))
    return out


def explain_eval(
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    masks_dir: str | Path | None = None,
    method: str | None = None,
    max_images: int = EXPLAIN_EVAL_IMAGES,
    progress: Progress | None = None,
    models: Sequence[str] | None = None,
    steps: int = DELETION_STEPS,
    baseline: str = "blur",
    seed: int = 0,
    layer: str | None = None,
    name: str | None = None,
    max_localisation: int | None = None,
    replace: bool = False,
) -> dict[str, dict[str, Any]]:
    """Measure each model's explanations; write one JSON per model and return {model: results}.

    Run's own data (no `data_dir`, or a folder holding the run's test split at its relative
    paths): up to `max_images` test images, balanced over labels, those with a mask first;
    written to `<run>/<model>/explanations.json`. Each image is explained for its TRUE class
    (as in the pointing game literature).

    External folder (`data_dir` in any layout `data.discover` reads, not holding the run's test
    split): up to `max_images` of its images whose labels the run can score
    (`evaluate.external.map_external_labels`), written to
    `<run>/<model>/explanations-external/<name>.json` (`name` defaults to
    `<folder>-<method>`, `external.external_file`; a file there measured with another method
    or layer, or on more images than `max_images`, is not replaced unless `replace`). Its
    `source` says how many of its images are in the run's splits, as the same image or a
    changed copy (`overlap_with_training`).
    Images whose label is a run class are explained for it; images labelled only "tumor" (yes/no
    folders) for the model's most probable tumour class: `target_mode` and each row's
    `target_rule` say which.

    Masks come from `masks_dir` (default: `masks.default_masks_dir`, the dataset's boxes folder
    or `<data_dir>/masks`) at the images' relative paths, with
    the image's extension or another (`scan.jpg` -> `scan.png`), non-zero = tumour; a mask of
    another size with its image's aspect ratio is resized (`masks.fit_mask`), one of another
    ratio is refused; a given `masks_dir` that matches no image is a ValueError saying where
    one mask was looked for and what the folder holds. Images
    without a mask (or with an empty one) are left out of localisation but still scored for
    faithfulness, sanity and the shortcut alarm; `n_localisation` says how many had one, and
    localisation is null with a reason when none had. `masks_dir` and `data_dir` are recorded
    relative to the project root. `method` None: each model's default (`explain_choice.json`,
    the method and layer the dashboard and `explain` use; Grad-CAM without one). `layer`
    overrides the default layer (it must exist in every selected model). `replace`: else an
    `explanations.json` measured on more images, or of the default when another method is
    asked, is refused (ValueError), as the CLI refuses it.
    """
    if method is not None:
        get_method(method)  # unknown names fail here, before any work
    if baseline not in BASELINES:
        raise ValueError(f"unknown baseline {baseline!r}; choose one of {', '.join(BASELINES)}")
    if max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    if max_localisation is not None and max_localisation < 0:
        raise ValueError(f"max_localisation must be >= 0, got {max_localisation}")
    run = open_run(run_dir)
    ensure_writable(run.path, "run folder")
    data, masks_root = _folders(run, data_dir, masks_dir)
    names = list(models) if models else run.model_names
    for m in names:
        run.model_info(m)  # unknown names fail here, before any work
    source = _source(run, data, name)
    files: dict[str, Path] = {}
    for m in names:  # before any work: a result of another method is not silently replaced
        use_method, use_layer = resolve_explanation(run, m, method, layer)
        files[m] = (run.path / m / run_files.EXPLANATIONS if source["plan"] is None else
                    external_file(run, m, source["info"], use_method, use_layer,
                                  layer is not None))
        if source["plan"] is not None and not replace:
            refuse_replacing(run, files[m], use_method, use_layer, max_images)
        elif not replace:  # explanations.json, which the dashboard shows (`pipeline.measured`)
            if not_the_default(run, m, method, layer) and held_measurement(files[m]):
                raise ValueError(f"{m}/{run_files.EXPLANATIONS} measures {m}'s default; "
                                 f"{method_at(use_method, use_layer)} would replace it: pass "
                                 "replace=True, or measure on a copy of the run")
            refuse_smaller(files[m], ("n_faithfulness", "n"), max_images,
                           f"{m}/{run_files.EXPLANATIONS}")

    def has_mask(rec: dict[str, str]) -> bool:
        return masks_root.is_dir() and find_mask(masks_root, rec["path"]) is not None

    if masks_dir is not None and not any(has_mask(r) for r in source["records"]):
        # a masks folder the user named that matches nothing is a naming mistake, not "no boxes"
        example = next((r for r in source["records"] if r["label"] != "no_tumor"),
                       source["records"][0])
        raise ValueError(no_mask_message(Path(masks_dir), example["path"],
                                         len(source["records"])))
    chosen = _pick(source["records"], max_images, seed, has_mask)
    # Decode each image and mask once (the chosen images while looking for copies of the
    # run's, in an external folder); every model prepares them at its own size.
    read = (with_overlap(run, source, data, progress, keep={r["path"] for r in chosen})
            if source["plan"] is not None else {})
    mask_stats: Counter[str] = Counter()
    decoded, failed = decode(chosen, data, masks_root, mask_stats, read)
    del read  # the decoded list holds the images from here
    if not decoded:
        raise ValueError(f"none of the {len(chosen)} {source['what']} could be read from {data}")
    if masks_dir is not None and mask_stats["refused"] and not usable_masks(mask_stats):
        # masks the user named, every one refused: say so before the scoring, not after it
        raise ValueError(f"{masks_dir}: " + no_localisation(mask_stats, failed, str(masks_dir)))
    picked = {r["path"] for r in chosen}
    more = [r for r in source["records"] if r["path"] not in picked and has_mask(r)]
    if max_localisation is not None:
        more = _pick(more, max_localisation, seed)

    results: dict[str, dict[str, Any]] = {}
    for m in names:
        t0 = time.perf_counter()
        use_method, use_layer = resolve_explanation(run, m, method, layer)  # as `explain`
        more_failed: list[dict[str, str]] = []
        stats = mask_stats.copy()  # plus this model's localisation-only images
        res = _explain_run_model(run, m, decoded, failed, use_method, use_layer, steps,
                                 baseline, seed, progress, source["plan"],
                                 (more, data, masks_root, more_failed, stats), layer is not None)
        if res["n_localisation"] == 0:
            res["localisation_reason"] = no_localisation(stats, failed + more_failed,
                                                         _shown_path(masks_root))
        rules = {r["target_rule"] for r in res["rows"]}
        out = {
            "run_id": run.run_id,
            "model": m,
            **{k: v for k, v in res.items() if k != "rows"},
            "target_mode": rules.pop() if len(rules) == 1 else "mixed",
            "target_rules": {TARGET_TRUE: "the image's true class",
                             TARGET_TOP_TUMOUR: "the model's most probable tumour class (the "
                                                "folder only says 'tumor')"},
            "selection": SELECTION,
            "max_localisation": max_localisation,
            "source": ({**source["info"], "name": files[m].stem} if source["plan"] is not None
                       else source["info"]),
            "data_dir": _shown_path(data),
            "masks_dir": _shown_path(masks_root) if mask_stats["read"] else None,
            "n_with_mask_file": mask_stats["read"] + res["n"] - res["n_faithfulness"],
            # masks of another size with the image's aspect ratio, resized to it; masks marking
            # more than MOSTLY_MASK of their image (probably inverted); masks not used
            "n_masks_resized": stats["resized"],
            "n_masks_mostly": stats["mostly"],
            "mostly_mask_share": MOSTLY_MASK,
            "n_masks_refused": stats["refused"],
            "localisation_image_sizes": _sizes_of_boxed(res["rows"]),
            "n_failed": len(failed) + len(more_failed),
            "failed": (failed + more_failed)[:20],
            "seconds": round(time.perf_counter() - t0, 2),
            "created": utc_now(),
            "rows": res["rows"],
        }
        out_path = files[m]
        out_path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out_path, out)
        out["written"] = str(out_path.relative_to(run.path))
        if res["n_localisation"] == 0:  # said to the user: the folder as they would name it
            out["localisation_reason"] = no_localisation(
                stats, failed + more_failed,
                masks_folder_words(masks_root, given=bool(data_dir or masks_dir)))
            if not (stats["read"] + stats["unreadable"]) and masks_dir is None:
                out["localisation_reason"] += "; --masks DIR names the folder of tumour masks"
        results[m] = out
    return results


def _sizes_of_boxed(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How many localisation rows have each (decoded) image size, commonest first: boxes that
    all come from one collection (the Sartaj boxes: figshare's 512x512 slices) say nothing of
    the maps on images of another size and source."""
    counts = Counter(r["image_size"] for r in rows if r.get("pointing_hit") is not None)
    return dict(counts.most_common())


def _as_given(path: Path) -> str:
    """A folder the user named (or one inside it), as messages show it: as given, but
    absolute when it climbs more than one level out of the working folder
    ("../../../../tmp/x/masks" was a puzzle; "../shared/data/..." stays as it is)."""
    if not path.is_absolute() and path.parts[:2] == ("..", ".."):
        return os.path.abspath(path)
    return str(path)


def masks_folder_words(masks_root: Path, given: bool) -> str:
    """The masks folder explain-eval looked in, as its "no masks found under ..." line says it
    (README, "Explanations on your own images"): inside a folder the user named (`given`: --data
    or --masks) as they named it; else (the run's own dataset's masks/) relative to the working
    folder; either way absolute when that climbs more than one level out (`_as_given`). The
    run's own was shown relative to the project, or by its name alone outside the project's
    parent, whatever the working folder (a review, 2026-12-06)."""
    if given:
        return _as_given(masks_root)
    try:
        return _as_given(Path(os.path.relpath(masks_root)))
    except ValueError:  # another drive: no relative path
        return str(masks_root)


_shown_path = recorded_path  # its older name here (explain.choice imports it)


def _folders(run: Run, data_dir: str | Path | None, masks_dir: str | Path | None
             ) -> tuple[Path, Path]:
    """(data folder, masks folder): the given ones or the manifest's data folder and its
    default masks (`masks.default_masks_dir`: the boxes explain-choose uses); a missing data
    folder, or a given masks folder that is missing, is an error."""
    data = Path(data_dir) if data_dir is not None else run.data_dir
    if data_dir is not None and not data.is_dir():
        raise ValueError(f"data folder {data} not found")
    if data is None or not data.is_dir():  # named without this machine's absolute path
        recorded = (run.manifest.get("data") or {}).get("dir") or "?"
        raise ValueError(f"the run's dataset folder {shown_path(recorded)} is not there; pass "
                         "the folder it moved to (CLI: explain-eval --run-data DIR)")
    masks_root = Path(masks_dir) if masks_dir is not None else default_masks_dir(data)
    if masks_dir is not None and not masks_root.is_dir():
        raise ValueError(f"masks folder {masks_root} does not exist")
    return data, masks_root


def holds_test_split(run: Run, data: Path, test: list[dict[str, str]] | None = None) -> bool:
    """Whether explain-eval on `data` measures the run's test split (into explanations.json):
    `data` is the run's dataset folder, or at least half of the test split's files are there
    (a copy of the dataset elsewhere)."""
    test = _test_records(run) if test is None else test
    own = run.data_dir is not None and run.data_dir.is_dir() and data.resolve() == \
        run.data_dir.resolve()
    return own or sum((data / r["path"]).is_file() for r in test) * 2 >= len(test)


def _source(run: Run, data: Path, name: str | None) -> dict[str, Any]:
    """What is evaluated: {"records": [{"path", "label"}], "plan": None (the run's test split)
    or the external LabelPlan, "info": the JSON `source`, "what": words for messages}.

    `data` holds the run's test split when it is the run's folder or when at least half of the
    test split's files are there (a copy of the dataset elsewhere); otherwise it is external.
    """
    test = _test_records(run)
    if holds_test_split(run, data, test):
        if name is not None:
            raise ValueError("--name is for external folders; this folder holds the run's test "
                             "split")
        return {"records": test, "plan": None, "what": "test images",
                "info": {"kind": "test", "split": "test"}}
    return external_source(run, data, name)


def _test_records(run: Run) -> list[dict[str, str]]:
    """The run's test split records whose label is one of its classes."""
    splits = read_json(run.path / run_files.SPLITS)
    test = [r for r in splits.get("test", []) if r.get("label") in run.class_names]
    if not test:
        raise ValueError(f"run {run.run_id} has no test images with known labels in splits.json")
    return test


def _targets(run: Run, labels: list[str], probs: np.ndarray, plan: Any
             ) -> tuple[np.ndarray, list[str]]:
    """(class index explained per image, its rule): the label's run class when there is one,
    else (a "tumor" label scored against a multi-class run) the most probable tumour class."""
    classes = run.class_names
    tumour_idx = [i for i, c in enumerate(classes) if c != "no_tumor"]
    targets, rules = [], []
    for lab, p in zip(labels, probs, strict=True):
        mapped = plan.mapping.get(lab, lab) if plan is not None else lab
        if mapped in classes:
            targets.append(classes.index(mapped))
            rules.append(TARGET_TRUE)
        else:
            targets.append(tumour_idx[int(np.argmax(p[tumour_idx]))])
            rules.append(TARGET_TOP_TUMOUR)
    return np.array(targets, dtype=np.int64), rules


def _explain_run_model(
    run: Run, name: str, decoded: list[Decoded], failed: list[dict[str, str]], method: str,
    layer: str | None, steps: int, baseline: str, seed: int, progress: Progress | None,
    plan: Any = None, more: MoreImages | None = None, layer_asked: bool = False,
) -> dict[str, Any]:
    """`explain_model` for one of the run's models on the decoded images, prepared at its size,
    and on `more` images scored for localisation only (read chunk by chunk, so a large folder
    is never held decoded at once); rows get their path, label and target rule. Masks that
    cannot be prepared are appended to `failed` (`more`'s failures to its own list). Rows
    also get `image_size`, the decoded image's "WxH" before preparation."""
    info = run.model_info(name)
    size, crop = int(info["image_size"]), crop_head(info)
    x = np.stack([geometry.prepare_image(img, size, crop=crop) for _, img, _ in decoded])
    heads = [head_mask_in_frame(img, size, crop) for _, img, _ in decoded]
    masks: list[np.ndarray | None] = []
    for rec, img, mask in decoded:
        if mask is None:
            masks.append(None)
            continue
        try:
            masks.append(prepare_mask(mask, img, size, crop))
        except ValueError as exc:
            failed.append({"path": rec["path"], "error": f"mask: {exc}"})
            masks.append(None)
    model = run.load_model(name)
    labels = [rec["label"] for rec, _, _ in decoded]
    probs = None
    if any((plan.mapping.get(lab, lab) if plan else lab) not in run.class_names
           for lab in labels):
        probs = Explainer(model).predict(x)  # the most probable tumour class is needed
    targets, rules = _targets(run, labels, probs if probs is not None
                              else np.zeros((len(labels), len(run.class_names))), plan)
    use_layer, layer_note = usable_layer(model, name, method, layer, asked=layer_asked)
    more_records, more_rules, more_sizes = [], [], []

    def more_chunks() -> Iterator[Chunk]:
        if more is None:
            return
        records, data, masks_root, more_failed, stats = more
        for i in range(0, len(records), MORE_CHUNK):
            got, bad = decode(records[i:i + MORE_CHUNK], data, masks_root, stats)
            more_failed.extend(bad)
            keep = []
            for rec, img, mask in got:
                try:
                    m = prepare_mask(mask, img, size, crop) if mask is not None else None
                except ValueError as exc:
                    more_failed.append({"path": rec["path"], "error": f"mask: {exc}"})
                    continue
                if m is not None and m.any():  # a box cropped away has nothing to point at
                    keep.append((rec, img, m))
            if not keep:
                continue
            xb = np.stack([geometry.prepare_image(img, size, crop=crop) for _, img, _ in keep])
            labs = [rec["label"] for rec, _, _ in keep]
            pb = (prober().predict(xb) if needs_probs(labs) else
                  np.zeros((len(keep), len(run.class_names))))
            tb, rb = _targets(run, labs, pb, plan)
            more_records.extend(rec for rec, _, _ in keep)
            more_sizes.extend(size_label(img.shape[1], img.shape[0]) for _, img, _ in keep)
            more_rules.extend(rb)
            yield (xb, tb, [m for _, _, m in keep],
                   [head_mask_in_frame(img, size, crop) for _, img, _ in keep])

    def needs_probs(labels: list[str]) -> bool:
        return any((plan.mapping.get(lab, lab) if plan else lab) not in run.class_names
                   for lab in labels)

    probers: list[Explainer] = []

    def prober() -> Explainer:  # one, built on the first chunk that needs probabilities
        if not probers:
            probers.append(Explainer(model))
        return probers[0]

    res = explain_model(model, x, targets, masks, method=method, layer=use_layer, steps=steps,
                        baseline=baseline, seed=seed, progress=progress,
                        label=f"explain-eval {name}", head_masks=heads, more=more_chunks(),
                        n_more=len(more[0]) if more else 0)
    every = [rec for rec, _, _ in decoded] + more_records
    sizes = [size_label(img.shape[1], img.shape[0]) for _, img, _ in decoded] + more_sizes
    for row, rec, rule, wh in zip(res["rows"], every, rules + more_rules, sizes, strict=True):
        row["path"] = rec["path"]
        row["label"] = rec["label"]
        row["target_rule"] = rule
        row["image_size"] = wh
    if layer_note:  # explanations.json says which layer it measured, and why not the recorded
        res["layer_note"] = layer_note
    return res

