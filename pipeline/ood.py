"""How unlike the training data an image looks to a model: a Mahalanobis out-of-distribution score.

A classifier answers every image, a cat photo included, often with high confidence. This score
lets the dashboard and the CLI say "unlike the training data" instead. Method (Lee et al., 2018,
"A simple unified framework for detecting out-of-distribution samples and adversarial attacks"):
a layer's globally pooled features of the training split, reduced by PCA to `dims` components,
one mean per class and one shared covariance; an image's score is its Mahalanobis distance to the
nearest class mean. The threshold is the `quantile` of the validation split's scores, so about
5 % of in-distribution images are flagged by construction. Stored per model as
`<run>/<model>/ood.npz`.

Which layer: the penultimate features (`head_pool`) or the pooled maps of the finer stages the
explanations use (`explain.layers.stage_layers`). Explanation-guided MobileNetV2 taught us why:
its penultimate features no longer told pure noise from MRI (AUROC 0.85, nothing flagged),
while its 14 x 14 and 28 x 28 stages did (1.00). `ood_run` chooses per model the candidate that
best tells the VALIDATION split from foreign images of one seed (`SELECT_SEED`), then reports
how the chosen score tells the TEST split from foreign images of another seed (noise, gradients,
photos, phantoms) and from shifted copies of itself (the robustness shifts), in `<run>/ood.json`
with the table behind the choice. The images it is measured on come from `pipeline.ood_eval`.

Two levels (`OodModel.levels`): "unlike" over the threshold, which marked half of the official
Testing/ folder's real MRI, and "far unlike" beyond `FAR_MARGIN` times the highest validation
score, where pure noise lies and no real slice of ours did: the CLI and the dashboard fold a far
image's answers away as they do a CT slice's (a review: pure noise was answered "no tumour
(78%)" beside a mere "unlike").
`train` fits it at the end of every run; `python -m pipeline ood` refits older runs.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import run_files
from pipeline.names import Progress, no_progress

FEATURE_LAYER = "head_pool"  # both model families pool into this layer before the dropout+softmax
STAGES = 3  # candidate layers: head_pool, then the explanation layer's stages (coarse to fine)
SELECT_SEED = 1  # foreign images that choose the layer; the report's are made with seed 0
DIMS = 32  # PCA components: a full covariance of 1280 MobileNetV2 features is ill-conditioned
QUANTILE = 0.95  # of validation scores: the flag threshold (about 5 % false alarms in-distribution)
SHRINK = 1e-3  # ridge added to the covariance, relative to its mean variance
# An image scoring this many times the most unusual validation image's score is "far unlike the
# training data": likely no brain MRI at all, and its answers are folded away as a CT slice's
# are. Chosen on validation images, their shifted copies and foreign images of seed SELECT_SEED
# (README, "Far unlike the training data"): at 1.5 no validation image and no copy at the
# moderate severity reached it on the shipped runs, while all pure noise and gradients did.
FAR_MARGIN = 1.5
LIKE, UNLIKE, FAR = 0, 1, 2  # `OodModel.levels`: how unlike the training data an image is
MODEL_FILE = run_files.OOD_SCORE  # in each model's folder of a run: the fitted score


@dataclass
class OodModel:
    """PCA + class means + shared precision matrix, and the validation threshold."""

    mean: np.ndarray  # (d,) feature mean of the training split
    components: np.ndarray  # (d, k) PCA directions
    class_means: np.ndarray  # (C, k)
    precision: np.ndarray  # (k, k)
    threshold: float
    layer: str = FEATURE_LAYER  # whose globally average-pooled output is scored
    # the score from which an image is far unlike the training data (FAR_MARGIN times the
    # highest validation score); None for scores fitted before it existed: never "far"
    far: float | None = None

    def score(self, feats: np.ndarray) -> np.ndarray:
        """Distance to the nearest class mean (N,); larger = less like the training data."""
        z = (np.asarray(feats, np.float64) - self.mean) @ self.components
        diff = z[:, None, :] - self.class_means[None, :, :]
        d2 = np.einsum("nck,kl,ncl->nc", diff, self.precision, diff)
        return np.sqrt(np.maximum(d2.min(axis=1), 0.0))

    def flags(self, feats: np.ndarray) -> np.ndarray:
        return self.score(feats) > self.threshold

    def levels(self, feats: np.ndarray) -> np.ndarray:
        """Per image (N,): LIKE, UNLIKE (over the threshold) or FAR (over `far`)."""
        score = self.score(feats)
        out = (score > self.threshold).astype(np.int8)
        if self.far is not None:
            out[score > self.far] = FAR
        return out

    def save(self, path: Path) -> None:
        """Write to `path` atomically; a failed write (a full disk) leaves no temporary file."""
        tmp = path.with_name(f".{path.name}.tmp.npz")
        try:
            np.savez(tmp, mean=self.mean, components=self.components,
                     class_means=self.class_means, precision=self.precision,
                     threshold=np.array(self.threshold), layer=np.array(self.layer),
                     **({} if self.far is None else {"far": np.array(self.far)}))
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path) -> OodModel:
        with np.load(path) as z:
            layer = str(z["layer"]) if "layer" in z.files else FEATURE_LAYER  # older runs
            far = float(z["far"]) if "far" in z.files else None  # fitted before it existed
            return cls(z["mean"], z["components"], z["class_means"], z["precision"],
                       float(z["threshold"]), layer, far)


def fit(train_feats: np.ndarray, train_y: np.ndarray, val_feats: np.ndarray,
        dims: int = DIMS, quantile: float = QUANTILE, layer: str = FEATURE_LAYER) -> OodModel:
    """Fit on training features and labels; the threshold and the far threshold (`FAR_MARGIN`)
    come from the validation features."""
    x = np.asarray(train_feats, np.float64)
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    components = vt[: min(dims, vt.shape[0])].T
    z = (x - mean) @ components
    classes = np.unique(train_y)
    class_means = np.stack([z[train_y == c].mean(axis=0) for c in classes])
    centred = z - class_means[np.searchsorted(classes, train_y)]
    cov = centred.T @ centred / max(len(z) - len(classes), 1)
    cov += np.eye(len(cov)) * SHRINK * float(np.trace(cov)) / len(cov)
    model = OodModel(mean, components, class_means, np.linalg.inv(cov), 0.0, layer)
    val = model.score(val_feats)
    model.threshold = float(np.quantile(val, quantile))
    model.far = FAR_MARGIN * float(val.max())
    return model


class FeatureExtractor:
    """Pooled features of one or more layers of a Keras model through one traced graph, any
    batch size: an array for one layer, a list of arrays (one per layer) for several."""

    def __init__(self, model: Any, layers: str | Sequence[str] = FEATURE_LAYER) -> None:
        import keras
        import tensorflow as tf

        self.layers = [layers] if isinstance(layers, str) else list(layers)
        outputs = []
        for name in self.layers:
            out = model.get_layer(name).output
            # a feature map is averaged over its positions, as head_pool averages out_relu
            outputs.append(keras.ops.mean(out, axis=(1, 2)) if len(out.shape) == 4 else out)
        graph = keras.Model(model.inputs, outputs)
        spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32)
        self.traced = tf.function(lambda t: graph(t, training=False), input_signature=[spec])
        # Traced here, and its one graph called directly: TensorFlow counts traces made inside
        # calls per Python function, which every extractor shares, so the dashboard's third
        # load of a run's models printed "triggered tf.function retracing" (one trace per
        # model is needed: the graph holds that model's weights)
        self._fn = self.traced.get_concrete_function()
        self._single = isinstance(layers, str)

    def __call__(self, x: np.ndarray, batch: int = 32) -> np.ndarray | list[np.ndarray]:
        import tensorflow as tf

        parts: list[list[np.ndarray]] = [[] for _ in self.layers]
        for i in range(0, len(x), batch):
            outs = self._fn(tf.convert_to_tensor(np.asarray(x[i:i + batch]), tf.float32))
            for k, o in enumerate(outs if isinstance(outs, (list, tuple)) else [outs]):
                parts[k].append(np.asarray(o))
        feats = [np.concatenate(p) if p else np.zeros((0, 0), "float32") for p in parts]
        return feats[0] if self._single else feats


def candidate_layers(model: Any) -> list[str]:
    """`head_pool`, then the explanation layer's resolution stages, coarse to fine."""
    from pipeline.explain.layers import default_layer, stage_layers

    try:
        stages = stage_layers(model, default_layer(model), STAGES)
    except ValueError:  # a model without 4-D layers: the penultimate features only
        return [FEATURE_LAYER]
    # A transfer model's head_pool is the average of its last map: the same features twice.
    return [FEATURE_LAYER, *(s for s in stages if not _averaged_by_head(model, s))]


