"""The report's goals and its Markdown rendering (the JSON report is the dict itself).

`to_markdown` only reads the report; every figure it shows is in the JSON under the same name.
"""

from __future__ import annotations

from typing import Any

# Issue targets for the headline figures (checked in the report, never in tests): figure ->
# (operator, goal). A figure is `section.figure` or `section.<model>.figure`; `<model>` stands for
# every benchmarked model, and a per-model goal is checked only for models the report has.
GOALS = {
    "training.mobilenetv2.speedup_vs_naive": (">=", 5.0),
    "explain.<model>.gradcam_ratio_to_floor": ("<=", 1.5),
    "dashboard.upload_to_heatmaps_s": ("<=", 1.0),
    "dashboard.upload_to_heatmaps_first_s": ("<=", 1.5),
    "dashboard.first_visit_predict_s": ("<=", 3.0),
    "dashboard.peak_rss_two_runs_mb": ("<=", 1024.0),
    # issue 19: streaming predict (MobileNetV2, batch 32, JPEG files) and training memory
    "streaming.images_per_s": (">=", 40.0),
    "streaming.rss_growth": ("<=", 0.10),
    "memory.train_mobilenetv2_in_run_mb": ("<=", 3072.0),  # 3 GB as 3 x 1024 MB, like 1 GB
}


def goal_texts() -> dict[str, str]:
    """GOALS as the report's `goals` entry: {figure: ">= 5.0"}."""
    return {k: f"{op} {goal}" for k, (op, goal) in GOALS.items()}


def goals_check(report: dict[str, Any]) -> dict[str, Any]:
    """Each goal in GOALS: the measured value, the goal and met (true/false/null when
    unmeasured, and always null in a quick report: its tiny models "failed" full-run goals).
    When a ">=" figure is null but its `<figure>_lower_bound` sibling is set (the naive recipe
    hit the cap), the bound is reported and meets the goal if it reaches it."""
    out: dict[str, Any] = {}
    for key, (op, goal) in GOALS.items():
        for figure, holder, name in _goal_figures(key, report):
            value, bound = holder.get(name), holder.get(f"{name}_lower_bound")
            if value is None and op == ">=" and bound is not None:
                out[figure] = {"value": None, "lower_bound": bound, "goal": f"{op} {goal}",
                               "met": True if bound >= goal else None}
                continue
            met = None if value is None else (value >= goal if op == ">=" else value <= goal)
            out[figure] = {"value": value, "goal": f"{op} {goal}",
                           # tiny models on phantoms: a goal set for a full run is not judged
                           "met": None if report.get("quick") else met}
    return out


def _goal_figures(key: str, report: dict[str, Any]
                  ) -> list[tuple[str, dict[str, Any], str]]:
    """(figure, the dict holding it, its name there) for one GOALS key, `<model>` expanded."""
    section, *rest = key.split(".")
    part = report.get(section, {})
    if len(rest) == 1:  # a whole-run figure: checked (null when unmeasured) in every report
        return [(key, part, rest[0])]
    model, name = rest
    models = list(part) if model == "<model>" else [model]
    return [(f"{section}.{m}.{name}", part[m], name) for m in models if part.get(m) is not None]


