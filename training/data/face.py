"""Procedural faces: identity parameters and a per-frame renderer (OpenCV drawing).

Geometry is in canvas units (0..1, origin top-left); drawing happens at ``SUPERSAMPLE`` times
the output size with sub-pixel coordinates and is then area-downsampled, so small mouth
changes move edges smoothly instead of in whole-pixel jumps.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import cv2
import numpy as np

from training.data.mouth import MOUTH_PARAMS

SUPERSAMPLE = 2
_SHIFT = 4  # cv2 fixed-point bits for sub-pixel drawing
_AA = cv2.LINE_AA

SKIN_TONES = np.array([
    (255, 224, 196), (241, 194, 155), (224, 172, 129), (198, 134, 90), (170, 110, 70),
    (141, 85, 50), (110, 66, 40), (86, 52, 32), (233, 190, 160), (205, 160, 120),
], dtype=np.float32)
HAIR_COLOURS = np.array([
    (25, 20, 18), (60, 40, 28), (100, 70, 40), (150, 110, 60), (200, 160, 90),
    (120, 40, 20), (170, 170, 170), (230, 230, 225), (45, 45, 60), (90, 30, 90),
], dtype=np.float32)
IRIS_COLOURS = np.array([
    (70, 45, 25), (40, 25, 15), (70, 110, 150), (80, 120, 80), (110, 90, 60), (60, 60, 70),
], dtype=np.float32)

HAIR_STYLES = ("bald", "short", "long", "fringe", "curly", "bun")
BACKGROUNDS = ("solid", "gradient", "stripes", "blobs", "room")
GLASSES = ("none", "round", "square")
BEARDS = ("none", "stubble", "full")

CAVITY = (45, 12, 18)
TEETH = (238, 234, 224)
TONGUE = (196, 92, 104)


@dataclass(frozen=True)
class Identity:
    """Everything that makes one synthetic person look like themselves."""

    face_w: float
    face_h: float
    jaw: float
    skin: tuple[float, float, float]
    eye_spacing: float
    eye_y: float
    eye_w: float
    eye_h: float
    iris: tuple[float, float, float]
    brow_thickness: float
    brow_angle: float
    brow_gap: float
    nose_style: int
    nose_len: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    lip_thickness: float
    lip: tuple[float, float, float]
    hair_style: int
    hair: tuple[float, float, float]
    glasses: int
    glasses_colour: tuple[float, float, float]
    earrings: bool
    beard: int
    moustache: bool
    hair_seed: int


@dataclass(frozen=True)
class Scene:
    """What changes between clips of one person: clothes and where they are filmed."""

    shirt: tuple[float, float, float]
    background: int
    bg_a: tuple[float, float, float]
    bg_b: tuple[float, float, float]
    bg_seed: int


def _colour(rng: np.random.Generator, palette: np.ndarray, jitter: float) -> tuple:
    base = palette[rng.integers(len(palette))] + rng.normal(0, jitter, 3)
    return _rgb(np.clip(base, 0, 255))


def sample_identity(rng: np.random.Generator) -> Identity:
    skin = _colour(rng, SKIN_TONES, 8)
    lip = _rgb(np.clip(np.array(skin) * [0.78, 0.55, 0.58]
                                          + rng.normal(0, 8, 3), 0, 255))
    return Identity(
        face_w=rng.uniform(0.25, 0.31), face_h=rng.uniform(0.33, 0.39), jaw=rng.uniform(0, 1),
        skin=skin,
        eye_spacing=rng.uniform(0.09, 0.12), eye_y=rng.uniform(-0.07, -0.03),
        eye_w=rng.uniform(0.04, 0.055), eye_h=rng.uniform(0.018, 0.028),
        iris=_colour(rng, IRIS_COLOURS, 10),
        brow_thickness=rng.uniform(0.008, 0.018), brow_angle=rng.uniform(-0.25, 0.25),
        brow_gap=rng.uniform(0.035, 0.055),
        nose_style=int(rng.integers(3)), nose_len=rng.uniform(0.07, 0.11),
        nose_w=rng.uniform(0.025, 0.04),
        mouth_y=rng.uniform(0.15, 0.19), mouth_w=rng.uniform(0.075, 0.095),
        lip_thickness=rng.uniform(0.014, 0.024), lip=lip,
        hair_style=int(rng.integers(len(HAIR_STYLES))), hair=_colour(rng, HAIR_COLOURS, 10),
        glasses=int(rng.choice(len(GLASSES), p=[0.6, 0.2, 0.2])),
        glasses_colour=_colour(rng, HAIR_COLOURS, 30),
        earrings=bool(rng.random() < 0.25),
        beard=int(rng.choice(len(BEARDS), p=[0.65, 0.2, 0.15])),
        moustache=bool(rng.random() < 0.2),
        hair_seed=int(rng.integers(2**31)),
    )


def sample_scene(rng: np.random.Generator) -> Scene:
    return Scene(shirt=_rgb(rng.uniform(20, 235, 3)),
                 background=int(rng.integers(len(BACKGROUNDS))),
                 bg_a=_rgb(rng.uniform(10, 245, 3)), bg_b=_rgb(rng.uniform(10, 245, 3)),
                 bg_seed=int(rng.integers(2**31)))


@dataclass(frozen=True)
class FrameState:
    """What changes from frame to frame."""

    mouth: np.ndarray
    """[len(MOUTH_PARAMS)] mouth shape."""
    blink: float
    """0 open .. 1 closed."""
    gaze: tuple[float, float]
    """Iris offset in units of the eye size."""
    pose: np.ndarray
    """[4] tx, ty (canvas units), rotation (degrees), scale."""
    light: tuple[float, float, float]
    """gain, direction (radians), strength."""


def _pts(points: np.ndarray, n: int, origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Canvas units -> cv2 fixed-point pixel coordinates relative to ``origin`` (x, y pixels)."""
    pixels = np.asarray(points) * n - np.asarray(origin, dtype=np.float64)
    return np.round(pixels * (1 << _SHIFT)).astype(np.int32).reshape(-1, 1, 2)


