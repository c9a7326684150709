"""The training-curves figure of the Overview page (a run's `<model>/history.json`): loss and
accuracy per epoch, the kept epoch, where fine-tuning starts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.figures.common import (
    FigureDataError,
    _num,
    legend_below,
    model_color,
    model_label,
)
from dashboard.figures.table import table_meta


def _history_series(history: Mapping[str, Any], name: str) -> dict[str, list]:
    epochs = history.get("epochs") if isinstance(history, Mapping) else None
    if not isinstance(epochs, list) or not epochs:
        raise FigureDataError(f"history of {name!r} has no 'epochs' list")
    out: dict[str, list] = {k: [] for k in
                            ("epoch", "phase", "loss", "val_loss", "accuracy", "val_accuracy")}
    for i, row in enumerate(epochs):
        if not isinstance(row, Mapping):
            raise FigureDataError(f"history of {name!r}: epoch entry {i} is {row!r}")
        out["epoch"].append(row.get("epoch", i + 1))
        out["phase"].append(row.get("phase", "train"))
        for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
            out[key].append(_num(row.get(key), f"{name} epoch {i + 1} {key}"))
    return out


def training_curves_figure(histories: Mapping[str, Mapping[str, Any]]) -> go.Figure:
    """Loss and accuracy per epoch; solid = train, dashed = validation; star = best epoch."""
    # spaced for the second panel's axis title at the projector's font size (at 0.08 it sat
    # on the first panel in a figure 451 px wide)
    fig = make_subplots(rows=1, cols=2, subplot_titles=["Loss", "Accuracy"],
                        horizontal_spacing=0.14)
    last_epoch = 1
    for i, (name, hist) in enumerate(histories.items()):
        s = _history_series(hist, name)
        last_epoch = max([last_epoch, *(e for e in s["epoch"] if isinstance(e, (int, float)))])
        color = model_color(name, i)
        label = model_label(name)
        for col, key in ((1, "loss"), (2, "accuracy")):
            for split, dash in (("", "solid"), ("val_", "dash")):
                fig.add_trace(go.Scatter(
                    x=s["epoch"], y=s[split + key], mode="lines+markers",
                    name=f"{label} {'validation' if split else 'train'}",
                    legendgroup=f"{name}{split}", showlegend=col == 1,
                    line=dict(color=color, dash=dash), marker=dict(size=4),
                    customdata=s["phase"], meta=table_meta(phase=s["phase"]),
                    hovertemplate=f"{label} {'val' if split else 'train'} {key}"
                                  "<br>epoch %{x} (%{customdata}): %{y:.3f}<extra></extra>",
                ), row=1, col=col)
        best = hist.get("best_epoch")
        if best in s["epoch"]:
            j = s["epoch"].index(best)
            fig.add_trace(go.Scatter(
                x=[best], y=[s["val_loss"][j]], mode="markers", name=f"{label} best epoch",
                marker=dict(symbol="star", size=14, color=color), legendgroup=f"{name}best",
                hovertemplate=f"{label} best epoch %{{x}}<extra></extra>",
            ), row=1, col=1)
        # The epoch where fine-tuning starts: curves often jump there, so mark it.
        for j in range(1, len(s["phase"])):
            if s["phase"][j] != s["phase"][j - 1]:
                for col in (1, 2):
                    fig.add_vline(x=s["epoch"][j] - 0.5, line=dict(color=color, dash="dot",
                                                                   width=1), row=1, col=col)
                # in the chart's text colour, not the model's, which its words name: the
                # blue was 3.6:1 on the dark theme, the orange 2.8:1 on white (text wants 4.5)
                fig.add_annotation(x=s["epoch"][j] - 0.5, y=1, yref="y domain", row=1, col=1,
                                   text=f"{label}: {s['phase'][j]}", showarrow=False,
                                   font=dict(size=10), xanchor="left")
    # Whole epochs only, about five ticks a panel: ten ran into one another in a panel a
    # quarter of 911 px wide. The range fixed: plotly widens an axis to fit its annotations'
    # text, and the fine-tuning label at the projector's font size stretched the loss panel's
    # epochs to 109 of 61.
    fig.update_xaxes(title="epoch", tick0=1, dtick=max(1, math.ceil(last_epoch / 5)),
                     range=[0.5, last_epoch + 0.5])
    # named: a bare axis left a student guessing what the loss was (its caption says more)
    fig.update_yaxes(title="loss (lower is better)", col=1)
    fig.update_yaxes(title="accuracy", col=2)
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=50, b=10),
                      legend=legend_below())
    return fig


# --------------------------------------------------------------------------- the caption's words

PHASE_WORDS = {"finetune": "fine-tuning", "head": "the head-only phase", "train": "training"}


def _rows(history: Any) -> list[Mapping[str, Any]]:
    """A history's epoch rows; none from a damaged file (the figure says what is wrong)."""
    epochs = history.get("epochs") if isinstance(history, Mapping) else None
    return [r for r in epochs if isinstance(r, Mapping)] if isinstance(epochs, list) else []


def _epoch_row(history: Mapping[str, Any], epoch: Any) -> Mapping[str, Any]:
    """The history row of `epoch`; an empty dict when it is not there."""
    return next((row for row in _rows(history) if row.get("epoch") == epoch), {})