def _averaged_by_head(model: Any, layer: str) -> bool:
    """Whether `head_pool` is a plain global average of `layer`'s map (FeatureExtractor's
    pooling of that layer would repeat it)."""
    import keras

    head = model.get_layer(FEATURE_LAYER)
    return (isinstance(head, keras.layers.GlobalAveragePooling2D)
            and head.input is model.get_layer(layer).output)


def auroc(in_scores: np.ndarray, out_scores: np.ndarray) -> float:
    """Probability that a foreign image scores higher than an in-distribution one (ties count
    half): the Mann-Whitney U over both counts, which is sklearn's roc_auc_score without its
    input checks (a tenth of ood_run's time on a small run)."""
    from scipy.stats import rankdata

    n_in, n_out = len(in_scores), len(out_scores)
    if not (n_in and n_out):
        raise ValueError(f"AUROC needs scores on both sides, got {n_in} and {n_out}")
    ranks = rankdata(np.r_[in_scores, out_scores])  # ties get their average rank
    return float((ranks[n_in:].sum() - n_out * (n_out + 1) / 2) / (n_in * n_out))


def choose_layer(train: list[np.ndarray], train_y: np.ndarray, val: list[np.ndarray],
                 foreign: dict[str, list[np.ndarray]], layers: Sequence[str]
                 ) -> tuple[int, OodModel, list[dict[str, Any]]]:
    """Fit one score per candidate layer; keep the one whose validation scores are best told
    from `foreign` features (mean AUROC over the kinds; ties keep the earlier layer).
    Returns its index, its fitted score and the table behind the choice."""
    best: tuple[float, int, OodModel] | None = None
    table = []
    for i, layer in enumerate(layers):
        model = fit(train[i], train_y, val[i], layer=layer)
        val_scores = model.score(val[i])
        sel = {k: auroc(val_scores, model.score(f[i])) for k, f in foreign.items()}
        mean = float(np.mean(list(sel.values())))
        table.append({"layer": layer, "mean_auroc": round(mean, 4),
                      "auroc": {k: round(v, 4) for k, v in sel.items()}})
        if best is None or mean > best[0] + 1e-9:
            best = (mean, i, model)
    assert best is not None, "no candidate layer"
    return best[1], best[2], table


