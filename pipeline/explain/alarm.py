"""The shortcut alarm's rule and words, in one home that imports no TensorFlow: the CLI's
`--help` and the dashboard's first drawing use them (`metrics.top_outside_head` applies them).

A heatmap raises the alarm when more than OUTSIDE_HEAD_ALARM of the heat in its hottest
SHORTCUT_TOP share of pixels lies outside the head. Chosen on phantom models trained with and
without a planted corner marker (README, "Shortcut alarm"): the hottest region follows the
evidence the model uses, while the share of all energy (the former rule, > 0.5 of the energy
outside) is diluted by a coarse map's spread over the whole frame and missed most marker-trained
Grad-CAMs. Half of the top region is far above an unfocused map's share (the area outside the
head: ~20 % of a head-cropped real MRI frame, ~40 % of a phantom frame).

"Outside the head", not "the brain": the mask is the head's silhouette (`geometry.head_mask`), so
heat on the skull, scalp, face or neck counts as inside and is never flagged (a clinician's
review, 2026-12-05, read "outside the brain" literally).
"""

SHORTCUT_TOP = 0.10
OUTSIDE_HEAD_ALARM = 0.5
OUTSIDE_HEAD_MESSAGE = "evidence mostly outside the head"
# what the alarm cannot see, said wherever it is explained
OUTSIDE_HEAD_BLIND = ("It does not look at the skull, scalp, face or neck: those count as "
                      "inside the head, so heat there is never flagged. Look at the overlay.")


def outside_share_words(share: float) -> str:
    """"62% of the heat in the hottest 10% lies outside the head": one heatmap's share."""
    return f"{share:.0%} of the heat in the hottest {SHORTCUT_TOP:.0%} lies outside the head"
