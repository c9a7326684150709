"""Which method and layer explain a model of a run: the one rule `explain`, `explain-eval` and
the dashboard all follow.

A model is explained by default with the run's recorded choice (`choice.default_explanation`:
explain_choice.json, else Grad-CAM at the manifest's gradcam_layer); a method other than that
choice takes the manifest's layer, since the chosen layer belongs to the chosen method. A layer
the user names must exist in the model; a recorded layer the model lacks (a replaced model file)
falls back to the model's own default layer, and says so (`Explainer.layer_note`): the commands
print it as a "note:" line, the dashboard as a warning. Importing this module loads no
TensorFlow (the functions that need a model import it when called).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.artifacts import ArtifactError
from pipeline.explain.choice import default_explanation
from pipeline.explain.methods import LAYER_METHODS

if TYPE_CHECKING:
    from pipeline.artifacts import Run
    from pipeline.explain.explainer import Explainer


def resolve_explanation(run: Run, name: str, method: str | None = None,
                        layer: str | None = None) -> tuple[str, str | None]:
    """(method, layer) that explain model `name` of `run`: `method` and `layer` when given;
    the recorded choice's method; its layer for that method, else the manifest's."""
    manifest_layer = run.model_info(name).get("gradcam_layer")
    default, default_layer = default_explanation(run.path, name, manifest_layer)
    use = method or default
    return use, layer or (default_layer if use == default else manifest_layer)


def usable_layer(model: Any, name: str, method: str, layer: str | None, asked: bool
                 ) -> tuple[str | None, str | None]:
    """(layer, note): the layer `method` reads on `model` (None for methods that read the
    input's pixels). A recorded layer (`asked` False) that `model` lacks becomes None, the
    model's own default, with a note saying so; one the user asked for raises ValueError."""
    from pipeline.explain.layers import conv_layers

    if layer is None or method not in LAYER_METHODS:
        return None if method not in LAYER_METHODS else layer, None
    valid = conv_layers(model)
    if layer in valid:
        return layer, None
    if asked:
        raise ValueError(f"layer {layer!r} not found among the 4-D layers of the model; "
                         f"valid: {', '.join(valid)}")
    return None, (f"{name}: the run records layer {layer!r}, which its model does not have; "
                  "explained at the model's own default layer instead")


def explainer_for(run: Run, name: str, model: Any, method: str | None = None,
                  layer: str | None = None) -> Explainer:
    """An Explainer of `model` (the run's model `name`) by `resolve_explanation`, its
    `layer_note` set when a recorded layer was missing (`usable_layer`)."""
    from pipeline.explain import Explainer
    from pipeline.predict_checks import check_model

    # another model of the run was explained with this one's method, silently (a review)
    check_model(run, name, model, int(run.model_info(name)["image_size"]))
    use, use_layer = resolve_explanation(run, name, method, layer)
    use_layer, note = usable_layer(model, name, use, use_layer, asked=layer is not None)
    explainer = Explainer(model, use_layer, use)
    explainer.layer_note = note
    return explainer


def load_explainers(run: Run, names: list[str], layer: str | None, method: str | None
                    ) -> dict[str, Explainer]:
    """An Explainer per model of `run` (`explainer_for`). ValueError "<model>: <reason>" for
    the first model that cannot be loaded or explained so (a missing or damaged model file, a
    layer asked for that it does not have)."""
    explainers = {}
    for name in names:
        try:
            explainers[name] = explainer_for(run, name, run.load_model(name), method, layer)
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
    use, use_layer = resolve_explanation(run, name, method, layer)
    if is_default(run, name, use, use_layer):
        return None
    default, default_layer = resolve_explanation(run, name)
    asked = " ".join(f"{opt} {v}" for opt, v in (("--method", method), ("--layer", layer)) if v)
    held = stale_measurement(run, name)
    if held is not None:  # explain-choose changed the default since the file was measured
        return (f"{name}/explanations.json holds {held}, no longer {name}'s default "
                f"({method_at(default, default_layer)}, explain_choice.json), which the file "
                "is meant to measure: run explain-eval without --method and --layer to measure "
                f"the default, or pass --replace to measure {method_at(use, use_layer)} in it "
                "anyway")
    return (f"{name}/explanations.json measures {name}'s default "
            f"({method_at(default, default_layer)}); {asked} would replace it with "
            f"{method_at(use, use_layer)}: pass --replace, or measure on a copy of the run")


def stale_measurement(run: Run, name: str) -> str | None:
    """"hirescam-mirror at gradcam_target" when model `name`'s explanations.json measures
    another method or layer than its default (explain-choose chose another since; the
    dashboard's quality page shows the file as the default's), else None (the default, or no
    readable file)."""
    from pipeline import run_files

    try:
        held = run.read_json(f"{name}/{run_files.EXPLANATIONS}")
    except ArtifactError:
        return None
    method = held.get("method") if isinstance(held, dict) else None
    if not isinstance(method, str):
        return None
    layer = held.get("layer") if isinstance(held.get("layer"), str) else None
    return None if is_default(run, name, method, layer) else method_at(method, layer)


def is_default(run: Run, name: str, method: str, layer: str | None) -> bool:
    """Whether `method` at `layer` is model `name`'s default explanation (`resolve_explanation`
    without a choice; the layer matters only for a method that reads one)."""
    default, default_layer = resolve_explanation(run, name)
    return method == default and (method not in LAYER_METHODS or layer == default_layer)


def method_at(method: str, layer: str | None) -> str:
    """"gradcam at conv3", or the method alone when it reads no layer (the input's pixels)."""
    return f"{method} at {layer}" if method in LAYER_METHODS and layer else method