def _mapping(parent: Any, key: str) -> Mapping[str, Any]:
    """`parent[key]` when both are mappings, else an empty one: a manifest missing a block
    (an older run) leaves its part out of the caption rather than failing the page."""
    value = parent.get(key) if isinstance(parent, Mapping) else None
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> float | None:
    """A finite number from a file, else None (a caption leaves out what it cannot quote)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _penalty_clause(label: str, history: Mapping[str, Any], guidance: Mapping[str, Any]
                    ) -> str:
    """What the guidance penalty is, when it starts, and how much of the loss it is: from the
    manifest's `guidance` block and the history's per-epoch `outside_share` (the penalty is
    `weight × outside_share`, pipeline/guidance.py)."""
    weight = _number(guidance.get("weight")) or 0.0
    text = (f"{label}'s training loss adds the explanation-guidance penalty, {weight:g} × the "
            "share of the true class's Grad-CAM outside the tumour box (or the head)")
    phases = [p for p in guidance.get("phases") or [] if isinstance(p, str)]
    rows = _rows(history)
    first = next((j for j, r in enumerate(rows) if r.get("phase") in phases), None)
    if first:  # the penalty starts after the first phase: the loss jumps where it starts
        row, before = rows[first], rows[first - 1]
        share, loss, prev = (_number(row.get("outside_share")), _number(row.get("loss")),
                             _number(before.get("loss")))
        text += (f", from {PHASE_WORDS.get(row.get('phase'), row.get('phase'))} on (epoch "
                 f"{row.get('epoch')})")
        if None not in (share, loss, prev):
            text += (f", so it jumps there ({prev:.2f} → {loss:.2f}, of which the penalty is "
                     f"about {weight * share:.2f})")
    best = _epoch_row(history, history.get("best_epoch"))
    share, loss = _number(best.get("outside_share")), _number(best.get("loss"))
    if share is not None and loss is not None:
        text += (f"; at the kept epoch ({best.get('epoch')}) the penalty is about "
                 f"{weight * share:.2f} of the training loss's {loss:.2f}")
    return text


def _training_only(mc: Mapping[str, Any], config: Mapping[str, Any],
                   guidance: Mapping[str, Any]) -> str:
    """What else makes a training step's loss differ from validation's, from the run's config:
    augmentation, dropout, class weights and the guided recipes' extra images and task ("" when
    none of them)."""
    strength = mc.get("augment_strength")
    where = (f"computed on augmented images{f' ({strength})' if strength else ''}"
             if config.get("augment") else "")
    extras = []
    dropout = _number(mc.get("dropout"))
    if dropout:
        extras.append(f"dropout on ({dropout:g} at the head)")
    if config.get("class_weights"):
        extras.append("class weights")
    erase = _number(guidance.get("erase"))
    if erase:
        extras.append(f"copies with the tumour erased ({erase:.0%} of boxed tumour images)")
    extras += [what for key, what in (("transplant", "tumours transplanted into no-tumour "
                                                     "images"),
                                      ("mixup", "mixup"), ("segment", "a tumour-mask task"))
               if _number(guidance.get(key))]
    listed = ", ".join(extras[:-1]) + (" and " if len(extras) > 1 else "") + (
        extras[-1] if extras else "")
    if where and listed:
        return f"{where}, with {listed}"
    return where or (f"computed with {listed}" if listed else "")


def smoothing_floor(epsilon: float, classes: int) -> float:
    """The lowest cross-entropy label smoothing allows: the entropy of a smoothed one-hot target
    (Keras: 1 - ε + ε/K for the true class, ε/K for the others)."""
    targets = [1 - epsilon + epsilon / classes] + [epsilon / classes] * (classes - 1)
    return -sum(t * math.log(t) for t in targets if t > 0)


def loss_gap_sentences(histories: Mapping[str, Mapping[str, Any]],
                       manifest: Mapping[str, Any]) -> list[str]:
    """Why the training loss sits apart from the validation loss, per model, from the run's
    manifest (config and guidance) and history; then one sentence on reading the curves.

    Validation loss is the compiled cross-entropy (with label smoothing, without class weights)
    on unaugmented validation images; everything else a training step adds is listed.
    """
    config = _mapping(manifest, "config")
    configs, infos = _mapping(config, "models"), _mapping(manifest, "models")
    out = []
    for name, history in histories.items():
        if not _rows(history):
            continue
        mc = _mapping(configs, name)
        guidance = _mapping(_mapping(infos, name), "guidance")
        label = model_label(name)
        head = (_penalty_clause(label, history, guidance) if _number(guidance.get("weight"))
                else f"{label}'s training loss is")
        rest = _training_only(mc, config, guidance)
        if _number(guidance.get("weight")):
            out.append(head + (f"; it is {rest}." if rest else "."))
        elif rest:
            out.append(f"{head} {rest}.")
    if not out:
        return []
    smoothing = {_number(_mapping(configs, n).get("label_smoothing")) for n in histories}
    names = manifest.get("class_names")
    classes = len(names) if isinstance(names, list) else 0
    floor = ""
    if len(smoothing) == 1 and (eps := smoothing.pop()) and classes > 1:
        floor = (f" Both include label smoothing ({eps:g}), so neither can go below "
                 f"{smoothing_floor(eps, classes):.2f}.")
    return [*out, "Validation loss is the cross-entropy alone (no penalty, no class weights) on "
                  "unaugmented validation images, "
                  "so the training loss sits apart from it by design: compare the curves' "
                  "shapes, not their levels." + floor]


def last_epoch_sentences(histories: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """A sentence for each model whose kept (best) epoch is the last epoch it ran."""
    out = []
    for name, history in histories.items():
        epochs = [r.get("epoch") for r in _rows(history)]
        best = history.get("best_epoch") if epochs else None
        if epochs and best is not None and best == epochs[-1]:
            out.append(f"{model_label(name)}'s kept epoch ({best}) is the last one run: longer "
                       "training might still help.")
    return out