def _rgb(colour) -> tuple[float, ...]:
    """Any colour (scalar, tuple, array) -> a tuple of Python floats, as cv2 wants."""
    return tuple(float(c) for c in np.atleast_1d(colour))


def _fill(img: np.ndarray, points: np.ndarray, colour, n: int | None = None,
          origin: tuple[int, int] = (0, 0)) -> None:
    """Fill a polygon given in canvas units; ``img`` may be a window at ``origin`` of an
    n-pixel canvas."""
    cv2.fillPoly(img, [_pts(points, n or img.shape[0], origin)], _rgb(colour), _AA, _SHIFT)


def _ellipse(cx, cy, ax, ay, angle=0.0, n=48, start=0.0, stop=2 * np.pi) -> np.ndarray:
    t = np.linspace(start, stop, n)
    ca, sa = np.cos(angle), np.sin(angle)
    x, y = ax * np.cos(t), ay * np.sin(t)
    return np.stack([cx + ca * x - sa * y, cy + sa * x + ca * y], axis=1)


def _polyline(img, points, colour, thickness) -> None:
    n = img.shape[0]
    cv2.polylines(img, [_pts(points, n)], False, _rgb(colour),
                  max(1, int(round(thickness * n))), _AA, _SHIFT)


def render_background(scene: Scene, n: int) -> np.ndarray:
    """[n, n, 3] float32 RGB, static for a clip."""
    a, b = np.array(scene.bg_a, np.float32), np.array(scene.bg_b, np.float32)
    y = np.linspace(0, 1, n, dtype=np.float32)[:, None, None]
    x = np.linspace(0, 1, n, dtype=np.float32)[None, :, None]
    kind = BACKGROUNDS[scene.background]
    if kind == "solid":
        img = np.broadcast_to(a, (n, n, 3)).copy()
    elif kind == "gradient":
        img = a * (1 - y) + b * y + 0 * x
    elif kind == "stripes":
        rng = np.random.default_rng(scene.bg_seed)
        w = 0.5 + 0.5 * np.sin(2 * np.pi * (x * rng.uniform(2, 6)) + rng.uniform(0, 6)) + 0 * y
        img = a * (1 - w) + b * w
    elif kind == "blobs":
        rng = np.random.default_rng(scene.bg_seed)
        img = np.broadcast_to(a, (n, n, 3)).copy()
        for _ in range(6):
            c = rng.uniform(0, 1, 2)
            cv2.circle(img, tuple(int(v * n) for v in c), int(rng.uniform(0.1, 0.3) * n),
                       _rgb(rng.uniform(10, 245, 3)), -1, _AA)
        img = cv2.GaussianBlur(img, (0, 0), n * 0.06)
    else:  # room: wall and floor
        floor = (y > 0.72).astype(np.float32)
        img = a * (1 - floor) + b * floor + 0 * x
    return np.ascontiguousarray(img, dtype=np.float32)


