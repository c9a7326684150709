"""ROAD's "debiasing" imputation (Rong et al., 2022): removed pixels are filled by the noisy
linear imputation of the paper, so the filled-in region carries no shape of the removal mask
that a model could read (the bias of blur or black baselines).

Each removed pixel takes the weighted average of its 8 neighbours (weight 1/6 for the 4 direct
ones, 1/12 for the diagonals, as in the paper's reference code), removed neighbours included.
That is one sparse linear system over all removed pixels, solved exactly (scipy's SuperLU), with
the three colour channels as three right-hand sides of the same matrix; then Gaussian noise of
std `noise` x the image's value range is added to the filled pixels.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import splu

# (dy, dx, weight): the paper's neighbourhood
_NEIGHBOURS = ((-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
               (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12))
NOISE = 0.01  # the paper's default, as a share of the value range (0-255 images: std 2.55)


def noisy_linear_impute(image: np.ndarray, removed: np.ndarray, noise: float = NOISE,
                        seed: int = 0) -> np.ndarray:
    """`image` (H, W, C) with the pixels where `removed` (H, W) is True replaced by the noisy
    linear imputation. At least one pixel must be kept (else nothing anchors the solution)."""
    img = np.asarray(image, dtype=np.float64)
    gone = np.asarray(removed, dtype=bool)
    if img.ndim != 3 or gone.shape != img.shape[:2]:
        raise ValueError(f"image (H, W, C) and mask (H, W) must match, got {img.shape} and "
                         f"{gone.shape}")
    if not gone.any():
        return img.astype(np.float32)
    if gone.all():
        raise ValueError("noisy linear imputation needs at least one kept pixel")
    h, w = gone.shape
    index = np.full((h, w), -1, dtype=np.int64)
    ys, xs = np.nonzero(gone)
    n = len(ys)
    index[ys, xs] = np.arange(n)
    rows, cols, vals = [], [], []
    diag = np.zeros(n)
    rhs = np.zeros((n, img.shape[2]))
    for dy, dx, wt in _NEIGHBOURS:
        ny, nx = ys + dy, xs + dx
        ok = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        src, ny, nx = np.nonzero(ok)[0], ny[ok], nx[ok]
        diag[src] += wt
        j = index[ny, nx]
        unknown = j >= 0
        rows.append(src[unknown])
        cols.append(j[unknown])
        vals.append(np.full(int(unknown.sum()), -wt))
        np.add.at(rhs, src[~unknown], wt * img[ny[~unknown], nx[~unknown]])
    rows.append(np.arange(n))
    cols.append(np.arange(n))
    vals.append(diag)
    a = sparse.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(n, n))
    filled = splu(a).solve(rhs)
    span = float(img.max() - img.min()) or 1.0
    filled += np.random.default_rng(seed).normal(0.0, noise * span, filled.shape)
    out = img.copy()
    out[ys, xs] = filled
    return out.astype(np.float32)
