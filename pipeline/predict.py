"""Inference with a run's models: prepare images exactly as training did, then predict."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import geometry, images, sequence
from pipeline.artifacts import Run, crop_head
from pipeline.calibration import FILE as CALIBRATION_FILE
from pipeline.calibration import apply_temperature, read_calibration
from pipeline.data.membership import Membership, Seen
from pipeline.gaps import Gap, missing_checks
from pipeline.names import PREDICT_BATCH, Progress, no_progress
from pipeline.predict_checks import (
    check_info,
    check_model,
    checked_batch,
    checked_image,
    image_list,
    one_image,
    opened,
)
from pipeline.series import Slice, SliceReader, expand_series


@dataclass
class Prediction:
    """One image's result for one model."""

    model: str
    label: str
    probs: dict[str, float]


# Files decoded and predicted at a time by `predict_files`: memory stays bounded on any folder.
FILE_CHUNK = 64
BATCH = PREDICT_BATCH  # files per batch of `iter_predictions`: the forward pass's batch


class Predictor:
    """Loads a run's models once and predicts from any thread.

    Each model runs through one traced graph (`models.compiled`, any batch size): one MobileNetV2
    image took 196 ms through eager Keras calls. Running a traced function is thread-safe; a
    per-model lock guards only building it, on first use.

    Probabilities are calibrated: when the run has a `calibration.json` (`pipeline.calibration`),
    each model's temperature is applied to everything `predict_arrays` and `predict_images`
    return, and `apply_calibration` applies it to probabilities computed elsewhere (the
    dashboard's explanations). The file is re-read when it changes, so a long-lived Predictor
    (the dashboard's) follows a run calibrated after it was loaded. `calibrated=False` gives the
    models' raw softmax outputs (evaluation's "before", fitting the temperature).
    """

    def __init__(self, run: Run | str | Path, models: Sequence[str] | str | None = None,
                 calibrated: bool = True, check_ood: bool = True) -> None:
        run, models = opened(run, models)
        self.run = run
        self.calibrated = calibrated
        self.class_names = run.class_names
        names = list(models) if models else run.model_names
        self.info = {name: run.model_info(name) for name in names}
        for name in names:
            check_info(run, name, self.info[name])
        self.models = {name: run.load_model(name) for name in names}
        for name in names:
            check_model(run, name, self.models[name], int(self.info[name]["image_size"]))
        self._locks = {name: threading.Lock() for name in names}
        self._forward: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
        # (calibration.json's mtime, {model: T}, {model: low-confidence threshold}, {model: why
        # its entry is unusable}): a damaged one turns calibration off (`missing_checks`)
        self._calibration: tuple[int | None, dict[str, float], dict[str, float],
                                 dict[str, str]] = (None, {}, {}, {})
        # (calibration.json's mtime, the pooled answer's T and weak threshold), read with it
        self._pool: tuple[int | None, float | None, float | None] | None = None
        # model -> its "unlike the training data" levels per prepared batch (ood.unlike_scorer)
        self._ood: dict[str, Callable[[np.ndarray], np.ndarray] | None] = {}
        from pipeline.ood import ood_damage

        # read once, for the scorer; a damaged ood.npz turns that model's check off (not the run)
        self._ood_loaded = {}
        self.ood_damage: dict[str, str] = {}  # model -> why its ood.npz cannot be used
        for name in (names if check_ood else ()):
            self._ood_loaded[name], why = ood_damage(run.path, name)
            if why:
                self.ood_damage[name] = why
        self.membership = Membership.of_run(run.path)  # a decoded image's split (None: unknown)

    def __repr__(self) -> str:  # a notebook's cell output
        raw = "" if self.calibrated else ", raw softmax"
        return f"<Predictor of run {self.run.run_id}: {', '.join(self.models)}{raw}>"

    def _calibration_now(self) -> tuple[int | None, dict[str, float], dict[str, float],
                                        dict[str, str]]:
        """The run's calibration.json, read again only when it changed (a dashboard rerun asks
        for it on every image card)."""
        path = self.run.path / CALIBRATION_FILE
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            stamp = None
        cached = self._calibration
        if stamp != cached[0]:
            cached = (stamp, *(({}, {}, {}) if stamp is None else
                               read_calibration(self.run.path, list(self.models))))
            self._calibration = cached  # one assignment: safe with concurrent readers
        return cached

    def temperatures(self) -> dict[str, float]:
        """{model: T} of the run's calibration.json as it is now ({} without one)."""
        return self._calibration_now()[1]

    def temperature(self, model_name: str) -> float | None:
        """The model's stored temperature (None when not calibrated), applied or not."""
        return self.temperatures().get(model_name)

    def apply_calibration(self, model_name: str, probs: np.ndarray) -> np.ndarray:
        """`probs` (…, C) with the model's temperature applied (as is when none, or when this
        Predictor was made with calibrated=False); float32 like the models' outputs."""
        t = self.temperature(model_name) if self.calibrated else None
        if t is None:
            return probs
        return apply_temperature(probs, t).astype("float32")

    def together(self, probs: dict[str, np.ndarray]) -> np.ndarray | None:
        """The models' (calibrated) probabilities pooled into one answer
        (`evaluate.together.combine`, with the pool's validation temperature when this Predictor
        is calibrated and the run has one); None for fewer than two models."""
        if len(probs) < 2:
            return None
        from pipeline.evaluate import together

        t = self.pool_temperature() if self.calibrated else None
        return together.combine(probs, t).astype("float32")

    def _pool_now(self) -> tuple[int | None, float | None, float | None]:
        from pipeline.evaluate import together

        stamp = self._calibration_now()[0]
        cached = self._pool
        if cached is None or cached[0] != stamp:
            cached = (stamp, *((None, None) if stamp is None else
                               together.read_pool(self.run.path)))
            self._pool = cached  # one assignment: safe with concurrent readers
        return cached

    def pool_temperature(self) -> float | None:
        """The pooled answer's temperature in the run's calibration.json as it is now (None
        without one: a run calibrated before `evaluate.together` existed), read again only
        when the file changed."""
        return self._pool_now()[1]

    def pool_weak_below(self) -> float | None:
        """Confidence under which the pooled answer's validation answers were right less than
        90 % of the time (`calibration.low_confidence`); None where not fitted (runs calibrated
        before it existed, or a Predictor of raw probabilities: the threshold is for the
        calibrated pool)."""
        return self._pool_now()[2] if self.calibrated else None

    def low_confidence_below(self, model_name: str) -> float | None:
        """Confidence under which this model's validation answers were right less than 90 % of
        the time (`calibration.low_confidence`); None for runs calibrated before it existed."""
        return self._calibration_now()[2].get(model_name)

    def unlike_training(self, model_name: str, x: np.ndarray) -> np.ndarray | None:
        """Per prepared image (N, S, S, 3): how unlike the model's training data it is
        (`ood.OodModel.levels`: truthy over the run's validation threshold, `ood.FAR` far);
        None when the run has no OOD score for this model (`python -m pipeline ood` adds it)."""
        if model_name not in self._ood:
            from pipeline.ood import ood_scorer, unlike_scorer

            with self._locks[model_name]:
                if model_name not in self._ood:
                    model = self.models[model_name]
                    if model_name in self._ood_loaded:
                        ood = self._ood_loaded[model_name]
                        self._ood[model_name] = None if ood is None else ood_scorer(ood, model)
                    else:
                        self._ood[model_name] = unlike_scorer(self.run.path, model_name, model)
        scorer = self._ood[model_name]
        return None if scorer is None else scorer(x)

    def missing_checks(self, run_ref: str | None = None) -> list[Gap]:
        """The checks this run's answers go without, each with its fix (`gaps.missing_checks`,
        which says what `run_ref` is); [] for a complete run."""
        pooled = len(self.models) > 1 and self.calibrated  # its answers include the pool's
        return missing_checks(self.run, list(self.models), calibrated=self.calibrated,
                              knows_splits=self.membership is not None, run_ref=run_ref,
                              calibration=self._calibration_now()[1:],
                              ood_damage=self.ood_damage,
                              pool_unscaled=pooled and self.pool_temperature() is None)

    def image_size(self, model_name: str) -> int:
        """The side in pixels of `model_name`'s input (its manifest's `image_size`)."""
        return int(self._info_of(model_name)["image_size"])

    def _info_of(self, model_name: str) -> dict:
        if model_name not in self.info:  # a bare KeyError('CustomCNN') said nothing
            raise ValueError(f"no model {model_name!r} in this Predictor; it has "
                             f"{', '.join(self.info)}")
        return self.info[model_name]

    def prepare(self, model_name: str, img: np.ndarray) -> np.ndarray:
        """Crop (if the model was trained so) and resize one image (H×W×3 or H×W, pixels as
        `predict_images` takes them) to the model's input: uint8, (S, S, 3)."""
        info = self._info_of(model_name)
        return geometry.prepare_image(img, int(info["image_size"]),
                                      crop=crop_head(info))

    def predict_arrays(self, model_name: str, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Probabilities (N, C) for a batch of prepared images (N, S, S, 3), raw 0-255 pixels;
        calibrated (see the class docstring)."""
        x = checked_batch(model_name, x, self.image_size(model_name))
        forward = self._forward_fn(model_name)
        out = [forward(np.asarray(x[i:i + batch_size], dtype="float32"))
               for i in range(0, len(x), batch_size)]
        if not out:
            return np.zeros((0, len(self.class_names)), dtype="float32")
        return self.apply_calibration(model_name, np.concatenate(out).astype("float32"))

    def _forward_fn(self, model_name: str) -> Callable[[np.ndarray], np.ndarray]:
        if model_name not in self._forward:
            from pipeline.models import compiled  # Keras only once a model is used

            with self._locks[model_name]:
                if model_name not in self._forward:
                    self._forward[model_name] = compiled(self.models[model_name])
        return self._forward[model_name]

    def predict_images(self, imgs: Sequence[np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        """Per model, calibrated probabilities (N, C) for decoded images of any size: a list of
        H×W×3 or H×W arrays or Pillow images, one of them, or an (N, H, W, 3) batch. Pixels
        are 0-255 (uint8, or any number type); 0-1 floats and high-bit ranges are mapped as
        `pixels.array_to_uint8` says. ImageError (naming the image by its place, from 1) for an
        array that is no image, smaller than `images.MIN_SIDE` a side, or blank (almost all one
        grey level), as the CLI refuses such files."""
        imgs = [checked_image(im, k) for k, im in enumerate(image_list(imgs))]
        prepared = [geometry.prepare_for(im, self.prepare_specs()) for im in imgs]
        result = {}
        for k, name in enumerate(self.models):
            x = np.stack([p[k] for p in prepared]) if imgs else np.zeros(
                (0, self.image_size(name), self.image_size(name), 3), dtype="uint8")
            result[name] = self.predict_arrays(name, x)
        return result

    def prepare_specs(self) -> list[tuple[int, bool]]:
        """(image_size, crop_head) per model, in `self.models` order (`geometry.prepare_for`)."""
        return [(self.image_size(m), crop_head(self.info[m])) for m in self.models]

    def describe(self, probs: np.ndarray, model_name: str) -> Prediction:
        """One image's probabilities (C,) for `model_name` (a row of `predict_images`' (N, C),
        or that array when N is 1) as a `Prediction`: its most probable class, each class's."""
        probs = one_image(probs, len(self.class_names))
        return Prediction(model_name, self.class_names[int(np.argmax(probs))],
                          {c: float(p) for c, p in zip(self.class_names, probs, strict=True)})