def _face_outline(ident: Identity, cx: float, cy: float, drop: float) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    x = ident.face_w * np.cos(t)
    y = ident.face_h * np.sin(t)
    lower = np.clip(np.sin(t), 0, None)
    x *= 1 - ident.jaw * 0.3 * lower ** 2
    y += drop * lower ** 3  # the chin drops when the jaw opens
    return np.stack([cx + x, cy + y], axis=1)


def _draw_hair_back(img, ident: Identity, cx, cy) -> None:
    style = HAIR_STYLES[ident.hair_style]
    if style == "long":
        _fill(img, np.concatenate([
            _ellipse(cx, cy - 0.02, ident.face_w * 1.25, ident.face_h * 1.1, n=48,
                     start=np.pi, stop=2 * np.pi),
            [[cx + ident.face_w * 1.3, cy + ident.face_h * 1.15],
             [cx - ident.face_w * 1.3, cy + ident.face_h * 1.15]]]), ident.hair)
    elif style == "curly":
        rng = np.random.default_rng(ident.hair_seed)
        for _ in range(14):
            a = rng.uniform(np.pi * 0.9, np.pi * 2.1)
            px = cx + np.cos(a) * ident.face_w * 1.05
            py = cy - 0.03 + np.sin(a) * ident.face_h * 1.0
            _fill(img, _ellipse(px, py, 0.07, 0.07, n=24), ident.hair)
    elif style == "bun":
        _fill(img, _ellipse(cx, cy - ident.face_h * 1.08, 0.07, 0.06), ident.hair)


def _draw_hair_front(img, ident: Identity, cx, cy) -> None:
    style = HAIR_STYLES[ident.hair_style]
    if style == "bald":
        return
    cap = _ellipse(cx, cy - 0.01, ident.face_w * 1.07, ident.face_h * 1.04, n=48,
                   start=np.pi * 1.02, stop=np.pi * 1.98)
    hairline_y = cy + ident.eye_y - (0.07 if style != "fringe" else 0.035)
    line = np.array([[cx + ident.face_w * 1.0, hairline_y + 0.05],
                     [cx + ident.face_w * 0.5, hairline_y],
                     [cx, hairline_y + (0.01 if style == "fringe" else -0.01)],
                     [cx - ident.face_w * 0.5, hairline_y],
                     [cx - ident.face_w * 1.0, hairline_y + 0.05]])
    _fill(img, np.concatenate([cap, line]), ident.hair)


def _draw_ears(img, ident: Identity, cx, cy) -> None:
    for side in (-1, 1):
        ex = cx + side * ident.face_w * 0.97
        ey = cy + ident.eye_y + 0.03
        _fill(img, _ellipse(ex, ey, 0.025, 0.045), np.array(ident.skin) * 0.93)
        if ident.earrings:
            cv2.circle(img, _pts([[ex, ey + 0.05]], img.shape[0])[0, 0], int(0.012 * img.shape[0]
                       * (1 << _SHIFT)), (215, 180, 60), -1, _AA, _SHIFT)


