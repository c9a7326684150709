"""One home for facts several modules share: model names, the default pair, the progress callback,
image file extensions. Pure Python, so the dashboard and the metrics import it without Keras.
"""

from __future__ import annotations

from collections.abc import Callable

# Registry name -> the name people read (tables, captions, the dashboard).
DISPLAY_NAMES: dict[str, str] = {
    "custom_cnn": "Custom CNN",
    "mobilenetv2": "MobileNetV2",
    "efficientnetb0": "EfficientNetB0",
}
# What `train`, `run`, `bench` and `--model all` mean: our CNN and the transfer-learning model.
DEFAULT_MODELS: tuple[str, ...] = ("custom_cnn", "mobilenetv2")

# Image files a dataset folder or a mask folder may hold (decoding is `images.decode_image`'s job).
IMAGE_EXTS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".dcm"})

# progress(description, done, total): every long stage reports through one of these.
Progress = Callable[[str, int, int], None]


def no_progress(desc: str, done: int, total: int) -> None:
    """The `Progress` that reports nothing."""


def display_name(model: str) -> str:
    """Human name of a registry model ("mobilenetv2" -> "MobileNetV2"); unknown names unchanged."""
    return DISPLAY_NAMES.get(model, model)