def predict_files(predictor: Predictor, paths: Sequence[str | Path], chunk: int = FILE_CHUNK,
                  progress: Progress = no_progress,
                  each: Callable[[list[dict], list[tuple[str, str]]], None] | None = None
                  ) -> tuple[list[dict], list[tuple[str, str]]]:
    """Predict files; returns (results, failures) where failures are (path, reason).

    Files stream through `iter_predictions` `chunk` at a time, so 1000 files no longer mean 1000
    decoded images held in memory at once (4.7 GB peak RSS before). A series file (multi-frame
    DICOM, zip of .dcm) gives one result per slice (`series.expand_series`). `each(results,
    failures)` is called with every chunk's as it is done, and `progress("predict", done,
    total)` after it: `predict` printed nothing for 40 s on a folder of 1000 files, and Ctrl-C
    lost every answer.
    """
    results: list[dict] = []
    failures: list[tuple[str, str]] = []
    items = expand_series([paths] if isinstance(paths, (str, Path)) else paths)  # a str: one file
    done = 0
    for part, rows, bad in iter_predictions(predictor, items, batch=chunk):
        results.extend(rows)
        failures.extend(bad)
        if each is not None:
            each(rows, bad)
        done += len(part)
        progress("predict", done, len(items))
    return results, failures