def _draw_eye(img, ident: Identity, ex, ey, blink, gaze) -> None:
    n = img.shape[0]
    # Work in a window around the eye: full-canvas float blends would dominate render time.
    x0, y0 = int((ex - ident.eye_w) * n) - 2, int((ey - ident.eye_h) * n) - 2
    x1, y1 = int((ex + ident.eye_w) * n) + 3, int((ey + ident.eye_h) * n) + 3
    window, origin = img[y0:y1, x0:x1], (x0, y0)
    eye = _ellipse(ex, ey, ident.eye_w, ident.eye_h)
    mask = np.zeros(window.shape[:2], np.float32)
    _fill(mask, eye, 1.0, n, origin)
    layer = window.copy()
    _fill(layer, eye, (245, 245, 240), n, origin)
    ix, iy = ex + gaze[0] * ident.eye_w * 0.4, ey + gaze[1] * ident.eye_h * 0.3
    r = ident.eye_h * 0.95
    _fill(layer, _ellipse(ix, iy, r, r, n=32), ident.iris, n, origin)
    _fill(layer, _ellipse(ix, iy, r * 0.45, r * 0.45, n=24), (10, 10, 12), n, origin)
    _fill(layer, _ellipse(ix + r * 0.3, iy - r * 0.3, r * 0.18, r * 0.18, n=12),
          (250, 250, 250), n, origin)
    lid_y = ey - ident.eye_h + 2 * ident.eye_h * min(max(blink, 0.0), 1.0)
    ys = (np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5) / n
    lid = (ys < lid_y).astype(np.float32) * mask
    layer = layer * (1 - lid[..., None]) + np.array(ident.skin, np.float32) * 0.92 * lid[..., None]
    window[:] = window * (1 - mask[..., None]) + layer * mask[..., None]
    half = np.sqrt(max(0.0, 1 - ((lid_y - ey) / ident.eye_h) ** 2)) * ident.eye_w
    _polyline(img, np.array([[ex - max(half, 0.3 * ident.eye_w), lid_y],
                             [ex + max(half, 0.3 * ident.eye_w), lid_y]]), (30, 25, 25), 0.004)
    _polyline(img, _ellipse(ex, ey, ident.eye_w, ident.eye_h, n=24, start=np.pi * 1.05,
                            stop=np.pi * 1.95), (35, 28, 28), 0.005)


def _draw_brows(img, ident: Identity, cx, cy) -> None:
    colour = np.array(ident.hair) * 0.8
    for side in (-1, 1):
        ex = cx + side * ident.eye_spacing
        by = cy + ident.eye_y - ident.brow_gap
        slope = side * ident.brow_angle * 0.04
        pts = np.array([[ex - side * ident.eye_w * 1.1, by + slope],
                        [ex, by - 0.008], [ex + side * ident.eye_w * 1.1, by - slope + 0.006]])
        _polyline(img, pts, colour, ident.brow_thickness)


def _draw_nose(img, ident: Identity, cx, cy) -> None:
    shade = np.array(ident.skin) * 0.78
    top, tip = cy + ident.eye_y + 0.02, cy + ident.eye_y + 0.02 + ident.nose_len
    if ident.nose_style == 0:
        _polyline(img, np.array([[cx + 0.004, top], [cx + 0.01, tip - 0.01], [cx, tip]]),
                  shade, 0.005)
    elif ident.nose_style == 1:
        _fill(img, np.array([[cx, top], [cx + ident.nose_w, tip], [cx - ident.nose_w * 0.3, tip]]),
              np.array(ident.skin) * 0.88)
    else:
        _fill(img, _ellipse(cx, tip - 0.008, ident.nose_w * 0.8, 0.014),
              np.array(ident.skin) * 0.9)
    for side in (-1, 1):
        _fill(img, _ellipse(cx + side * ident.nose_w * 0.55, tip + 0.002, 0.007, 0.004, n=16),
              np.array(ident.skin) * 0.5)


