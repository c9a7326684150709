"""Synthetic axial brain-MRI phantoms: the embedded default dataset, with ground-truth tumour masks.

Each image is drawn from scratch with numpy/OpenCV: a head ellipse with scalp, skull and CSF
rings, a parenchyma with grey/white-matter texture, sulci, ventricles and a midline fissure, then
(for tumour classes) one mass whose appearance and location follow the class (glioma,
meningioma, pituitary; none for no_tumor).

Nuisance factors (head size/shape/pose, skull thickness, texture, ventricles, contrast type,
noise, bias field, gamma) are drawn per image independently of the class, so a classifier that
works has to look at the mass. The mask of an image is exactly the drawn tumour (its alpha map
thresholded at 0.5), so explanation maps can be scored against it.

Every image has its own generator seeded by (seed, class, index): the output does not depend on
thread scheduling or on `test_fraction`, and the same seed gives byte-identical PNGs (on one
machine; OpenCV's SIMD resize may differ in the last bit across CPUs).

Modules: `anatomy` (noise helpers, head model, contrast, tumour-free anatomy), `tumours` (the
three tumour drawers and `render_phantom`), `dataset` (argument checks, output folder, README,
`generate`). This package re-exports their public API: `from pipeline.synth import X`.
"""

from pipeline.synth.dataset import (
    GENERATOR,
    MAX_PER_CLASS,
    MAX_SIZE,
    MIN_SIZE,
    PER_CLASS,
    SPLITS,
    VERSION,
    generate,
    interrupted_note,
    is_synthetic,
)
from pipeline.synth.tumours import CLASSES, SynthError, render_phantom

__all__ = [
    "CLASSES", "GENERATOR", "MAX_PER_CLASS", "MAX_SIZE", "MIN_SIZE", "PER_CLASS", "SPLITS",
    "VERSION", "SynthError", "generate", "interrupted_note", "is_synthetic", "render_phantom",
]
