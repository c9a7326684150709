"""brain-mri-xai pipeline: data, models, training, evaluation and explanations.

A research and teaching tool, not a diagnostic device.
"""

import os

# TensorFlow's C++ start-up chatter hides our own messages; keep warnings and errors.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
