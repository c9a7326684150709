"""Latency in this process, warm: explanations per method and model, predictions, a batch rate.

p50/p95 over repeated single-image calls. Our Grad-CAM, the floor and the bare forward pass are
timed round-robin, so load changes on a shared machine hit all three alike.

The floor is the one definition of what a single Grad-CAM cannot beat: one forward and one
backward pass of the same model, differentiated w.r.t. the Grad-CAM layer's output (not the input:
Grad-CAM needs no gradient below that layer). `gradcam_ratio_to_floor` in the report is p50 of our
Grad-CAM / p50 of the floor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pipeline.bench.timing import time_calls, time_round_robin

FLOOR_DEFINITION = ("tf.function: forward + gradient of the top softmax score w.r.t. the Grad-CAM "
                    "layer output, one image")


def floor_fn(model: Any, layer: str) -> Callable[[Any], Any]:
    """The floor (`FLOOR_DEFINITION`), compiled: x -> d(top class score) / d(feature map of
    `layer`), one forward and one backward pass."""
    import keras
    import tensorflow as tf

    both = keras.Model(model.inputs, [model.get_layer(layer).output, model.outputs[0]])
    spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32)

    @tf.function(input_signature=[spec])
    def floor(x: Any) -> Any:
        with tf.GradientTape() as tape:
            fmap, probs = both(x, training=False)
            top = tf.reduce_max(probs, axis=-1)
        return tape.gradient(top, fmap)

    return floor


def explain_benchmark(run: Any, images_by_model: dict[str, np.ndarray], repeats: int,
                      tick: Callable[[str], None], methods: Sequence[str] | None = None
                      ) -> dict[str, Any]:
    """Single-image latency per method and model (see `explain_latency`)."""
    out: dict[str, Any] = {}
    for name, x in images_by_model.items():
        tick(f"explanation latency: {name}")
        out[name] = explain_latency(run.load_model(name), x,
                                    run.model_info(name).get("gradcam_layer"), repeats, methods)
    return out


def explain_latency(model: Any, x: np.ndarray, layer: str | None, repeats: int,
                    methods_timed: Sequence[str] | None = None) -> dict[str, Any]:
    """One prepared image x (H, W, 3): our Explainer per method (`methods_timed`, default every
    method; Grad-CAM and SmoothGrad always), tf-keras-vis Gradcam built per request, the floor
    (forward + backward to the layer) and the bare forward pass, in ms."""
    import tensorflow as tf

    from pipeline.explain import METHODS, REGISTRY, Explainer

    explainer = Explainer(model, layer)
    layer = explainer.layer
    xn = x[None].astype(np.float32)
    xt = tf.constant(xn)
    floor = floor_fn(model, layer)
    spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32)
    forward = tf.function(lambda v: model(v, training=False), input_signature=[spec])
    core = time_round_robin({
        "gradcam": lambda: explainer(xn, method="gradcam"),
        "floor": lambda: floor(xt).numpy(),
        "forward": lambda: forward(xt).numpy(),
    }, repeats=repeats)
    methods = {"gradcam": core["gradcam"]}
    slow_repeats = max(2, repeats // 4)  # Score-CAM / SmoothGrad cost 10-30 passes each
    timed = set(METHODS if methods_timed is None else methods_timed) | {"smoothgrad"}
    for method in METHODS:
        if method != "gradcam" and method in timed:
            n = slow_repeats if REGISTRY[method].cost == "slow" else max(3, repeats // 2)
            methods[method] = time_calls(lambda m=method: explainer(xn, method=m), n)
    target = int(np.argmax(explainer.predict(xn)[0]))
    per_request = time_calls(_tf_keras_vis_per_request(model, layer, xn, target),
                             max(2, repeats // 4), warmup=1)
    vis_smooth = time_calls(tf_keras_vis_smoothgrad(explainer, xn, target), slow_repeats,
                            warmup=1)
    slowest = max(methods, key=lambda m: methods[m]["p50"])
    return {
        "layer": layer, "input_shape": list(x.shape), "repeats": repeats,
        "ours_ms": methods,
        "slowest_method": slowest, "slowest_method_ms": methods[slowest]["p50"],
        "smooth_samples": explainer.smooth_samples,
        "tf_keras_vis_smoothgrad_ms": vis_smooth,
        "smoothgrad_speedup_vs_tf_keras_vis": round(
            vis_smooth["p50"] / methods["smoothgrad"]["p50"], 1),
        "tf_keras_vis_gradcam_per_request_ms": per_request,
        "floor_ms": core["floor"],
        "forward_ms": core["forward"],
        "floor_definition": FLOOR_DEFINITION,
        "gradcam_ratio_to_floor": round(core["gradcam"]["p50"] / core["floor"]["p50"], 3),
        "tf_keras_vis_ratio_to_floor": round(per_request["p50"] / core["floor"]["p50"], 2),
        "speedup_vs_tf_keras_vis": round(per_request["p50"] / core["gradcam"]["p50"], 1),
    }


def both_models(explain: dict[str, Any]) -> dict[str, Any]:
    """Per method, p50 ms for one image explained by every benchmarked model (summed: the
    dashboard explains an upload with each model in turn), and the slowest such method."""
    per_model = [v["ours_ms"] for v in explain.values()]
    total = {m: round(sum(p[m]["p50"] for p in per_model), 1) for m in per_model[0]}
    slowest = max(total, key=total.__getitem__)
    return {"models": list(explain), "p50_ms": total, "slowest_method": slowest,
            "slowest_ms": total[slowest]}


class _CompiledModel:
    """The little of a Keras model tf-keras-vis' Saliency uses, backed by a tf.function: the
    SmoothGrad the project shipped before its own (kept here as the benchmark's reference)."""

    def __init__(self, model: Any, forward: Any) -> None:
        self.inputs, self.outputs, self._forward = model.inputs, model.outputs, forward

    def __call__(self, inputs: Any, training: bool = False) -> Any:
        import tensorflow as tf

        x = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        return self._forward(tf.cast(x, tf.float32))[0]


def tf_keras_vis_smoothgrad(explainer: Any, x: np.ndarray, target: int) -> Callable[[], Any]:
    """The former SmoothGrad: tf-keras-vis `Saliency` (built once, on the compiled forward),
    the explainer's samples and noise level, one gradient pass per noisy copy."""
    import tensorflow as tf
    from tf_keras_vis.saliency import Saliency

    vis = Saliency(_CompiledModel(explainer.scores_model(), explainer.compiled_forward()),
                   clone=False)
    onehot = tf.one_hot([target], explainer.num_classes)

    def call() -> Any:
        return vis(lambda out: tf.reduce_sum(out * onehot, axis=-1), x,
                   smooth_samples=explainer.smooth_samples, smooth_noise=explainer.smooth_noise)

    return call


def _tf_keras_vis_per_request(model: Any, layer: str, x: np.ndarray, target: int
                              ) -> Callable[[], Any]:
    """What typical serving code does: build tf-keras-vis `Gradcam` (clone=True) per request."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    def request() -> Any:
        vis = Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)
        return vis(CategoricalScore([target]), x, penultimate_layer=layer,
                   seek_penultimate_conv_layer=False)

    return request


def predict_benchmark(run: Any, raw_images: list[np.ndarray], repeats: int, quick: bool,
                      tick: Callable[[str], None],
                      models: list[str] | None = None) -> dict[str, Any]:
    """One raw image -> probabilities (prepare + model) per model and for both; batch rate.
    `models`: the ones `bench --model` asked for (default: the run's; it timed every model of
    the run whatever was asked, a review)."""
    from pipeline.predict import Predictor

    tick("prediction latency")
    predictor = Predictor(run, [m for m in models if m in run.model_names] if models else None)
    img = raw_images[0]
    batch = 32
    out: dict[str, Any] = {"batch_size": batch}
    for name in predictor.models:
        one = time_calls(lambda n=name: predictor.predict_arrays(
            n, predictor.prepare(n, img)[None]), repeats, warmup=2)
        prepared = np.stack([predictor.prepare(name, raw_images[i % len(raw_images)])
                             for i in range(batch)])
        rate = time_calls(lambda n=name, p=prepared: predictor.predict_arrays(n, p, batch),
                          2 if quick else 5, warmup=1)
        out[name] = {"one_image_ms": one,
                     "batch_ms": rate,
                     "batch_images_per_s": round(batch / (rate["p50"] / 1000.0), 1)}
    if len(predictor.models) > 1:
        out["both_models_one_image_ms"] = time_calls(lambda: predictor.predict_images([img]),
                                                     repeats, warmup=1)
    return out

