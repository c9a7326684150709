"""Explanation-guided training: "right for the right reasons" (Ross et al., 2017), Grad-CAM form.

In the Sartaj data the tumour images come mostly from one collection and the no-tumour images
from others, so a model can learn the source instead of the tumour. This trainer adds to the
classification loss `guidance` times the share of the true class's Grad-CAM evidence that lies
outside where the evidence belongs: the tumour box for tumour images with a box
(`../shared/data/brain-tumor-mri-sartaj-boxes/`), the head for every other image.

Ross et al. penalise input gradients, which needs a second-order gradient per step. For a network
whose head is global pooling then one dense layer (ours), Grad-CAM has a closed form: the gradient
of log p_c with respect to the pooled features is W_c - sum_j p_j W_j, and averaging over the map
gives Grad-CAM's channel weights (for average *and* max pooling, whose gradient sums to the same
weight). The penalty therefore costs one einsum on the last feature map, not a second backward
pass. `score="log_prob"` (the shipped recipes) penalises that map. The dashboard's Grad-CAM
explains the class *logit*, whose channel weights are W_c alone: evidence every class shares
(W_c - sum_j p_j W_j cancels it) is invisible to the log-prob penalty but drawn by the
dashboard. `score="logit"` penalises the map the dashboard draws.

Augmentation runs here, not inside the model, so that geometric transforms move the mask with the
image; the saved model is the plain one (no augmentation layers, which are inactive at inference).
Transfer models (cached-activation recipe, `fit._fit_transfer_cached`) are guided in their
fine-tuning phase: their cached views are made with the mask moved alongside, and the same
`GuidedTrainer` trains the top blocks on them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np

from pipeline import images
from pipeline.config_rules import GUIDANCE_SCORES
from pipeline.data.arrays import LoadedArrays
from pipeline.data.hashing import parallel_map
from pipeline.explain.masks import find_mask, head_mask_in_frame, prepare_mask, read_mask
from pipeline.names import Progress


def allowed_masks(arrays: LoadedArrays, masks_dir: Path | None, size: int, crop: bool,
                  progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N, size, size) uint8 regions where evidence belongs (1 inside), in the model's frame,
    and (N,) bool: which images had a tumour mask. The others get their head region."""

    # Written in place, one row per image: a list of masks stacked at the end would hold them
    # twice (2 x 115 MB for 2284 images at 224 px) at the top of MobileNetV2's training memory.
    masks = np.zeros((len(arrays.records), size, size), np.uint8)

    def work(item: tuple[int, Any]) -> bool:
        i, rec = item
        img = images.read_image(rec.path)
        path = find_mask(masks_dir, rec.rel) if masks_dir is not None else None
        if path is not None:
            try:
                mask = read_mask(path)
                if mask.shape == img.shape[:2] and mask.any():
                    masks[i] = prepare_mask(mask, img, size, crop)
                    return True
            except (images.ImageError, OSError):
                pass  # an unreadable mask: fall back to the head, as for unboxed images
        masks[i] = head_mask_in_frame(img, size, crop)
        return False

    boxed = parallel_map(work, list(enumerate(arrays.records)), "guidance masks", progress)
    return masks, np.array(boxed, dtype=bool)


SCORES = GUIDANCE_SCORES  # what the penalised Grad-CAM explains (ModelConfig.guidance_score)


