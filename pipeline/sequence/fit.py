"""Fit the T2/FLAIR probe (`probe.json`) on our labels of Training/ images, and measure it on
Testing/ (another source, never used to fit or choose):

    python -m pipeline.sequence.fit --data ../shared/data/brain-tumor-mri-sartaj

Training images: those of the official split's training pool (Training/ without copies of
Testing/ images, as `train --official-test` uses) that `labels.csv` reads T1, T2 or FLAIR, and
the pool's 512 x 512 tumour images (the figshare collection, T1 with contrast). The strength of
the regularisation is chosen by 5-fold cross-validated AUC on them; the threshold gives
`FALSE_ALARMS` of the labelled T1 images out of fold (the figshare ones are too easy to count).
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import sequence

C_GRID = (0.001, 0.003, 0.01, 0.03)  # logistic regression's inverse regularisation strengths
FALSE_ALARMS = 0.02  # share of other-source T1 slices (out of fold) the threshold lets through
POSITIVE = ("T2", "FLAIR")
KNOWN = ("T1", *POSITIVE)  # CT and "unsure" are left out of fitting and of the record


def read_labels(path: str | Path = sequence.LABELS_FILE) -> dict[str, str]:
    """{dataset-relative path: sequence} from `labels.csv` (lines starting '#' are comments)."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        return {r["path"]: r["sequence"] for r in rows}


def fit_linear(x: np.ndarray, y: np.ndarray, counted: np.ndarray, seed: int = 0
               ) -> dict[str, Any]:
    """The probe's numbers from features `x` and labels `y` (True: T2 or FLAIR): C by 5-fold
    AUC over the images in `counted` (the labelled ones: the figshare slices are too easy to
    tell; ties: the stronger regularisation), the scaler folded into the coefficients, and the
    threshold at `FALSE_ALARMS` of the out-of-fold scores of the negatives in `counted`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def model(c: float):
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))

    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    oof = {c: cross_val_predict(model(c), x, y, cv=folds, method="predict_proba")[:, 1]
           for c in C_GRID}
    auc = {c: round(float(roc_auc_score(y[counted], p[counted])), 3) for c, p in oof.items()}
    best = min(C_GRID, key=lambda c: (-auc[c], c))
    negatives = oof[best][counted & ~y]
    threshold = float(np.quantile(negatives, 1 - FALSE_ALARMS))
    fitted = model(best).fit(x, y)
    scaler, lr = fitted[0], fitted[1]
    coef = lr.coef_[0] / scaler.scale_
    intercept = float(lr.intercept_[0] - np.sum(lr.coef_[0] * scaler.mean_ / scaler.scale_))
    return {"coef": coef, "intercept": intercept, "threshold": threshold, "C": best,
            "cv_auc": {str(c): a for c, a in auc.items()},
            "cv_recall": round(float((oof[best][y] >= threshold).mean()), 3)}


def record(flags: np.ndarray, scores: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """How the hint did on labelled slices: T2/FLAIR found, T1 falsely flagged, AUC."""
    from sklearn.metrics import roc_auc_score

    lab = np.array(labels)
    pos, neg = np.isin(lab, POSITIVE), lab == "T1"
    known = pos | neg
    return {"t2_flair": int(pos.sum()), "found": int(flags[pos].sum()),
            "t1": int(neg.sum()), "false_alarms": int(flags[neg].sum()),
            "auc": round(float(roc_auc_score(pos[known], scores[known])), 3),
            "other": {s: [int(flags[lab == s].sum()), int((lab == s).sum())]
                      for s in sorted(set(labels) - set(KNOWN))}}


def _pool(root: Path) -> tuple[list[str], list[str], dict[str, str]]:
    """(the training pool's relative paths, Testing/'s, each path's class) for the dataset."""
    from pipeline.data import discover, make_splits

    splits = make_splits(discover(root), official_test=True, dedupe=True)
    classes = {r.rel: r.label for r in [*splits.train, *splits.val, *splits.test]}
    return ([r.rel for r in [*splits.train, *splits.val]], [r.rel for r in splits.test],
            classes)


def _features(root: Path, rels: list[str]) -> np.ndarray:
    from pipeline.images import read_image

    f = sequence.features(np.stack([sequence.prepare(read_image(root / r)) for r in rels]))
    if f is None:
        raise SystemExit(f"cannot fit the T2/FLAIR probe: {sequence.unavailable()}")
    return f


def fit(root: Path, labels: Mapping[str, str]) -> dict[str, Any]:
    """Fit on the training pool of the dataset at `root`; the probe.json object, with its
    Testing/ record."""
    from pipeline.data.balance import native_size

    pool, test, classes = _pool(root)
    train = [r for r in pool if labels.get(r) in KNOWN or (
        r not in labels and classes[r] != "no_tumor" and native_size(root / r) == "512x512")]
    y = np.array([labels.get(r) in POSITIVE for r in train])
    counted = np.array([r in labels for r in train])
    fitted = fit_linear(_features(root, train), y, counted)
    probe = sequence.Probe(fitted["coef"], fitted["intercept"], fitted["threshold"],
                           sequence.SIDE)
    rated = [r for r in test if r in labels]
    scores = probe.scores(_features(root, rated))
    return {"side": sequence.SIDE, "threshold": round(probe.threshold, 4),
            "intercept": probe.intercept, "coef": [float(f"{v:.6g}") for v in probe.coef],
            "fitted_on": {"images": len(train), "t2_flair": int(y.sum()),
                          "labelled_t1": int((counted & ~y).sum()),
                          "figshare_t1": int((~counted).sum())},
            "C": fitted["C"], "cv_auc": fitted["cv_auc"], "cv_recall": fitted["cv_recall"],
            "false_alarms_target": FALSE_ALARMS,
            "testing": record(scores >= probe.threshold, scores, [labels[r] for r in rated])}


def main(argv: list[str] | None = None) -> None:
    """Fit, write probe.json, print the Testing/ record."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path, help="the Sartaj dataset folder")
    ap.add_argument("--out", type=Path, default=sequence.PROBE_FILE)
    args = ap.parse_args(argv)
    obj = fit(args.data, read_labels())
    args.out.write_text(json.dumps(obj) + "\n", encoding="utf-8")
    shown = {k: v for k, v in obj.items() if k not in ("coef", "intercept")}
    print(json.dumps(shown, indent=1))


if __name__ == "__main__":
    main()
