"""Which method and layer explain a model of a run, for the `explain` and `explain-eval` commands.

A model is explained by default with the run's recorded choice (`choice.default_explanation`:
explain_choice.json, else Grad-CAM at the manifest's gradcam_layer); a --method other than that
choice takes the manifest's layer, since the chosen layer belongs to the chosen method. Here, not
in the CLI, so the commands only parse, call and print. Importing this module loads no
TensorFlow (`load_explainers` imports it when called).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.artifacts import ArtifactError
from pipeline.explain.choice import default_explanation
from pipeline.explain.methods import LAYER_METHODS

if TYPE_CHECKING:
    from pipeline.artifacts import Run
    from pipeline.explain.explainer import Explainer


def load_explainers(run: Run, names: list[str], layer: str | None, method: str | None
                    ) -> dict[str, Explainer]:
    """An Explainer per model of `run`: `method` and `layer` when given, else the run's
    recorded choice (explain_choice.json), else Grad-CAM at the manifest's gradcam_layer.
    ValueError "<model>: <reason>" for the first model that cannot be loaded or explained so
    (a missing or damaged model file, a layer it does not have)."""
    from pipeline.explain import Explainer

    explainers = {}
    for name in names:
        manifest_layer = run.model_info(name).get("gradcam_layer")
        chosen, chosen_layer = default_explanation(run.path, name, manifest_layer)
        if method is not None and method != chosen:
            chosen_layer = manifest_layer  # the chosen layer belongs to the chosen method
        try:
            explainers[name] = Explainer(run.load_model(name), layer or chosen_layer,
                                         method or chosen)
        except (ArtifactError, ValueError) as exc:
            raise ValueError(f"{name}: {exc}") from exc
    return explainers


def not_the_default(run: Run, name: str, method: str | None, layer: str | None
                    ) -> str | None:
    """The refusal when explain-eval would measure `name` with another method or layer than its
    default (explain_choice.json, else Grad-CAM), whose measurement explanations.json is (the
    dashboard's quality page shows it as the default's); None when it measures the default.
    The layer as explain_eval picks it: the chosen one for the default method, else the
    manifest's."""
    manifest_layer = run.model_info(name).get("gradcam_layer")
    default, default_layer = default_explanation(run.path, name, manifest_layer)
    use = method or default
    use_layer = layer or (default_layer if use == default else manifest_layer)
    if use == default and (use not in LAYER_METHODS or use_layer == default_layer):
        return None
    asked = " ".join(f"{opt} {v}" for opt, v in (("--method", method), ("--layer", layer)) if v)
    return (f"{name}/explanations.json measures {name}'s default "
            f"({method_at(default, default_layer)}); {asked} would replace it with "
            f"{method_at(use, use_layer)}: pass --replace, or measure on a copy of the run")


def method_at(method: str, layer: str | None) -> str:
    """"gradcam at conv3", or the method alone when it reads no layer (the input's pixels)."""
    return f"{method} at {layer}" if method in LAYER_METHODS and layer else method
