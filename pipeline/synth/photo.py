"""A phone photo of a slice shown on a monitor or on a film over a lightbox, made from the slice.

Users photograph a viewer's screen instead of exporting the image; the tool answered such photos
as if they were exports. `screen_photo` makes realistic ones to measure the input checks on
(`pipeline.photo`) and to test them: the slice in the viewer's black frame, warped in
perspective onto a larger camera frame with a bezel and a room around it (or, for a film, a
bright lightbox), the screen's or the camera's colour cast, a pixel-grid moiré, a glare gradient,
camera noise and a slight defocus, then JPEG recompression. `strength` (0 to 1) scales the
distortions together; `tint=0` gives a grey-tinted photo (a phone's black-and-white mode, or a
photo turned grey), the case the colour cue cannot see.
"""

from __future__ import annotations

import cv2
import numpy as np

# per-channel gains (R, G, B) at full strength: a cold LCD, a green-cast phone, warm room light
TINTS = {"blue": (0.86, 0.98, 1.16), "green": (0.90, 1.12, 0.92), "warm": (1.14, 1.0, 0.82)}
FRAME = (480, 640)  # the camera frame, rows x columns (a phone photo as sent, shrunk)


def _grey(image: np.ndarray) -> np.ndarray:
    g = np.asarray(image)
    return cv2.cvtColor(g[..., :3].astype(np.uint8), cv2.COLOR_RGB2GRAY) if g.ndim == 3 else g


def screen_photo(image: np.ndarray, rng: np.random.Generator, strength: float = 0.5,
                 tint: str | None = "blue", film: bool = False,
                 quality: int = 85, fill: float | None = None) -> np.ndarray:
    """`image` (grey or RGB uint8) photographed on a screen (or a lightbox film, `film`), as an
    RGB uint8 array of `FRAME` size. `tint`: a key of `TINTS`, or None for a grey photo.
    `fill`: the shown image's side over the frame's short side (default 0.80 down to 0.55 with
    `strength`; 1.1 or so is a close-up, the viewer's black frame filling the photo)."""
    s = float(np.clip(strength, 0.0, 1.0))
    g = _grey(image).astype(np.float32)
    h, w = FRAME
    # the viewer shows the slice in a black (film: black) area a little larger than itself
    pad = int(0.08 * max(g.shape))
    shown = cv2.copyMakeBorder(g, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    shown = np.maximum(shown, 6.0)  # a screen's black glows; a film is never fully opaque
    sh, sw = shown.shape
    # where its corners land: a quad filling 55-80% of the frame, skewed by the camera's angle
    side = (fill if fill is not None else 0.80 - 0.25 * s) * min(h, w)
    cy, cx = h / 2 + rng.uniform(-20, 20), w / 2 + rng.uniform(-40, 40)
    skew = side * (0.04 + 0.14 * s)
    corners = np.float32([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * side / 2
    corners += rng.uniform(-skew, skew, corners.shape).astype(np.float32)
    corners += np.float32([cx, cy])
    m = cv2.getPerspectiveTransform(np.float32([[0, 0], [sw, 0], [sw, sh], [0, sh]]), corners)
    screen = cv2.warpPerspective(shown, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=-1.0)
    inside = cv2.warpPerspective(np.ones_like(shown), m, (w, h), flags=cv2.INTER_LINEAR) > 0.5
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if film:  # a lightbox: bright, slightly uneven white all around the film
        around = 235 - 25 * ((xx - cx) ** 2 + (yy - cy) ** 2) / (w * w / 4)
    else:  # a dark bezel just around the screen, then a dim room with a gradient
        bezel = cv2.dilate(inside.astype(np.uint8), np.ones((31, 31), np.uint8)).astype(bool)
        room = 60 + 50 * (xx / w) + 30 * (yy / h)
        around = np.where(bezel & ~inside, 18.0, room)
    rgb = np.repeat(np.where(inside, screen, around)[..., None], 3, axis=2)
    # the screen's pixel grid beating against the camera's: fine, slightly rotated, coloured
    # fringes (each sub-pixel colour is offset), only on the screen
    if not film and s > 0:
        angle = rng.uniform(0.1, 0.5)
        u = xx * np.cos(angle) + yy * np.sin(angle)
        for c in range(3):
            wave = np.sin(2 * np.pi * u / 3.1 + c * 2.1) * np.sin(2 * np.pi * yy / 47.0)
            rgb[..., c] += inside * (3 + 9 * s) * wave
    if tint:
        rgb *= np.float32(1 + s * (np.asarray(TINTS[tint], np.float32) - 1))
    # glare: a broad bright patch where the lamp reflects
    gy, gx = rng.uniform(0, h), rng.uniform(0, w)
    glare = np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * (0.3 * w) ** 2))
    rgb += (10 + 50 * s) * glare[..., None]
    rgb = cv2.GaussianBlur(rgb, (0, 0), 0.6 + 0.8 * s)  # focus and shake
    rgb += rng.normal(0, 1.5 + 4 * s, rgb.shape).astype(np.float32)  # sensor noise, per channel
    out = np.clip(rgb, 0, 255).astype(np.uint8)
    if not tint:  # a photo turned grey: every colour cue gone
        out = np.repeat(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    ok, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()