def iter_predictions(predictor: Predictor, paths: Sequence[str | Path | Slice],
                     batch: int = BATCH, workers: int | None = None
                     ) -> Iterator[tuple[list[str], list[dict], list[tuple[str, str]]]]:
    """Per batch of `batch` files, in order: (the batch's paths, results, failures). An item may
    be a `series.Slice` (`series.expand_series`); its path is "<file> · slice k of n".

    The files stream through a `tf.data` pipeline: `workers` threads (default: half the
    cores, 1 to 4) read, decode and prepare them (`images.read_image`, `geometry.prepare_for`:
    OpenCV and Pillow release the GIL), one batch is made ready while the models predict the
    one before, and no more than a few batches are ever decoded at once. Unreadable files are
    failures with their reason; any other error while preparing a file is raised here, as it
    was. Each model's answer carries the warnings the dashboard shows beside it (`answer_flags`).
    """
    items = list(paths)
    paths = [str(p) for p in items]
    names = list(predictor.models)
    for start, err, colour, ct, seen, codes, xs in _prepared_batches(predictor, items, batch,
                                                                     workers):
        *xs, x_seq = xs  # the last: as `sequence.prepare` makes it
        colour, photo = [c[0] for c in colour], [c[1] for c in colour]
        part = paths[start:start + len(err)]
        ok = [i for i, e in enumerate(err) if not e]
        failures = [(part[i], err[i]) for i in range(len(part)) if err[i]]
        results: list[dict] = []
        if ok:
            probs, flags = {}, {}
            for name, x in zip(names, xs, strict=True):
                x = x[ok] if len(ok) < len(part) else x
                probs[name] = predictor.predict_arrays(name, x)
                flags[name] = answer_flags(predictor, name, x, probs[name],
                                           [colour[i] for i in ok], [photo[i] for i in ok])
            # `pipeline.sequence`: may be T2 or FLAIR (a learnt hint; None: cannot run here)
            t2 = sequence.flags_prepared(x_seq[ok]) or [None] * len(ok)
            pooled = predictor.together(probs)  # both models' answer together, or None
            pool_below = predictor.pool_weak_below() if pooled is not None else None
            for j, i in enumerate(ok):
                # the run's split holding the image or a copy (`data.membership`), else None;
                # whether it is that split's image pixel for pixel (None: the run cannot tell)
                row: dict[str, Any] = {"path": part[i], "models": {},
                                       "in_run_split": seen[i].split if seen[i] else None,
                                       "in_run_exact": seen[i].exact if seen[i] else None,
                                       "may_be_ct": ct[i][0], "small_image": ct[i][1],
                                       # a header naming another acquisition than MRI or CT
                                       "not_mri_modality": codes[i],  # (`not_mri_words`)
                                       "may_be_t2": sequence.hint_said(  # a header's first
                                           ct[i][2] or t2[j], ct=ct[i][0] or bool(codes[i]),
                                           colour=colour[i], photo=photo[i],
                                           far=any(f["far"][j] for f in flags.values()))}
                for name, pr in probs.items():
                    d = predictor.describe(pr[j], name)
                    row["models"][name] = {"label": d.label, "probs": d.probs,
                                           **{k: v[j] for k, v in flags[name].items()}}
                row["agree"] = len({m["label"] for m in row["models"].values()}) == 1
                if pooled is not None:  # `evaluate.together`: the models' answers pooled
                    d = predictor.describe(pooled[j], "together")
                    # weak as each model's answer is (None: no threshold in calibration.json)
                    weak = None if pool_below is None else bool(pooled[j].max() < pool_below)
                    row["together"] = {"label": d.label, "probs": d.probs, "weak": weak}
                results.append(row)
        yield part, results, failures


