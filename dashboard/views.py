"""Drawing pieces shared by the Predict and Error-analysis pages (controls, image cards).

Nothing here computes a prediction: `dashboard.inference.explain` does, and these functions draw
its `Results` with the `Settings` that `controls` returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import streamlit as st

from dashboard import core
from dashboard import figures as F
from dashboard.inference import Results, Settings
from pipeline.explain import LAYER_METHODS, METHOD_LABELS, METHODS, render_overlay, to_png

DISPLAY_SIDE = 320  # overlays are drawn at least this large so small model inputs stay readable


def controls(explainers: dict[str, Any], class_names: Sequence[str], prefix: str,
             show_layers: bool = True) -> Settings:
    """Method, target class, opacity, outline and (in an expander) the layer of each model.

    Call it on every run of a page, before any `st.stop()`: widget state is the one truth about
    what the user asked for, and Streamlit drops the state of a widget left out of a run.
    """
    c1, c2, c3, c4 = st.columns([3, 3, 3, 2], vertical_alignment="bottom")
    method = c1.selectbox("Explanation method", METHODS, key=f"{prefix}_method",
                          format_func=lambda m: METHOD_LABELS.get(m, m),
                          help="Grad-CAM is fast and coarse; Grad-CAM++ sharper for several "
                               "regions; Score-CAM avoids gradients but is slower; SmoothGrad "
                               "shows pixel-level sensitivity.")
    target = c2.selectbox("Explain which class", ["predicted class", *class_names],
                          key=f"{prefix}_target",
                          help="'predicted class' explains each model's own answer; choose a "
                               "class to ask 'what would make this look like X?'.")
    alpha = c3.slider("Heatmap opacity", 0.0, 1.0, 0.45, 0.05, key=f"{prefix}_alpha")
    outline = c4.toggle("Outline top 10%", key=f"{prefix}_outline",
                        help="Draw the contour of the 10% hottest pixels.")
    layers: dict[str, str | None] = {}
    if show_layers:
        with st.expander("Layers (advanced)"):
            layer_cols = st.columns(max(len(explainers), 1))
            for col, (m, ex) in zip(layer_cols, explainers.items(), strict=False):
                options = list(ex.valid_layers)
                index = options.index(ex.layer) if ex.layer in options else len(options) - 1
                layers[m] = col.selectbox(
                    f"{F.model_label(m)} layer", options, index=index, key=f"{prefix}_layer_{m}",
                    disabled=method not in LAYER_METHODS,
                    help="Deeper layers: coarser maps about whole structures; earlier layers: "
                         "finer, more edge-like maps. Not used by SmoothGrad.")
    return Settings(method, None if target == "predicted class" else target, alpha, outline,
                    layers)


def overlay(prepared: np.ndarray, heatmap: np.ndarray, settings: Settings) -> np.ndarray:
    """The heatmap over what the model saw, upscaled for display (bicubic)."""
    side = prepared.shape[0]
    base = prepared
    if side < DISPLAY_SIDE:
        base = cv2.resize(prepared, (DISPLAY_SIDE, DISPLAY_SIDE), interpolation=cv2.INTER_CUBIC)
    return render_overlay(base, heatmap, alpha=settings.alpha,
                          outline_top_percent=10.0 if settings.outline else None)


def image_card(i: int, upload: core.Upload, j: int | None, results: Results | None,
               class_names: Sequence[str], settings: Settings, prefix: str) -> None:
    """One file: its error message, or probabilities, agreement and both models' heatmaps."""
    with st.container(border=True, key=f"{prefix}_card_{i}"):
        title = f"**{core.literal(upload.name)}**"
        if upload.true_label:
            title += f" · true class: **{upload.true_label}**"
        st.markdown(title)
        if not upload.ok or j is None or results is None:
            st.warning(core.literal(upload.error or "This file could not be processed."),
                       icon=":material/broken_image:")
            return
        probs = results.probs
        if not probs:
            st.error("No model could process this image: "
                     + "; ".join(f"{F.model_label(m)}: {core.literal(e)}"
                                 for m, e in results.errors.items()),
                     icon=":material/error:")
            return
        agree = bool(core.agreement({m: p[j:j + 1] for m, p in probs.items()})[0])
        st.badge("models agree" if agree else "models disagree",
                 icon=":material/check:" if agree else ":material/call_split:",
                 color="green" if agree else "orange")
        st.markdown(core.verdict_line(probs, j, class_names, upload.true_label))
        models = [*results.per_model, *results.errors]
        cols = st.columns([1.3] + [1] * len(models))
        with cols[0]:
            st.plotly_chart(F.probability_figure({m: p[j] for m, p in probs.items()}, class_names),
                            key=f"{prefix}_probs_{i}", config={"displayModeBar": False})
        stem = Path(upload.name).stem or "image"
        for col, m in zip(cols[1:], models, strict=False):
            with col:
                if m in results.errors:
                    st.error(f"{F.model_label(m)} could not explain: "
                             f"{core.literal(results.errors[m])}",
                             icon=":material/error:")
                    continue
                r = results.per_model[m][j]
                img = overlay(r.prepared, r.heatmap, settings)
                target = class_names[r.target]
                layer = f", layer {r.layer}" if r.layer else ""
                method = METHOD_LABELS.get(r.method, r.method)
                st.image(img, width="stretch",
                         caption=f"{F.model_label(m)} · {method} for '{target}'{layer}")
                st.download_button(
                    "Overlay PNG", to_png(img), file_name=f"{stem}_{m}_{r.method}.png",
                    mime="image/png", key=f"{prefix}_png_{i}_{m}", on_click="ignore",
                    icon=":material/download:")
