"""Layers as people read them, without Streamlit or a model: "last conv block, 7×7", the layer
picker's "plain words (technical name)", and a fusion method's "stages fused; deepest: ..."."""

from __future__ import annotations


def layer_label(name: str, hw: tuple[int | None, int | None], last: bool) -> str:
    """A layer as people read it: "last conv block, 7×7" or "block 13 expand relu, 14×14"."""
    where = "last conv block" if last else name.replace("_", " ")
    h, w = hw
    return f"{where}, {h}×{w}" if h and w else where


def layer_option(plain: str, technical: str) -> str:
    """A layer as the layer picker offers it: plain words first, then its technical name (the
    one `--layer` takes on the command line) in brackets, for every option alike. Where the
    plain words are only that name with spaces ("block 13 expand relu, 14×14"), the name is
    said once, as `--layer` takes it ("block_13_expand_relu, 14×14"): said twice, the layer
    box cut it at a projector's 911 px."""
    words, _, size = plain.partition(", ")
    if words == technical.replace("_", " "):
        return technical + (f", {size}" if size else "")
    return f"{plain} ({technical})"


def layer_words(layer: str, recorded: str | None) -> str:
    """A layer named in plain words without loading the model: "last conv block" for the run's
    recorded Grad-CAM layer, else the name with spaces ("block 13 expand relu")."""
    return "last conv block" if layer == recorded else layer.replace("_", " ")


# before a fusion method's layer in the tables that name it without loading the model (their
# stage count needs the model): the card says "3 stages fused; deepest: ..." (inference.py)
FUSED_FROM = "stages fused; deepest: "


def method_layer_option(method: str, layer: str, recorded: str | None) -> str:
    """A method's layer as the quality page's tables name it: `layer_option` of its plain
    words, after `FUSED_FROM` for a fusion method, whose map is not that layer's alone (the
    table said "last conv block" where the card said "3 stages fused")."""
    from pipeline.explain.methods import fuses_layers

    option = layer_option(layer_words(layer, recorded), layer)
    return FUSED_FROM + option if fuses_layers(method) else option