def outside_share(fmap: Any, probs: Any, y: Any, kernel: Any, allowed: Any,
                  score: str = "log_prob") -> Any:
    """Per image: share of the true class's Grad-CAM (of its log-probability, or of its logit
    with `score="logit"`) outside `allowed`; 1 for an empty map.

    fmap (B, h, w, K) is the Grad-CAM layer; kernel (D, C) the dense head, D = K (average pooling)
    or 2K (average and max pooling concatenated); allowed (B, H, W) in [0, 1] at input size.
    """
    from keras import ops

    k = ops.shape(fmap)[-1]
    w = kernel[:k] + kernel[k:] if kernel.shape[0] == 2 * fmap.shape[-1] else kernel
    if score not in SCORES:
        raise ValueError(f"guidance score must be one of {SCORES}, got {score!r}")
    coef = ops.cast(y, "float32") - (probs if score == "log_prob" else 0.0)
    alpha = ops.matmul(coef, ops.transpose(w))  # (B, K)
    cam = ops.relu(ops.einsum("bhwk,bk->bhw", fmap, alpha))
    small = ops.image.resize(ops.expand_dims(allowed, -1), (fmap.shape[1], fmap.shape[2]),
                             interpolation="area")[..., 0]
    total = ops.sum(cam, axis=(1, 2))
    # 1 - the share inside, not outside / total: the two agree for any non-empty map, but the
    # latter rates an all-zero map as perfect. A logit-guided CNN (experiment X5) found that
    # escape: Grad-CAM of every tumour class became empty on all test images.
    return 1.0 - ops.sum(cam * small, axis=(1, 2)) / (total + 1e-6)


class GuidedTrainer(keras.Model):
    """Trains `core` with the guidance penalty; inference and validation go through `core`."""

    def __init__(self, core: keras.Model, feature_layer: str, weight: float,
                 augment: list[tuple[keras.Layer, bool]],
                 features: keras.Model | None = None, score: str = "log_prob",
                 transplant: float = 0.0, seed: int = 0, erase: float = 0.0,
                 no_tumor: int = -1, mixup: float = 0.0, segment: float = 0.0,
                 smooth_lesion: float = 0.0) -> None:
        """`features` maps the core's input to (feature map, probabilities); by default it is
        cut from `core` (give it for a core that was itself cut from a bigger graph).
        `transplant` > 0 expects batches with per-image roles (`guided_dataset(roles=...)`)
        and appends tumour transplants (pipeline/transplant.py) before augmentation; so does
        `erase` > 0, whose tumour-free copies are labelled class index `no_tumor`. `mixup` > 0
        blends the augmented batch in pairs (`transplant.mixup`, Beta(mixup, mixup)). `segment`
        > 0 adds the tumour-mask task (pipeline/tumour_mask.py) at that weight; it expects
        roles in the batches, as transplants do; so does `smooth_lesion` > 0, which turns boxed
        tumours into smooth blobs in place first (`transplant.smooth_lesion`)."""
        super().__init__(name=f"{core.name}_guided")
        self.core = core
        self.features = features or keras.Model(
            core.input, [core.get_layer(feature_layer).output, core.output])
        self.weight = float(weight)
        self.score = score
        self.augment = augment
        self.transplant = float(transplant)
        self.erase, self.no_tumor = float(erase), int(no_tumor)
        if self.erase > 0 and self.no_tumor < 0:
            raise ValueError("erase needs the no-tumour class index")
        self.smooth_lesion = float(smooth_lesion)
        self.seed = (keras.random.SeedGenerator(seed)
                     if transplant > 0 or erase > 0 or smooth_lesion > 0 else None)
        self.mix = keras.layers.MixUp(alpha=float(mixup), seed=seed + 1) if mixup > 0 else None
        self.head = core.get_layer("predictions")
        self.outside = keras.metrics.Mean(name="outside_share")
        self.segment = float(segment)
        self.mask_head = None
        if self.segment > 0:  # built here: a variable made inside the traced step would not be
            shape = self.features.output[0].shape  # tracked before the optimizer is built
            self.mask_head = keras.layers.Conv2D(1, 1, name="tumour_mask_head")
            self.mask_head.build(shape)
            self.mask_loss = keras.metrics.Mean(name="mask_loss")

    def call(self, x: Any, training: bool = False) -> Any:
        return self.core(x, training=training)

    def _augmented(self, x: Any, allowed: Any) -> tuple[Any, Any]:
        from keras import ops

        m = ops.expand_dims(ops.cast(allowed, "float32"), -1) * 255.0
        for layer, geometric in self.augment:
            if geometric:  # one call on image and mask stacked: both get the same transform
                both = layer(ops.concatenate([x, m], axis=-1), training=True)
                x, m = both[..., :3], both[..., 3:]
            else:
                x = layer(x, training=True)
        return x, ops.clip(m[..., 0] / 255.0, 0.0, 1.0)

    def train_step(self, data: Any) -> dict[str, Any]:
        import tensorflow as tf
        from keras import ops

        inputs, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, allowed = ops.cast(inputs[0], "float32"), inputs[1]
        n_in = ops.shape(x)[0]
        if self.smooth_lesion > 0:  # in place, before transplants take a tumour elsewhere
            from pipeline.transplant import smooth_lesion

            x = smooth_lesion(x, allowed, inputs[2], self.smooth_lesion, self.seed)
        if self.transplant > 0 or self.erase > 0:
            from pipeline.transplant import erase, transplant

            role, n = inputs[2], ops.shape(x)[0]
            if self.transplant > 0:
                x, allowed, y, sample_weight = transplant(x, allowed, y, role, self.transplant,
                                                          self.seed, sample_weight)
                # composites are neither donors nor recipients of the erasure below
                role = ops.pad(ops.cast(role, "int32"), [[0, ops.shape(x)[0] - n]])
            if self.erase > 0:
                x, allowed, y, sample_weight = erase(x, allowed, y, role, self.erase, self.seed,
                                                     self.no_tumor, sample_weight)
        x, allowed = self._augmented(x, allowed)
        if self.mix is not None:
            from pipeline.transplant import mixup

            x, allowed, y, sample_weight = mixup(self.mix, x, allowed, y, sample_weight)
        with tf.GradientTape() as tape:
            fmap, probs = self.features(x, training=True)
            ce = self.compute_loss(x=x, y=y, y_pred=probs, sample_weight=sample_weight)
            share = outside_share(fmap, probs, y, self.head.kernel, allowed, self.score)
            loss = ce + self.weight * ops.mean(share)
            if self.mask_head is not None:
                from pipeline import tumour_mask

                # images appended above (composites, erased copies) have role 0: no target
                role = ops.pad(ops.cast(inputs[2], "int32"), [[0, ops.shape(x)[0] - n_in]])
                target, counts = tumour_mask.targets(allowed, role, tuple(fmap.shape[1:3]))
                aux = tumour_mask.loss(self.mask_head(fmap), target, counts)
                loss = loss + self.segment * aux
        grads = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights, strict=True))
        self.outside.update_state(share)
        if self.mask_head is not None:
            self.mask_loss.update_state(aux)
        for metric in self.metrics:  # Keras' documented pattern for a custom train_step
            if metric.name == "loss":
                metric.update_state(loss)
            elif metric not in self._own_metrics():
                metric.update_state(y, probs, sample_weight=sample_weight)
        return self.get_metrics_result()

    def _own_metrics(self) -> list[keras.metrics.Metric]:
        return [self.outside] + ([self.mask_loss] if self.mask_head is not None else [])

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return [*super().metrics, *self._own_metrics()]


