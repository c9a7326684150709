"""The explanation methods: one small class each, found by name in `REGISTRY`.

Where they live: the gradient CAMs (Grad-CAM, HiResCAM, LayerCAM, Grad-CAM++, multi-layer
fusion) in `cams.py` with the compiled Score-CAM, three of them mirror-averaged in `mirror.py`,
the compiled SmoothGrad in `smoothgrad.py`;
`base.Method` is the interface. tf-keras-vis computed Grad-CAM++, Score-CAM and SmoothGrad
before; each was replaced by a compiled one that the tests check against it (and `bench`
times beside it).

A method only computes heatmaps; the `Explainer` validates the request, picks the layer, and
holds everything built per model (its compiled graphs, cached through
`Explainer.cached`). Method objects are therefore stateless and one instance serves every model
and thread.

Adding a method: write a `Method` subclass (its `name`, `label`, `summary`, `needs_layer`, `cost`,
`class_specific = False` if its map ignores the target class, and `__call__`; or a `GradCam`
subclass with its own `combine` for another gradient CAM), then add one instance to the tuple
that builds `REGISTRY`. `METHODS`, `LAYER_METHODS`, `METHOD_LABELS`,
the CLI's and explain-eval's checks and the dashboard's choice of methods follow from it.
"""

from __future__ import annotations

from pipeline.explain.base import Method, Result
from pipeline.explain.cams import (
    GradCam,
    GradCamFusion,
    GradCamPlusPlus,
    HiResCam,
    LayerCam,
    LayerCamFusion,
    ScoreCam,
)
from pipeline.explain.mirror import HiResCamMirror, LayerCamFusionMirror, LayerCamMirror
from pipeline.explain.smoothgrad import SmoothGrad

__all__ = ["REGISTRY", "METHODS", "LAYER_METHODS", "METHOD_LABELS", "Method", "Result",
           "fuses_layers", "get_method", "methods_in_words", "target_words"]

# The registry: name -> method, in the order the CLI and the dashboard list them.
REGISTRY: dict[str, Method] = {
    m.name: m for m in (GradCam(), HiResCam(), LayerCam(), GradCamFusion(), LayerCamFusion(),
                        GradCamPlusPlus(), HiResCamMirror(), LayerCamMirror(),
                        LayerCamFusionMirror(), ScoreCam(), SmoothGrad())
}
METHODS: tuple[str, ...] = tuple(REGISTRY)
# Methods that read a convolutional feature map (SmoothGrad works on input pixels).
LAYER_METHODS: tuple[str, ...] = tuple(n for n, m in REGISTRY.items() if m.needs_layer)
METHOD_LABELS: dict[str, str] = {n: m.label for n, m in REGISTRY.items()}


def methods_in_words() -> str:
    """Every registered method's label and summary, in registry order ("Grad-CAM: fast and
    coarse ...; ..."): the dashboard's help on its method box."""
    return "; ".join(f"{m.label}: {m.summary}" for m in REGISTRY.values())


def target_words(method: str, target: str, folder: str = "") -> str:
    """What a heatmap of `method` explains, after the method's name in a caption: "for 'glioma'"
    (`target`: the class as people read it), or, for a class-agnostic method, that its map is the
    same for every class (naming a class would claim it explains that one). An unknown method
    (an older run's) is taken as class-specific, as every method was. `folder`: the class's
    training folder of another name in words (`names.class_folder_words`), after the class:
    "for 'no tumour' (class folder: Healthy)"."""
    m = REGISTRY.get(method)
    if m is not None and not m.class_specific:
        return "(class-agnostic: the same map for every class)"
    return f"for '{target}'" + (f" ({folder})" if folder else "")


def fuses_layers(name: str) -> bool:
    """Whether method `name` fuses several resolution stages from the layer it is given
    (`cams.GradCamFusion` and its mirror-averaged form), so that the layer is only the deepest
    of those it reads; False for an unknown name."""
    method = REGISTRY.get(name)
    method = getattr(method, "base", method)  # a mirror-averaged fusion fuses as its base does
    return isinstance(method, GradCamFusion)


def get_method(name: str) -> Method:
    """The registered method called `name`; ValueError naming the valid ones otherwise."""
    method = REGISTRY.get(name)
    if method is None:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(REGISTRY)}")
    return method
