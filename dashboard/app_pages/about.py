"""About & model card: what the models are for, how they were made, and what they cannot do."""

import json

import streamlit as st

from dashboard import about_text, core, image_counts, runinfo, state
from dashboard import figures as F
from pipeline.artifacts import shown_path
from pipeline.known_data import trained_on_sartaj

st.title("About & model card")
st.warning(state.DISCLAIMER, icon=":material/medical_information:")
# the run shown's models, as the manifest records them (a MobileNetV2-only run read "Two")
run, problem = state.current_run()
st.markdown(about_text.what_this_is(run.manifest.get("models") if run is not None else None))
st.markdown("**Intended use.** Teaching and research: comparing architectures, exploring failure "
            "modes, discussing explainability. **Not** screening, triage, diagnosis or any "
            "clinical decision.")
# the limits of the run shown: the Sartaj data's facts only for a run trained on it
st.markdown(about_text.known_limits(run.class_names if run is not None else [],
                                    run is not None and trained_on_sartaj(run.manifest),
                                    len(run.model_names) if run is not None else 2))

card = state.artifacts_dir() / "MODEL_CARD.md"
if card.is_file():
    with st.expander("Model card of the shipped reference models", icon=":material/description:"):
        try:
            # one level down: the card's own title would be a second h1 on the page
            st.markdown(about_text.demote_headings(card.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            # OSError's text quotes the absolute path: only the kind of failure is shown
            st.warning(f"The model card {core.literal(shown_path(card))} could not be read "
                       f"({type(exc).__name__}).")

if run is None:
    st.warning(problem, icon=":material/warning:")
    st.stop()

facts = runinfo.run_facts(run.manifest)
# manifest text is the run's, not ours: a run id holding a backtick broke out of a plain code
# span and the page fetched an image from a URL in it (a review, 2026-12-05)
st.header(f"This run: {core.literal(facts.run_id)}")
for warning in facts.weights_warnings:
    st.warning(warning, icon=":material/warning:")
data_shown = runinfo.shown_data_dir(run.manifest.get("data") or {})  # no absolute machine path
st.markdown(
    f"- **Data**: {core.literal(data_shown)} ({core.literal(facts.data_layout)}), "
    f"{image_counts.used_words(facts)}, classes {runinfo.classes_words(facts)}\n"
    f"- **Splits**: " + ", ".join(f"{k} {v}" for k, v in runinfo.split_sizes(facts).items())
    + f" (strategy {core.literal(facts.splits.get('strategy', '?'))}, seed "
      f"{core.literal(facts.splits.get('seed', '?'))})\n"
    f"- **Created**: {runinfo.readable_time(facts.created)} · code commit "
    f"{core.literal(run.manifest.get('git_commit') or '?')}")
left_out = image_counts.left_out_sentence(facts)  # what the splits left out, and why
if left_out:
    st.caption(left_out)
st.dataframe(runinfo.model_facts_table(facts), hide_index=True, key="about_models")

problems = runinfo.run_problems(run)
st.subheader("Completeness")
if problems:
    for p in problems:
        st.markdown(f"- :orange[{p.what}] — to fix: {p.fix}")
else:
    st.markdown(":green[All expected files are present.]")

with st.expander("Library versions"):
    st.json(run.manifest.get("versions") or {}, expanded=True)
with st.expander("Training configuration"):
    st.code(json.dumps(run.manifest.get("config") or {}, indent=2), language="json")
st.caption("Models: " + ", ".join(F.model_label(m) for m in run.model_names))