def ood_run(run_dir: str | Path, progress: Progress = no_progress,
            data_root: str | Path | None = None) -> dict[str, Any]:
    """Fit every model's OOD score on the run's training split (layer chosen on validation,
    threshold from validation), save `<model>/ood.npz`, and write `ood.json` with how it
    separates the test split from foreign images and from shifted copies of itself
    (`ood_eval`); for an evaluated run also `flags.json`, how often the test answers each
    warning marks were right (`evaluate.flags`); and `split_hashes.json`, which split each image
    of the run is in (`data.membership`). `train` calls it on every new run."""
    from pipeline import artifacts, data, ood_eval, sequence
    from pipeline.data import membership
    from pipeline.evaluate import flags
    from pipeline.predict import Predictor

    started = time.monotonic()
    run = artifacts.open_run(run_dir)
    artifacts.ensure_writable(run.path, "run folder")
    root = run.dataset_root(data_root)
    splits = data.splits_from_json(run.read_json(run_files.SPLITS), root)
    predictor = Predictor(run, check_ood=False)  # the score is refitted: a damaged one is moot
    foreign = ood_eval.foreign_images(ood_eval.foreign_count(len(splits.test)))
    select = ood_eval.foreign_images(ood_eval.foreign_count(len(splits.val)), seed=SELECT_SEED)
    report: dict[str, Any] = {
        "method": "Mahalanobis distance to the nearest class mean of PCA-reduced, globally "
                  "pooled features of one layer (Lee et al., 2018); the layer chosen per model "
                  f"on validation images against foreign images of seed {SELECT_SEED}, the "
                  "AUROCs reported on test images against foreign images of seed 0",
        "dims": DIMS, "quantile": QUANTILE, "far_margin": FAR_MARGIN,
        "far": f"far_threshold: {FAR_MARGIN} times the highest validation score; beyond it an "
               "image is far unlike the training data and its answers are folded away; "
               "test_far, far and shift_far: the shares of the test images, the foreign "
               "images and the shifted copies beyond it",
        "created": artifacts.utc_now(),
        "foreign": {k: len(v) for k, v in foreign.items()},
        "shifts": ood_eval.shift_info(),
        "models": {}}

    def features(m: str, extract: FeatureExtractor, imgs: list[np.ndarray]) -> list[np.ndarray]:
        out = extract(np.stack([predictor.prepare(m, im) for im in imgs]))
        return out if isinstance(out, list) else [out]

    unlike: dict[str, dict[str, bool]] = {}  # per model, test image -> flagged
    fitted: dict[str, tuple[OodModel, np.ndarray]] = {}  # per model: its score, test scores
    chosen: dict[str, tuple[FeatureExtractor, int]] = {}
    for m in run.model_names:
        layers = candidate_layers(predictor.models[m])
        extract = FeatureExtractor(predictor.models[m], layers)
        tr_f, tr_y, _ = ood_eval.split_features(predictor, m, splits.train, extract, progress)
        va_f, _, _ = ood_eval.split_features(predictor, m, splits.val, extract, progress)
        te_f, _, te_rels = ood_eval.split_features(predictor, m, splits.test, extract, progress)
        sel_f = {k: features(m, extract, v) for k, v in select.items()}
        i, model, table = choose_layer(tr_f, tr_y, va_f, sel_f, layers)
        te = model.score(te_f[i])
        fitted[m], chosen[m] = (model, te), (extract, i)
        unlike[m] = dict(zip(te_rels, (te > model.threshold).tolist(), strict=True))
        entry: dict[str, Any] = {
            "layer": model.layer, "threshold": round(model.threshold, 4),
            "far_threshold": round(float(model.far or 0.0), 4), "n_train": int(len(tr_y)),
            "val_flagged": _share(model.score(va_f[i]), model.threshold),
            "test_flagged": _share(te, model.threshold), "test_far": _share(te, model.far),
            "auroc": {}, "flagged": {}, "far": {}, "layer_choice": table}
        for kind, imgs in foreign.items():
            out = model.score(features(m, extract, imgs)[i])
            entry["auroc"][kind] = round(auroc(te, out), 4)
            entry["flagged"][kind] = _share(out, model.threshold)
            entry["far"][kind] = _share(out, model.far)
        report["models"][m] = entry
    for m, per_shift in ood_eval.shifted_features(predictor, splits.test, chosen, progress).items():
        model, te = fitted[m]
        scores = {s: model.score(f) for s, f in per_shift.items()}
        report["models"][m]["shift_auroc"] = {s: round(auroc(te, v), 4)
                                              for s, v in scores.items()}
        report["models"][m]["shift_flagged"] = {s: _share(v, model.threshold)
                                                for s, v in scores.items()}
        report["models"][m]["shift_far"] = {s: _share(v, model.far) for s, v in scores.items()}
    # Saved together at the end: a failure part-way writes nothing (an older fit stays whole).
    for m, (model, _) in fitted.items():
        model.save(run.path / m / MODEL_FILE)
    # which split each image is in, by its hash: pages say "in the training split" of an upload
    artifacts.write_json_atomic(run.path / membership.FILE,
                                membership.split_hashes(splits, progress))
    report["seconds"] = round(time.monotonic() - started, 1)
    artifacts.write_json_atomic(run.path / run_files.OOD_REPORT, report)
    if any((run.path / m / run_files.PREDICTIONS).is_file() for m in run.model_names):
        t2 = sequence.files_flags(root, [r.rel for r in splits.test], progress)
        report["flags"] = flags.audit_run(run.path, unlike, t2)  # written to flags.json
    return report