def mouth_geometry(ident: Identity, mouth: np.ndarray, cx: float, cy: float) -> dict:
    """Lip and cavity curves of a mouth state (canvas units)."""
    p = dict(zip(MOUTH_PARAMS, (float(v) for v in mouth)))
    mx, my = cx, cy + ident.mouth_y
    hw = ident.mouth_w * (0.8 + 0.45 * p["width"]) * (1 - 0.4 * p["round"])
    gap = ident.mouth_w * 0.75 * p["open"] * (1 - p["closure"])
    # pressed lips (closure) roll inwards: less red shows
    lip = ident.lip_thickness * (1 + 0.6 * p["round"]) * (1 - 0.6 * p["closure"])
    s = np.linspace(-1, 1, 33)
    exponent = 0.85 - 0.35 * p["round"]  # rounder cavity when the lips are rounded
    bulge = (1 - s ** 2) ** exponent
    yc = my + 0.35 * gap
    upper_in = np.stack([mx + s * hw, yc - 0.6 * gap * bulge], axis=1)
    lower_in = np.stack([mx + s * hw, yc + 0.9 * gap * bulge
                         - 0.4 * lip * p["teeth_lip"] * bulge], axis=1)
    bow = 0.25 * lip * np.exp(-(s / 0.15) ** 2)  # cupid's bow
    upper_out = upper_in - np.stack([0 * s, lip * (1 - 0.6 * s ** 2) * 1.0 - bow], axis=1)
    lower_out = lower_in + np.stack([0 * s, lip * 1.15 * (1 - 0.6 * s ** 2)
                                     * (1 - 0.3 * p["teeth_lip"])], axis=1)
    return {"p": p, "mx": mx, "my": my, "hw": hw, "gap": gap, "lip": lip, "yc": yc,
            "upper_in": upper_in, "lower_in": lower_in, "upper_out": upper_out,
            "lower_out": lower_out}


def _draw_mouth(img, ident: Identity, mouth: np.ndarray, cx, cy) -> None:
    g = mouth_geometry(ident, mouth, cx, cy)
    p, n = g["p"], img.shape[0]
    cavity = np.concatenate([g["upper_in"], g["lower_in"][::-1]])
    if g["gap"] * n > 0.3:
        mask = np.zeros(img.shape[:2], np.float32)
        _fill(mask, cavity, 1.0)
        layer = np.empty_like(img)
        layer[:] = CAVITY
        teeth_h = ident.mouth_w * 0.28 * (0.3 + 0.7 * p["teeth"])
        top = g["upper_in"][:, 1].min()
        _fill(layer, np.array([[g["mx"] - g["hw"] * 0.75, top - 0.01],
                               [g["mx"] + g["hw"] * 0.75, top - 0.01],
                               [g["mx"] + g["hw"] * 0.75, top + teeth_h],
                               [g["mx"] - g["hw"] * 0.75, top + teeth_h]]), TEETH)
        bottom = g["lower_in"][:, 1].max()
        if p["teeth"] > 0.5:  # lower teeth show when the teeth are (nearly) together
            lower_h = teeth_h * (p["teeth"] - 0.5)
            _fill(layer, np.array([[g["mx"] - g["hw"] * 0.6, bottom - lower_h],
                                   [g["mx"] + g["hw"] * 0.6, bottom - lower_h],
                                   [g["mx"] + g["hw"] * 0.6, bottom + 0.01],
                                   [g["mx"] - g["hw"] * 0.6, bottom + 0.01]]), TEETH)
        _fill(layer, _ellipse(g["mx"], bottom, g["hw"] * 0.6, ident.mouth_w * 0.25), TONGUE)
        if p["tongue_up"] > 0.05:
            _fill(layer, _ellipse(g["mx"], top + teeth_h * 0.9, g["hw"] * 0.3 * p["tongue_up"],
                                  ident.mouth_w * 0.12 * p["tongue_up"]), TONGUE)
        img[:] = img * (1 - mask[..., None]) + layer * mask[..., None]
    _fill(img, np.concatenate([g["upper_out"], g["upper_in"][::-1]]), ident.lip)
    _fill(img, np.concatenate([g["lower_in"], g["lower_out"][::-1]]),
          np.array(ident.lip) * 1.06)
    seam = np.array(ident.lip) * (0.55 - 0.25 * p["closure"])
    _polyline(img, 0.5 * (g["upper_in"] + g["lower_in"]) if g["gap"] * n <= 0.3
              else g["upper_in"], seam, 0.004 + 0.003 * p["closure"])
    if p["teeth_lip"] > 0.05:  # FF: upper teeth resting on the lower lip
        y0 = g["lower_in"][16, 1] - 0.004
        _fill(img, np.array([[g["mx"] - g["hw"] * 0.5, y0 - 0.012 * p["teeth_lip"]],
                             [g["mx"] + g["hw"] * 0.5, y0 - 0.012 * p["teeth_lip"]],
                             [g["mx"] + g["hw"] * 0.5, y0 + 0.008 * p["teeth_lip"]],
                             [g["mx"] - g["hw"] * 0.5, y0 + 0.008 * p["teeth_lip"]]]), TEETH)
    if p["tongue_out"] > 0.05:  # TH: tongue tip between the teeth, over the lower lip
        _fill(img, _ellipse(g["mx"], g["yc"] + 0.006, g["hw"] * 0.6 * p["tongue_out"],
                            0.018 * p["tongue_out"] + 0.004), TONGUE)


