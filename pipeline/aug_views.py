"""Augmented views for the transfer recipe: the cached copies of each training image.

The frozen lower backbone runs once per image *view* (original, mirrored and a few copies made by
the model's own augmentation layers) and `fit` trains the top on those cached activations;
`ViewBatches` serves them, one random view of each image per epoch, keyed on (seed, epoch).
Guided fine-tuning moves each image's mask with its view (`iter_views(..., masks)`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import keras
import numpy as np

from pipeline.augment import geometric_augs
from pipeline.names import Progress


class ViewBatches(keras.utils.PyDataset):
    """Batches of cached activations, drawing one random view of each image per epoch.

    The order and views of epoch e come from (seed, e), set by `EpochOrder` when the epoch
    begins, not from how often Keras resets the data: it resets more often under a
    tf.distribute strategy (it reads a batch to build the model first), and a resumed fit
    starts at a later epoch; both then see the batches one uninterrupted process sees.
    """

    def __init__(self, views: list[np.ndarray], y1h: np.ndarray, batch: int, seed: int,
                 sample_weight: np.ndarray | None = None,
                 masks: list[np.ndarray] | None = None) -> None:
        super().__init__()
        self.views, self.y, self.batch, self.sw = views, y1h, batch, sample_weight
        self.masks = masks  # guided fine-tuning: each view's allowed region at feature-map size
        self.seed = seed
        self.set_epoch(0)

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch)

    def set_epoch(self, epoch: int) -> None:
        rng = np.random.default_rng([self.seed, epoch])
        self.order = rng.permutation(len(self.y))
        self.pick = rng.integers(0, len(self.views), len(self.y))

    def keeper(self) -> keras.callbacks.Callback:
        """The callback that moves this data to each epoch as it begins."""
        return EpochOrder(self)

    def __getitem__(self, i: int):
        idx = self.order[i * self.batch:(i + 1) * self.batch]
        x = np.stack([self.views[v][j] for v, j in zip(self.pick[idx], idx, strict=True)])
        x = x.astype("float32")
        if self.masks is not None:
            x = (x, np.stack([self.masks[v][j] for v, j in zip(self.pick[idx], idx,
                                                                  strict=True)]).astype("float32"))
        if self.sw is None:
            return x, self.y[idx]
        return x, self.y[idx], self.sw[idx]


class EpochOrder(keras.callbacks.Callback):
    """Sets a `ViewBatches`' epoch when the epoch begins (see its docstring)."""

    def __init__(self, batches: ViewBatches) -> None:
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.batches.set_epoch(epoch)


def augmented_views(model: keras.Model, x: np.ndarray, n_views: int, seed: int
                    ) -> list[np.ndarray]:
    """Original, mirrored and randomly augmented copies of x, via the model's own aug layers."""
    return [v for v, _ in iter_views(model, x, n_views, seed)]


def iter_views(model: keras.Model, x: np.ndarray, n_views: int, seed: int,
               masks: np.ndarray | None = None, side: tuple[int, int] | None = None
               ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """(view, mask view) pairs: original, mirrored and randomly augmented copies of x, via the
    model's own aug layers, made one at a time (the caller can drop each before the next; one
    view asked for: the original only). Guided fine-tuning gives `masks` (N, H, W) in 0-1: each
    view's mask is moved by the same geometric layers as its image and shrunk to `side` (a
    feature map's size; default H x W) batch by batch, so no full-size copy is ever held.
    Without masks the mask views are None."""
    shape = side or (masks.shape[1:3] if masks is not None else (0, 0))
    yield x, None if masks is None else shrink_masks(masks, shape)
    if n_views < 2:
        return
    flipped = None if masks is None else shrink_masks(masks[:, :, ::-1], shape)
    yield x[:, :, ::-1, :].copy(), flipped
    aug_names = [layer.name for layer in model.layers if layer.name.startswith("aug_")]
    moving = geometric_augs() if masks is not None else frozenset()
    for v in range(2, n_views if aug_names else 2):
        out = np.empty_like(x)  # filled in place: no list of parts beside the whole
        mout = None if masks is None else np.empty((len(x), *shape), "float16")
        order = np.random.default_rng(seed + v).permutation(len(x))  # x is in class order;
        for i in range(0, len(x), 64):  # aug_histmatch pairs within a chunk: mix the classes
            idx = np.sort(order[i:i + 64])
            t = keras.ops.convert_to_tensor(x[idx].astype("float32"))
            m = None if masks is None else \
                keras.ops.convert_to_tensor(masks[idx, ..., None].astype("float32") * 255)
            for n in aug_names:
                if m is not None and n in moving:  # one call: the same transform
                    both = model.get_layer(n)(keras.ops.concatenate([t, m], -1), training=True)
                    t, m = both[..., :3], both[..., 3:]
                else:
                    t = model.get_layer(n)(t, training=True)
            out[idx] = np.clip(keras.ops.convert_to_numpy(t), 0, 255)
            if mout is not None:
                mout[idx] = shrink_masks(
                    np.clip(keras.ops.convert_to_numpy(m)[..., 0] / 255.0, 0.0, 1.0), shape)
        yield out, mout
        del out, mout  # a paused generator would otherwise keep the view alive beside the next
        keras.utils.set_random_seed(seed + v)


def shrink_masks(masks: np.ndarray, side: tuple[int, int]) -> np.ndarray:
    """(N, H, W) masks in 0-1 as float16 shares at a feature map's size (area averaging, as
    `guidance.outside_share` does at full size), 256 at a time: all 2220 training masks at
    224 px in float32 would be 445 MB at once."""
    out = np.empty((len(masks), *side), "float16")
    for i in range(0, len(masks), 256):
        t = keras.ops.image.resize(masks[i:i + 256, ..., None].astype("float32"), side,
                                   interpolation="area")
        out[i:i + 256] = keras.ops.convert_to_numpy(t)[..., 0]
    return out


def view_count(model: keras.Model, n_views: int) -> int:
    """How many views `iter_views` makes: without augmentation layers only the original and
    its mirror exist."""
    has_aug = any(layer.name.startswith("aug_") for layer in model.layers)
    return max(1, n_views) if has_aug else min(max(1, n_views), 2)


def predict_batches(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch: int,
                    progress: Progress, desc: str, dtype: str = "float16") -> np.ndarray:
    """fn over x in batches, as one array (float16 by default: cached activations are large)."""
    out = []
    for i in range(0, len(x), batch):
        out.append(fn(x[i:i + batch].astype("float32")).astype(dtype))
        progress(desc, min(i + batch, len(x)), len(x))
    return np.concatenate(out)
