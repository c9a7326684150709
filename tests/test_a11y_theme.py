"""The backgrounds the figures' contrast is measured against are the dashboard's own themes'."""

from __future__ import annotations

import re
from pathlib import Path

from dashboard.figures.common import THEME_BACKGROUNDS

CONFIG = Path(__file__).resolve().parents[1] / ".streamlit" / "config.toml"


def test_theme_backgrounds_are_the_config_s():
    """THEME_BACKGROUNDS["dark"] was Streamlit's default #0e1117 while config.toml sets the
    dark theme's page to #0b1220, so contrasts were measured on a page no viewer sees."""
    text = CONFIG.read_text()
    for theme, colour in THEME_BACKGROUNDS.items():
        section = re.search(rf"^\[theme\.{theme}\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
        assert section, f"no [theme.{theme}] in {CONFIG}"
        said = re.search(r'^backgroundColor\s*=\s*"([^"]+)"', section.group(1), re.M)
        assert said and said.group(1).lower() == colour, (theme, said and said.group(1))