def _draw_beard(img, ident: Identity, cx, cy, drop) -> None:
    if BEARDS[ident.beard] == "none" and not ident.moustache:
        return
    colour = np.array(ident.hair, np.float32)
    outline = _face_outline(ident, cx, cy, drop)
    if BEARDS[ident.beard] != "none":
        lower = outline[outline[:, 1] > cy + ident.mouth_y * 0.75]
        mask = np.zeros(img.shape[:2], np.float32)
        _fill(mask, lower, 1.0)
        alpha = 0.35 if BEARDS[ident.beard] == "stubble" else 0.95
        img[:] = img * (1 - alpha * mask[..., None]) + colour * alpha * mask[..., None]
    if ident.moustache:
        my = cy + ident.mouth_y - ident.lip_thickness - 0.012
        _polyline(img, np.array([[cx - ident.mouth_w, my + 0.01], [cx, my - 0.002],
                                 [cx + ident.mouth_w, my + 0.01]]), colour, 0.014)


def _draw_glasses(img, ident: Identity, cx, cy) -> None:
    kind = GLASSES[ident.glasses]
    if kind == "none":
        return
    ey = cy + ident.eye_y
    for side in (-1, 1):
        ex = cx + side * ident.eye_spacing
        if kind == "round":
            ring = _ellipse(ex, ey, ident.eye_w * 1.35, ident.eye_w * 1.2)
        else:
            w, h = ident.eye_w * 1.4, ident.eye_w
            ring = np.array([[ex - w, ey - h], [ex + w, ey - h], [ex + w, ey + h],
                             [ex - w, ey + h], [ex - w, ey - h]])
        _polyline(img, ring, ident.glasses_colour, 0.006)
    _polyline(img, np.array([[cx - ident.eye_spacing + ident.eye_w * 1.3, ey],
                             [cx + ident.eye_spacing - ident.eye_w * 1.3, ey]]),
              ident.glasses_colour, 0.006)


