"""Streamlit dashboard for brain-mri-xai: reads a run's artifacts, never trains."""
