"""brain-mri-xai pipeline: data, models, training, evaluation and explanations.

A research and teaching tool, not a diagnostic device.
"""

import os

from pipeline import quiet_import

# TensorFlow's C++ start-up chatter hides our own messages; keep warnings and errors.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# ...and TF_CPP_MIN_LOG_LEVEL alone does not reach the lines logged while TensorFlow loads.
quiet_import.install()

__version__ = "0.1.0"