def render_head(ident: Identity, state: FrameState, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Head in canonical pose -> (rgb [n, n, 3] float32, alpha [n, n] float32)."""
    cx, cy = 0.5, 0.47
    rgb = np.zeros((n, n, 3), np.float32)
    alpha = np.zeros((n, n), np.float32)
    drop = ident.mouth_w * 0.5 * float(state.mouth[0])
    _draw_hair_back(rgb, ident, cx, cy)
    _draw_hair_back(alpha, _mask_identity(ident), cx, cy)
    neck = np.array([[cx - ident.face_w * 0.45, cy + ident.face_h * 0.5],
                     [cx + ident.face_w * 0.45, cy + ident.face_h * 0.5],
                     [cx + ident.face_w * 0.5, cy + ident.face_h * 1.35],
                     [cx - ident.face_w * 0.5, cy + ident.face_h * 1.35]])
    _fill(rgb, neck, np.array(ident.skin) * 0.85)
    _fill(alpha, neck, 1.0)
    _draw_ears(rgb, ident, cx, cy)
    _draw_ears(alpha, _mask_identity(ident), cx, cy)
    outline = _face_outline(ident, cx, cy, drop)
    _fill(rgb, outline, ident.skin)
    _fill(alpha, outline, 1.0)
    _draw_beard(rgb, ident, cx, cy, drop)
    rgb *= _face_shading(ident, n)[..., None]
    _draw_nose(rgb, ident, cx, cy)
    for side in (-1, 1):
        _draw_eye(rgb, ident, cx + side * ident.eye_spacing, cy + ident.eye_y, state.blink,
                  state.gaze)
    _draw_brows(rgb, ident, cx, cy)
    _draw_mouth(rgb, ident, state.mouth, cx, cy + drop * 0.5)
    _draw_hair_front(rgb, ident, cx, cy)
    _draw_hair_front(alpha, _mask_identity(ident), cx, cy)
    _draw_glasses(rgb, ident, cx, cy)
    return rgb, alpha


@functools.lru_cache(maxsize=64)
def _face_shading(ident: Identity, n: int) -> np.ndarray:
    """[n, n] multiplicative relief: eye sockets, nose bridge, cheekbones, rounded sides.

    Besides looking less flat, this gives the faces the light/dark layout that face
    detectors (OpenCV's Haar cascade) key on, so the same detector works on them and on photos.
    """
    cx, cy = 0.5, 0.47
    dark = np.zeros((n, n), np.float32)
    light = np.zeros((n, n), np.float32)
    for side in (-1, 1):
        ex, ey = cx + side * ident.eye_spacing, cy + ident.eye_y
        _fill(dark, _ellipse(ex, ey - 0.005, ident.eye_w * 1.5, ident.eye_h * 2.6), 1.0)
        _fill(light, _ellipse(ex, ey + 0.06, ident.eye_w * 1.3, 0.025), 1.0)
    _fill(light, _ellipse(cx, cy + ident.eye_y + 0.01, 0.018, 0.05), 1.5)
    sigma = 0.015 * n
    dark = cv2.GaussianBlur(dark, (0, 0), sigma)
    light = cv2.GaussianBlur(light, (0, 0), sigma)
    xs = (np.arange(n, dtype=np.float32)[None, :] + 0.5) / n
    sides = np.clip(np.abs(xs - cx) / ident.face_w, 0, 1.2) ** 3
    return np.clip(1.0 - 0.5 * dark + 0.12 * light - 0.3 * sides, 0.3, 1.3).astype(np.float32)


def _mask_identity(ident: Identity) -> Identity:
    """The same identity drawn in white, for alpha masks."""
    return replace(ident, hair=(1.0, 1.0, 1.0), skin=(1.0, 1.0, 1.0), earrings=False)


def pose_matrix(pose: np.ndarray, n: int) -> np.ndarray:
    """[2, 3] affine warp (pixels) for pose tx, ty (canvas units), rotation (deg), scale."""
    tx, ty, rot, scale = (float(v) for v in pose)
    m = cv2.getRotationMatrix2D((0.5 * n, 0.55 * n), rot, scale)
    m[:, 2] += (tx * n, ty * n)
    return m


def mouth_centre(ident: Identity, state: FrameState) -> tuple[float, float]:
    """Canvas-unit mouth centre in the canonical pose."""
    drop = ident.mouth_w * 0.5 * float(state.mouth[0])
    return 0.5, 0.47 + ident.mouth_y + 0.5 * drop


@functools.lru_cache(maxsize=4)
def _centred_grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(ys, xs) [n, n] float32 in [-0.5, 0.5), for lighting."""
    ys, xs = np.mgrid[0:n, 0:n].astype(np.float32) / n - 0.5
    return ys, xs


def light_field(n: int, gain: float, direction: float, strength: float) -> np.ndarray:
    """[n, n] float32 light multiplier: a gain and a linear gradient of ``strength`` across
    the frame towards ``direction`` (radians)."""
    ys, xs = _centred_grid(n)
    return gain * (1 + strength * 2 * (xs * np.cos(direction) + ys * np.sin(direction)))


def render_frame(ident: Identity, scene: Scene, state: FrameState, background: np.ndarray,
                 size: int) -> np.ndarray:
    """One frame -> [size, size, 3] uint8 RGB. background: render_background(scene, n) with
    n = size * SUPERSAMPLE."""
    n = background.shape[0]
    head, alpha = render_head(ident, state, n)
    m = pose_matrix(state.pose, n)
    head = cv2.warpAffine(head, m, (n, n), flags=cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(alpha, m, (n, n), flags=cv2.INTER_LINEAR)[..., None]
    body = background.copy()
    shoulders = _ellipse(0.5 + 0.3 * state.pose[0], 1.08, 0.42, 0.2)
    _fill(body, shoulders, scene.shirt)
    img = body * (1 - alpha) + head * alpha
    img = np.clip(img * light_field(n, *state.light)[..., None], 0, 255)
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA).round().astype(np.uint8)