def _share(scores: np.ndarray, threshold: float | None) -> float:
    """The share of `scores` over `threshold`, to 4 places (0.0 without one)."""
    return 0.0 if threshold is None else round(float(np.mean(scores > threshold)), 4)


def ood_damage(run_path: Path, model: str) -> tuple[OodModel | None, str | None]:
    """(the stored OOD score of a run's model or None, why its file cannot be used or None):
    (None, None) for runs made before it existed. The reason is ours: numpy's own message
    advised loading it "unsafely" (pickles)."""
    path = Path(run_path) / model / MODEL_FILE
    if not path.is_file():
        return None, None
    try:
        return OodModel.load(path), None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        return None, ("not a numpy archive" if isinstance(exc, zipfile.BadZipFile) else (
            "holds objects, not arrays" if "pickle" in str(exc) else type(exc).__name__))


def load_run_ood(run_path: Path, model: str) -> OodModel | None:
    """The stored OOD score of a run's model, or None for runs made before it existed.
    ArtifactError, naming the file and its fix, for a damaged one (`ood_damage`'s reason).
    Those that answer (`Predictor`, `explain`) take `ood_damage` instead: a damaged score
    turns its check off, as a missing one does, and `gaps.missing_checks` says so."""
    from pipeline.artifacts import ArtifactError, shown_path

    ood, why = ood_damage(run_path, model)
    if why:
        # the run's folder, as any command takes it: its id alone needs the right --artifacts
        where = shown_path(Path(run_path))
        raise ArtifactError(f"damaged file {model}/ood.npz of run {Path(run_path).name} "
                            f"({why}): fit it again with `python -m pipeline ood --run "
                            f"{where}`")
    return ood


def unlike_scorer(run_path: Path, name: str, model: Any
                  ) -> Callable[[np.ndarray], np.ndarray] | None:
    """A function from a prepared batch (N, S, S, 3) to how unlike the loaded `model`'s training
    data each image is (`OodModel.levels`: LIKE, UNLIKE over the run's stored threshold, FAR
    over its far threshold; a truthy level is "unlike"), built once (one traced
    graph); None when the run has no usable OOD score for `name` (`python -m pipeline ood`
    adds it; `gaps.missing_checks` says so)."""
    ood, _ = ood_damage(run_path, name)
    return None if ood is None else ood_scorer(ood, model)


def ood_scorer(ood: OodModel, model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """`unlike_scorer` for an OOD score already loaded (`Predictor` loads it once, to check it)."""
    extract = FeatureExtractor(model, ood.layer)
    return lambda x: ood.levels(extract(np.asarray(x, "float32")))