def answer_flags(predictor: Predictor, name: str, x: np.ndarray, probs: np.ndarray,
                 colour: list[bool], photo: list[bool] | None = None
                 ) -> dict[str, list[bool | None]]:
    """Per image of the prepared batch `x` with its (calibrated) `probs`: "weak" (confidence
    below the model's validation threshold, `calibration.low_confidence`), "unlike" and "far"
    (the run's "unlike the training data" score over its thresholds, `pipeline.ood`), None where the
    run does not measure it (no calibration.json threshold, no OOD score), and "colour" (each
    file's `evaluate.flags.is_colour` verdict: not a greyscale image, as MRI slices are) and
    "photo" (`modality.looks_like_photo`: a tinted photo of a screen or film)."""
    from pipeline.evaluate.flags import answer_flags as rule

    return rule(probs, predictor.low_confidence_below(name), predictor.unlike_training(name, x),
                colour, photo)


def _prepared_batches(predictor: Predictor, paths: list[str | Path | Slice], batch: int,
                      workers: int | None
                      ) -> Iterator[tuple[int, list[str], list[tuple[bool, bool]],
                                          list[tuple[bool, bool, bool]], list[Seen | None],
                                          list[str], list[np.ndarray]]]:
    """(index of the batch's first file, per file "" or why it is unusable, per file a pair:
    colour and a tinted photo (`evaluate.flags.is_colour`, `modality.looks_like_photo`), and a
    triple: may be CT (by a DICOM's header too), small, and T2 or FLAIR by a DICOM's header
    (`may_be_ct`, `is_small`, `SliceReader.with_facts`); per file the
    run's split holding it or a copy (`membership.Seen`; None: none, or the run cannot tell),
    the DICOM code of an acquisition other than MRI or CT (`modality.not_mri_words`, else ""),
    per model the prepared (n, S, S, 3) uint8 batch, zeros where unusable, and last the batch
    as `sequence.prepare` makes it), batch after batch."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if not paths:
        return
    import tensorflow as tf

    from pipeline.evaluate.flags import is_colour
    from pipeline.modality import is_small, looks_like_photo, may_be_ct, not_mri_words

    specs = [*predictor.prepare_specs(), (sequence.SIDE, True)]
    blanks = [np.zeros((s, s, 3), np.uint8) for s, _ in specs]
    raised: dict[int, BaseException] = {}  # errors other than ImageError, raised in order
    read = SliceReader()  # a series is decoded once for all its slices

    def load(index: np.int64) -> tuple[Any, ...]:
        i = int(index)
        try:
            image, facts = read.with_facts(paths[i])  # together: threads share `read`
            prepared = geometry.prepare_for(image, specs)
            found = predictor.membership.find(image) if predictor.membership else None
            code = str(facts.get("modality") or "")
            return (b"", np.array([is_colour(image), looks_like_photo(image)]),
                    np.array([may_be_ct(image, code), is_small(image, [s for s, _ in specs[:-1]]),
                              bool(facts.get("t2_header"))]),
                    found.to_bytes() if found else b"",
                    code.encode() if not_mri_words(code) else b"", *prepared)
        except images.ImageError as exc:
            return (str(exc).encode("utf-8", "replace"), np.zeros(2, bool), np.zeros(3, bool), b"",
                    b"", *blanks)
        except Exception as exc:  # not the file's fault: the caller gets it, not a CSV row
            raised[i] = exc
            return (b"", np.zeros(2, bool), np.zeros(3, bool), b"", b"", *blanks)

    def load_tf(index: tf.Tensor) -> tuple[tf.Tensor, ...]:
        out = tf.numpy_function(load, [index],
                                [tf.string, tf.bool, tf.bool, tf.string, tf.string]
                                + [tf.uint8] * len(specs))
        for t in out[:5]:
            t.set_shape((2,) if t is out[1] else (3,) if t is out[2] else ())
        for t, (s, _) in zip(out[5:], specs, strict=True):
            t.set_shape((s, s, 3))
        return tuple(out)

    # Decoding and cropping cost about a quarter of MobileNetV2's forward pass per image, so
    # half the cores keep well ahead of it without taking the cores it runs on.
    threads = workers or max(1, min(4, (os.cpu_count() or 2) // 2))
    ds = (tf.data.Dataset.range(len(paths))
          .map(load_tf, num_parallel_calls=threads, deterministic=True)
          .batch(batch)
          .prefetch(1))
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads  # bounded look-ahead, whatever AUTOTUNE
    options.autotune.enabled = False
    ds = ds.with_options(options)
    start = 0
    for err_t, colour_t, ct_t, seen_t, code_t, *xs_t in ds:
        err = [e.decode("utf-8", "replace") for e in err_t.numpy()]
        for k in range(len(err)):
            if start + k in raised:
                raise raised[start + k]
        yield (start, err, [(bool(c), bool(p)) for c, p in colour_t.numpy()],
               [(bool(c), bool(s), bool(t)) for c, s, t in ct_t.numpy()],
               [Seen.from_bytes(v) for v in seen_t.numpy()],
               [c.decode() for c in code_t.numpy()], [x.numpy() for x in xs_t])
        start += len(err)