def _f(value: Any, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def _ms(s: dict[str, Any] | None) -> str:
    return "–" if not s else f"{s['p50']:.1f} / {s['p95']:.1f}"


def to_markdown(report: dict[str, Any]) -> str:
    """The human-readable report: machine, one table per section, goals."""
    lines = [*_md_head(report),
             *_md_training(report.get("training", {})),
             *_md_explain(report.get("explain", {})),
             *_md_predict(report.get("predict", {})),
             *_md_streaming(report.get("streaming") or {}),
             *_md_dashboard(report.get("dashboard", {}), report.get("dashboard_remeasured")),
             *_md_memory(report.get("memory", {})),
             *_md_goals(report.get("goals_check", {}), bool(report.get("quick"))),
             *_md_sections(report.get("sections", {}))]
    return "\n".join(lines)


def _md_head(report: dict[str, Any]) -> list[str]:
    m = report["machine"]
    d = report.get("data", {})
    return [
        f"# Benchmark {report['created'][:10]}{' (quick)' if report['quick'] else ''}",
        "",
        f"Machine: {m['cpu_model']}, {m['cores_usable']} usable cores "
        f"({m['cores_logical']} logical), {_f(m['memory_total_mb'], 0)} MB RAM, no GPU; "
        f"TensorFlow {m['tensorflow']}, Keras {m['keras']}, Python {m['python']}. "
        f"Load average at start {m['load_average_start']}, at end "
        f"{m.get('load_average_end')} (a shared machine: other jobs were running when the "
        "load exceeds the core count).",
        "",
        f"Data: {d.get('dir')} ({'synthetic phantoms' if d.get('synthetic') else d.get('layout')}"
        f"), {d.get('train')} train / {d.get('val')} val images ({d.get('split')}). "
        f"Commit {report.get('git_commit') or 'unknown'}; whole benchmark "
        f"{_f(report.get('duration_s'), 0)} s. Command: `{report.get('command') or '–'}`.",
    ]


def _md_training(training: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Training: time from raw files to the target validation accuracy",
        "",
        "| model | recipe | target | reached | time to target (s) | best val acc | epochs | "
        "images/s per epoch (median) | decode (s) | feature cache (s) | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, t in training.items():
        for recipe in ("ours", "naive"):
            r = t[recipe]
            ips = ", ".join(f"{p} {v:.0f}" for p, v in (r.get("images_per_s") or {}).items())
            lines.append(
                f"| {name} | {recipe} | {t['target_val_accuracy']} | {_f(r.get('reached'))} | "
                f"{_f(r.get('time_to_target_s'))} | {_f(r.get('best_val_accuracy'), 3)} | "
                f"{_f(r.get('epochs_run'))} | {ips or '–'} | {_f(r.get('decode_s'))} | "
                f"{_f(r.get('feature_cache_s'))} | {_f(r.get('peak_rss_mb'), 0)} |")
    lines.append("")
    for name, t in training.items():
        if t.get("speedup_vs_naive") is not None:
            lines.append(f"- **{name}: speed-up vs naive {t['speedup_vs_naive']:.2f}×** "
                         "(naive time-to-target / ours)")
        elif t.get("speedup_vs_naive_lower_bound") is not None:
            lines.append(f"- **{name}: speed-up vs naive ≥ {t['speedup_vs_naive_lower_bound']:.2f}"
                         f"× (lower bound)**: {t.get('speedup_vs_naive_reason')}")
        else:
            lines.append(f"- {name}: no speed-up figure: {t.get('speedup_vs_naive_reason')}")
    for name, t in training.items():
        for recipe in ("ours", "naive"):
            r = t[recipe]
            lines.append(f"- {name} {recipe}: {r.get('description') or r.get('error')} "
                         f"(weights {r.get('weights', '–')}, stopped: {r.get('stopped', '–')})")
    return lines


def _md_explain(ex: dict[str, Any]) -> list[str]:
    lines = ["", "## Explanation latency, one image (ms, p50 / p95)", ""]
    if not ex:
        return lines
    methods = list(next(iter(ex.values()))["ours_ms"])
    lines.append("| model | layer | " + " | ".join(f"ours {x}" for x in methods)
                 + " | tf-keras-vis Gradcam per request | floor (fwd+bwd) | forward | "
                   "Grad-CAM / floor |")
    lines.append("|---" * (len(methods) + 6) + "|")
    for name, e in ex.items():
        lines.append(
            f"| {name} | {e['layer']} | "
            + " | ".join(_ms(e["ours_ms"].get(x)) for x in methods)
            + f" | {_ms(e['tf_keras_vis_gradcam_per_request_ms'])} | {_ms(e['floor_ms'])} | "
              f"{_ms(e['forward_ms'])} | **{e['gradcam_ratio_to_floor']:.2f}** |")
    return lines


def _md_predict(p: dict[str, Any]) -> list[str]:
    lines = ["", "## Prediction", "",
             f"| model | one raw image → probabilities (ms, p50 / p95) | batch of "
             f"{p.get('batch_size')} (ms, p50) | images/s |", "|---|---|---|---|"]
    for name, v in p.items():
        if isinstance(v, dict) and "one_image_ms" in v:
            lines.append(f"| {name} | {_ms(v['one_image_ms'])} | {v['batch_ms']['p50']:.0f} | "
                         f"{v['batch_images_per_s']:.0f} |")
    if p.get("both_models_one_image_ms"):
        lines.append(f"| both models | {_ms(p['both_models_one_image_ms'])} | – | – |")
    return lines


def _md_streaming(st: dict[str, Any]) -> list[str]:
    if not st.get("runs"):  # skipped, or a report from before streaming was measured
        return []
    lines = ["", f"## Streaming predict ({st['model']}, {st['format']} files, batch "
             f"{st['batch_size']}, `predict --out`)", "",
             "| files | images/s | peak RSS (MB) |", "|---|---|---|"]
    for r in st["runs"]:
        lines.append(f"| {r['n']} | {_f(r.get('images_per_s'))} | {_f(r.get('peak_rss_mb'))} |")
    growth = st.get("rss_growth")
    lines += ["", f"Peak RSS growth from the smallest to the largest folder: "
              f"{'–' if growth is None else f'{growth:+.1%}'} (target {st['targets']['rss_growth']}"
              f"); throughput target {st['targets']['images_per_s']} images/s."]
    return lines


def _md_dashboard(dash: dict[str, Any], again: dict[str, Any] | None = None) -> list[str]:
    lines = ["", "## Dashboard (Streamlit in chromium via Playwright)", ""]
    if again:
        parts = ", ".join(again.get("parts") or ["dashboard"])
        lines += [f"Re-measured ({parts}) on {again['created'][:16].replace('T', ' ')} UTC (commit "
                  f"{again.get('git_commit') or 'unknown'}, load average "
                  f"{again.get('load_average_start')} at start, {again.get('load_average_end')} "
                  f"at end; command `{again.get('command') or '–'}`); the other sections are "
                  f"from {again.get('based_on')}.", ""]
    if dash.get("upload_to_heatmaps_s") is None:
        return [*lines, f"Not measured: {dash.get('upload_to_heatmaps_reason')}."]
    return [
        *lines,
        f"- cold start to first render: **{dash['cold_start_to_first_render_s']:.1f} s** "
        f"(health endpoint after {dash['cold_start_to_health_s']:.1f} s; first visit to "
        f"Predict {_f(dash.get('first_visit_predict_s'), 2)} s after it; models ready "
        f"{_f(dash.get('cold_start_to_models_ready_s'), 1)} s after launch)",
        f"- upload → both heatmaps visible: **p50 {dash['upload_to_heatmaps_s']:.2f} s**, "
        f"p95 {dash['upload_to_heatmaps_p95_s']:.2f} s, first "
        f"{dash['upload_to_heatmaps_first_s']:.2f} s over {len(dash['uploads'])} uploads "
        f"({', '.join(f'{u:.2f}' for u in dash['uploads'])})",
        "- of which the page's own 'analysed in' (prepare + explain, both models): "
        + ", ".join(_f(v, 2) for v in dash.get("server_explain_s", [])) + " s",
        f"- peak RSS {_f(dash.get('peak_rss_mb'), 0)} MB with one run viewed, "
        f"{_f(dash.get('peak_rss_two_runs_mb'), 0)} MB after switching to a second run "
        f"({dash.get('peak_rss_two_runs_mb_reason') or 'upload there: '}"
        f"{_f(dash.get('other_run_upload_s'), 2) if dash.get('other_run_upload_s') else ''}"
        f"{' s' if dash.get('other_run_upload_s') else ''})",
        *([f"- note: {dash['note']}"] if dash.get("note") else []),
        f"- {dash['definition']}",
    ]


def _md_memory(mem: dict[str, Any]) -> list[str]:
    lines = ["", "## Memory (peak RSS, MB)", "", "| process | MB |", "|---|---|"]
    lines += [f"| {k[:-3]} | {_f(v, 0)} |" for k, v in mem.items() if k.endswith("_mb")]
    return [*lines, "", f"{mem.get('definition', '')}"]


def _md_goals(goals: dict[str, Any], quick: bool = False) -> list[str]:
    lines = ["", "## Goals", ""]
    if quick:
        lines += ["A quick run times tiny models on synthetic phantoms to check that every part "
                  "runs: the goals are for a full run, so none is judged here.", ""]
    lines += ["| figure | measured | goal | met |", "|---|---|---|---|"]
    for k, g in goals.items():
        value = g["value"] if g["value"] is not None else (
            f"≥ {g['lower_bound']}" if g.get("lower_bound") is not None else None)
        lines.append(f"| `{k}` | {_f(value, 2)} | {g['goal']} | {_f(g['met'])} |")
    return lines


def _md_sections(sections: dict[str, Any]) -> list[str]:
    lines = ["", "## Where the time went", "", "| part | seconds | load average at start |",
             "|---|---|---|"]
    lines += [f"| {k} | {v['seconds']:.0f} | {v['load_average_start']} |"
              for k, v in sections.items()]
    return [*lines, ""]