_FORMS = {"log_prob": "log p(true class)", "logit": "the true class's logit"}


def guided_dataset(x: np.ndarray, allowed: np.ndarray, y1h: np.ndarray, batch: int,
                   seed: int, roles: np.ndarray | None = None) -> Any:
    """Shuffled batches of ((float32 pixels, float32 allowed mask[, int32 roles]), one-hot
    labels); roles (pipeline/transplant.py) for a trainer with transplants."""
    import tensorflow as tf

    inputs = (x, allowed) if roles is None else (x, allowed, roles.astype("int32"))
    ds = tf.data.Dataset.from_tensor_slices((inputs, y1h.astype("float32")))
    ds = ds.shuffle(max(1, len(x)), seed=seed, reshuffle_each_iteration=True).batch(batch)
    ds = ds.map(lambda a, b: ((tf.cast(a[0], tf.float32), tf.cast(a[1], tf.float32), *a[2:]),
                              b), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def prepare(job: Any) -> tuple[np.ndarray, np.ndarray]:
    """The training images' allowed regions (N, size, size) uint8 and which had a tumour box
    (N,) bool, recorded in the job's state."""
    built, mc = job.built, job.mc
    allowed, boxed = allowed_masks(job.train, job.masks_dir, mc.image_size, mc.crop_head,
                                   job.progress)
    job.state.guidance = {"weight": mc.guidance, "train_images": int(len(boxed)),
                          "with_tumour_box": int(boxed.sum()),
                          "masks_dir": _shown(job.masks_dir),
                          "layer": built.gradcam_layer,
                          "form": f"Grad-CAM of {_FORMS[mc.guidance_score]}",
                          "phases": ["finetune"] if built.transfer else ["train"],
                          "transplant": mc.transplant, "erase": mc.erase,
                          "mixup": mc.mixup, "segment": mc.segment,
                          "smooth_lesion": mc.smooth_lesion}
    job.say(f"{built.name}: guidance {mc.guidance} with {int(boxed.sum())} tumour boxes among "
            f"{len(boxed)} training images (the rest: head region)")
    return allowed, boxed


def fit_guided(job: Any) -> None:
    """`fit.fit` for a from-scratch model with `mc.guidance > 0` (one phase, as `_fit_plain`).
    Transfer models are guided in their fine-tuning phase instead (`fit._fit_transfer_cached`)."""
    from pipeline import schedules
    from pipeline.augment import augmentation_layers
    from pipeline.fit import _compile, _epoch_log, bn_refresh, class_weights, resume_steering
    from pipeline.names import NO_TUMOR

    built, mc, cfg, state = job.built, job.mc, job.cfg, job.state
    if "train" in state.phase_done:  # a resumed run whose training had finished: no mask pass
        return
    allowed, boxed = prepare(job)
    augment = augmentation_layers(cfg.seed, mc.augment_strength) if cfg.augment else []
    no_tumor = next((int(k) for r, k in zip(job.train.records, job.train.y, strict=True)
                     if r.label == NO_TUMOR), -1)  # the class index erased copies get
    trainer = GuidedTrainer(built.model, built.gradcam_layer, mc.guidance, augment,
                            score=mc.guidance_score, transplant=mc.transplant, seed=cfg.seed,
                            erase=mc.erase, no_tumor=no_tumor, mixup=mc.mixup,
                            segment=mc.segment, smooth_lesion=mc.smooth_lesion)
    part = None  # per image: who has a tumour box, who none (the options that need it)
    if mc.transplant > 0 or mc.erase > 0 or mc.segment > 0 or mc.smooth_lesion > 0:
        from pipeline.transplant import roles

        part = roles(boxed, [r.label for r in job.train.records], NO_TUMOR)
    y_tr = keras.utils.to_categorical(job.train.y, job.num_classes)
    y_va = keras.utils.to_categorical(job.val.y, job.num_classes)
    from pipeline import data

    ds_tr = guided_dataset(job.train.x, allowed, y_tr, cfg.batch_size, cfg.seed, part)
    ds_va = data.make_tf_dataset(job.val.x, y_va, cfg.batch_size)
    _compile(trainer, mc, mc.learning_rate, job.num_classes)
    trainer.fit(ds_tr, shuffle=False,  # ds_tr shuffles itself (Keras warns on True)
                validation_data=ds_va, epochs=mc.epochs,
                initial_epoch=state.start_epoch("train"),
                class_weight=class_weights(job.train.y, job.num_classes)
                if cfg.class_weights else None,
                callbacks=[*schedules.callbacks(mc.patience, mc.lr_schedule,
                                                mc.learning_rate, mc.epochs, ema=mc.ema > 0,
                                                refresh=bn_refresh(job),
                                                **resume_steering(job, "train")),
                           _epoch_log(job, "train", mc.epochs)],
                verbose=0)
    state.phase_done.append("train")
    state.phase, state.phase_epoch = None, 0


def _shown(path: Path | None) -> str | None:
    """A masks folder as recorded in the manifest: relative to the project, never absolute."""
    from pipeline.artifacts import relative_to_project

    if path is None:
        return None
    rel = relative_to_project(Path(path))
    return rel if rel is not None else Path(path).name
