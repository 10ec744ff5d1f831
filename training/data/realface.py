"""A real face made to talk: its 468 landmarks moved by the mouth model, the picture warped
piecewise-affinely onto them and the mouth interior drawn inside the inner lips.

The mouth model is the synthetic faces' own (training.data.mouth's parameters, shaped by
training.data.face.mouth_geometry): each lip landmark moves as the synthetic lip curve at its
place along the mouth moves between the resting shape (``sil``) and the frame's shape, in
units of the real mouth's width. The source's own mouth is first closed (a smiling or open
mouth in the photo becomes a resting one), the chin follows the lower lip, and the skin
near the lips follows them. Eyelids close for blinks the same way.

The warp is written here from OpenCV pieces (Delaunay triangles from cv2.Subdiv2D, one
cv2.remap through a dense map built per triangle) because OpenCV has no piecewise-affine
warp of its own; the map covers only the triangles that move, so the rest of the picture is
the photo's own pixels.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import cv2
import numpy as np

from edge_runtime.face.landmarks import (
    FACE_OVAL,
    LEFT_EYE,
    LOWER_FACE,
    LOWER_LIP_INNER,
    LOWER_LIP_OUTER,
    MOUTH_CORNERS,
    RIGHT_EYE,
    UPPER_LIP_INNER,
    UPPER_LIP_OUTER,
)
from edge_runtime.visemes.vocabulary import VISEME_INDEX
from training.data.face import CAVITY, SKIN_TONES, TEETH, TONGUE, mouth_geometry, sample_identity
from training.data.mouth import MOUTH_PARAMS, TARGETS

CONTOURS = {"upper_out": UPPER_LIP_OUTER, "upper_in": UPPER_LIP_INNER,
            "lower_in": LOWER_LIP_INNER, "lower_out": LOWER_LIP_OUTER}
"""mouth_geometry's four lip curves and the landmarks on each."""
LIPS = tuple(sorted({i for contour in CONTOURS.values() for i in contour}))
UPPER_LIDS = RIGHT_EYE[15:8:-1] + LEFT_EYE[15:8:-1]
LOWER_LIDS = RIGHT_EYE[1:8] + LEFT_EYE[1:8]
"""Eyelid landmarks facing each other (the eye contours run corner, lower lid, corner, upper
lid back)."""
JAW = LOWER_FACE[:19]
"""The face contour from cheek to cheek around the chin (LOWER_FACE without the nose base)."""
CENTRE = 5
"""Index of the mouth's midline point on each lip contour."""
REST = TARGETS[VISEME_INDEX["sil"]]
"""The resting mouth: the shape a source's closed mouth stands for."""
OPEN = TARGETS[VISEME_INDEX["aa"]]
"""An open mouth, for the triangulation (inner lips apart)."""
NEAR = 0.6
"""Skin within about this many mouth half-widths of a lip follows it (Gaussian falloff)."""
RING = 1.5
"""Static points on the face contour scaled by this about the face centre bound the warp."""
CHIN = 0.7
"""The chin moves this share of the lower lip's centre (the lip also rolls off the teeth)."""
LID_CLOSURE = 0.95
"""A full blink brings the upper lid this far towards the lower one."""
TEETH_TOP = 0.12
TONGUE_LIFT = 0.07
FF_TEETH = (0.14, 0.09)
TH_TONGUE = (0.21, 0.05)
"""Proportions of the mouth interior, in mouth half-widths: those of the synthetic renderer
(training.data.face._draw_mouth: canvas units over its mean mouth half-width 0.085), so real
and synthetic mouths show teeth and tongue alike."""
SKIN_LUMA = float(SKIN_TONES.mean(0) @ (0.299, 0.587, 0.114))
"""The synthetic skin's mean luma: CAVITY, TEETH and TONGUE are drawn for it."""


@functools.lru_cache(maxsize=1)
def _model_identity():
    """A synthetic identity for mouth_geometry, in mouth units (mouth_w = 1, mouth at 0)."""
    return dataclasses.replace(sample_identity(np.random.default_rng(0)), mouth_w=1.0,
                               mouth_y=0.0)


def geometry(params: np.ndarray, lip: float) -> dict:
    """mouth_geometry of ``params`` in mouth units for a lip thickness ``lip``."""
    return mouth_geometry(dataclasses.replace(_model_identity(), lip_thickness=lip), params,
                          0.0, 0.0)


@dataclass(frozen=True)
class MouthFrame:
    """Mouth units <-> picture pixels: origin at the mouth corners' midpoint, x from the
    subject's right corner to the left one, y down, one unit = mouth_geometry's mouth_w."""

    origin: np.ndarray
    """[2] pixels."""
    axes: np.ndarray
    """[2, 2] rows: the x and y unit vectors in pixels."""
    unit: float
    """Pixels per mouth unit."""

    @classmethod
    def of(cls, points: np.ndarray) -> MouthFrame:
        right, left = points[list(MOUTH_CORNERS)]
        x = (left - right) / np.linalg.norm(left - right)
        half = float(np.linalg.norm(left - right)) / 2
        return cls((right + left) / 2, np.stack([x, [-x[1], x[0]]]),
                   half / geometry(REST, 0.2)["hw"])

    def to_local(self, points: np.ndarray) -> np.ndarray:
        return (points - self.origin) @ self.axes.T / self.unit

    def to_pixels(self, local: np.ndarray) -> np.ndarray:
        return local * self.unit @ self.axes + self.origin

    def vectors(self, local: np.ndarray) -> np.ndarray:
        """Displacements in mouth units -> pixels."""
        return local * self.unit @ self.axes


@dataclass(frozen=True)
class Rig:
    """One picture's face, ready to move: built once per photo or video frame."""

    source: np.ndarray
    """[468, 2] landmarks as found (pixels)."""
    rest: np.ndarray
    """[468, 2] the same with the mouth closed."""
    frame: MouthFrame
    lip: float
    """Upper lip thickness in mouth units (mouth_geometry's lip_thickness)."""
    place: dict
    """Contour name -> [11] position of its landmarks along the mouth, -1..1."""
    jaw: np.ndarray
    """[468] how far each point follows the lower lip's centre (the chin: CHIN)."""
    nearest: np.ndarray
    """[468] index into LIPS of each point's nearest lip landmark."""
    near: np.ndarray
    """[468] weight of that lip landmark's motion (1 on the lips, 0 far from them)."""
    ring: np.ndarray
    """[R, 2] static points around the face."""
    triangles: np.ndarray
    """[M, 3] indices into the control points (landmarks, then ring)."""

    @property
    def control_count(self) -> int:
        return len(self.source) + len(self.ring)


def build_rig(points: np.ndarray, triangles: np.ndarray | None = None) -> Rig:
    """points [468, 2] (pixels) -> the face's rig; ``triangles`` from another frame's rig of
    the same face are reused (the topology holds while the face moves a little)."""
    points = np.asarray(points, np.float64)[:, :2]
    frame = MouthFrame.of(points)
    local = frame.to_local(points)
    hw = geometry(REST, 0.2)["hw"]
    place = {name: np.clip(local[list(idx), 0] / hw, -1, 1) for name, idx in CONTOURS.items()}
    thickness = local[UPPER_LIP_INNER[CENTRE], 1] - local[UPPER_LIP_OUTER[CENTRE], 1]
    lip = max(float(thickness), 0.05) / (geometry(REST, 1.0)["lip"])
    jaw = _jaw_weights(local, hw)
    lip_points = points[list(LIPS)]
    distance = np.linalg.norm(points[:, None] - lip_points[None], axis=2)
    nearest = distance.argmin(1)
    near = np.exp(-(distance.min(1) / (NEAR * hw * frame.unit)) ** 2)
    near[list(LIPS)] = 1.0
    rig = Rig(points, points, frame, lip, place, jaw, nearest, near, _ring(points),
              np.zeros((0, 3), np.int32))
    rest = points + _closing(rig)
    rig = dataclasses.replace(rig, rest=rest)
    if triangles is None:
        triangles = triangulate(np.vstack([rest + displacement(rig, OPEN), rig.ring]))
    return dataclasses.replace(rig, triangles=triangles)


def _jaw_weights(local: np.ndarray, hw: float) -> np.ndarray:
    """[468]: CHIN below the lower lip within the mouth's width, fading to 0 at the corners'
    line and towards the sides of the face (the jaw turns about the ears)."""
    lip_level = local[LOWER_LIP_OUTER[CENTRE], 1]
    side = np.abs(local[list(JAW), 0]).max()
    vertical = np.clip(local[:, 1] / max(lip_level, 1e-6), 0, 1)
    lateral = np.clip((side - np.abs(local[:, 0])) / max(side - hw, 1e-6), 0, 1)
    return CHIN * vertical * lateral


def _ring(points: np.ndarray) -> np.ndarray:
    oval = points[list(FACE_OVAL)]
    centre = oval.mean(0)
    return centre + RING * (oval - centre)


def _spread(rig: Rig, lips: np.ndarray) -> np.ndarray:
    """Lip landmark displacements [len(LIPS), 2] (pixels) -> every landmark's [468, 2]: near
    the lips as the nearest lip point, the chin as the lower lip's centre."""
    centre = lips[LIPS.index(LOWER_LIP_OUTER[CENTRE])]
    out = rig.near[:, None] * lips[rig.nearest] + \
        (1 - rig.near[:, None]) * rig.jaw[:, None] * centre
    out[list(LIPS)] = lips
    return out


def _lip_vectors(rig: Rig, local: dict) -> np.ndarray:
    """Per-contour local displacements {name: [11, 2]} -> [len(LIPS), 2] pixels (a corner
    shared by two contours takes the first)."""
    out = np.zeros((len(LIPS), 2))
    for name in reversed(tuple(CONTOURS)):
        for index, vector in zip(CONTOURS[name], local[name]):
            out[LIPS.index(index)] = vector
    return rig.frame.vectors(out)


def _closing(rig: Rig) -> np.ndarray:
    """[468, 2] the displacement that closes the source's mouth: the inner lips meet
    halfway, the outer lips and the chin go with them."""
    local = rig.frame.to_local(rig.source)
    gap = np.clip(local[list(LOWER_LIP_INNER), 1] - local[list(UPPER_LIP_INNER), 1], 0, None)
    down = np.stack([np.zeros_like(gap), gap / 2], 1)
    moves = {"upper_out": down, "upper_in": down, "lower_in": -down, "lower_out": -down}
    return _spread(rig, _lip_vectors(rig, moves))


def displacement(rig: Rig, params: np.ndarray) -> np.ndarray:
    """[468, 2] pixels that take the resting face to the mouth shape ``params``
    [len(MOUTH_PARAMS)]: each lip landmark moves as its synthetic lip curve does at its
    place along the mouth (plus the mouth's drop with the jaw, as the synthetic face)."""
    shaped, rest = geometry(params, rig.lip), geometry(REST, rig.lip)
    grid = np.linspace(-1, 1, len(shaped["upper_in"]))
    drop = 0.25 * (float(params[0]) - float(REST[0]))
    moves = {}
    for name in CONTOURS:
        s = rig.place[name]
        dy = np.interp(s, grid, shaped[name][:, 1]) - np.interp(s, grid, rest[name][:, 1])
        moves[name] = np.stack([s * (shaped["hw"] - rest["hw"]), dy + drop], 1)
    return _spread(rig, _lip_vectors(rig, moves))


def target(rig: Rig, params: np.ndarray, blink: float) -> np.ndarray:
    """[468, 2] the face with mouth ``params`` and the eyelids ``blink`` (0..1) closed."""
    points = rig.rest + displacement(rig, params)
    upper, lower = list(UPPER_LIDS), list(LOWER_LIDS)
    points[upper] += LID_CLOSURE * blink * (points[lower] - points[upper])
    return points


def triangulate(points: np.ndarray) -> np.ndarray:
    """[N, 2] -> Delaunay triangles [M, 3] as indices (cv2.Subdiv2D)."""
    low = points.min(0) - 2
    high = points.max(0) + 2
    subdiv = cv2.Subdiv2D((int(low[0]), int(low[1]), int(high[0] - low[0]) + 2,
                           int(high[1] - low[1]) + 2))
    subdiv.insert([(float(x), float(y)) for x, y in points])
    index = {(np.float32(x), np.float32(y)): i for i, (x, y) in enumerate(points)}
    corners = subdiv.getTriangleList().reshape(-1, 3, 2)
    # Triangles on Subdiv2D's outer (virtual) vertices match no point and are dropped.
    found = [[index.get((x, y), -1) for x, y in tri] for tri in corners]
    return np.array([tri for tri in found if min(tri) >= 0], np.int32).reshape(-1, 3)


def warp(image: np.ndarray, source: np.ndarray, dest: np.ndarray, triangles: np.ndarray
         ) -> np.ndarray:
    """The picture [H, W, C] moved so that the control points ``source`` [N, 2] land on
    ``dest`` [N, 2], affine within each triangle; pixels of unmoved triangles are kept."""
    moved = np.linalg.norm(dest - source, axis=1) > 1e-3
    active = triangles[moved[triangles].any(1)]
    out = image.copy()
    if not len(active):
        return out
    h, w = image.shape[:2]
    corners = np.concatenate([dest[active], source[active]]).reshape(-1, 2)
    x0, y0 = np.clip(np.floor(corners.min(0)).astype(int), 0, None)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 1, (w, h))
    if x1 <= x0 or y1 <= y0:
        return out
    d, s = dest[active], source[active]  # [M, 3, 2]
    edges = d[:, 1:] - d[:, :1]
    keep = np.abs(edges[:, 0, 0] * edges[:, 1, 1] - edges[:, 0, 1] * edges[:, 1, 0]) > 1e-3
    d, s = d[keep], s[keep]  # a triangle without area holds no pixel
    homogeneous = np.concatenate([d, np.ones((len(d), 3, 1))], 2).transpose(0, 2, 1)
    maps = np.zeros((len(d) + 1, 2, 3))
    maps[0] = ((1, 0, 0), (0, 1, 0))
    maps[1:] = s.transpose(0, 2, 1) @ np.linalg.inv(homogeneous)  # dest -> source affines
    labels = np.zeros((y1 - y0, x1 - x0), np.int32)
    corners = np.round((d - (x0, y0)) * 16).astype(np.int32)
    for k, tri in enumerate(corners, start=1):
        cv2.fillConvexPoly(labels, tri, k, lineType=cv2.LINE_8, shift=4)
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    m = maps[labels]  # [h, w, 2, 3]: this pixel's destination -> source affine
    map_x = (m[..., 0, 0] * xs + m[..., 0, 1] * ys + m[..., 0, 2]).astype(np.float32)
    map_y = (m[..., 1, 0] * xs + m[..., 1, 1] * ys + m[..., 1, 2]).astype(np.float32)
    out[y0:y1, x0:x1] = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)
    return out


@dataclass(frozen=True)
class Palette:
    """Colours of the mouth interior, shaded to the face."""

    cavity: np.ndarray
    teeth: np.ndarray
    tongue: np.ndarray


def palette(image: np.ndarray, rig: Rig) -> Palette:
    """The interior's colours for this face: the synthetic ones scaled by the face's
    brightness (median over the lower face), the tongue tinted towards the lips."""
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(rig.source[list(LOWER_FACE)]).astype(np.int32)], 1)
    lips = np.zeros_like(mask)
    outer = np.concatenate([rig.source[list(UPPER_LIP_OUTER)],
                            rig.source[list(LOWER_LIP_OUTER)][::-1]])
    cv2.fillPoly(lips, [np.round(outer).astype(np.int32)], 1)
    skin = image[(mask > 0) & (lips == 0)].reshape(-1, 3).astype(np.float64)
    lip = image[lips > 0].reshape(-1, 3).astype(np.float64)
    luma = float(np.median(skin @ (0.299, 0.587, 0.114))) if len(skin) else SKIN_LUMA
    shade = float(np.clip(luma / SKIN_LUMA, 0.3, 1.2))
    lip_colour = np.median(lip, 0) if len(lip) else np.array(TONGUE, np.float64)
    return Palette(np.array(CAVITY) * shade, np.array(TEETH) * shade * 0.9,
                   0.5 * np.array(TONGUE) * shade + 0.5 * lip_colour * 0.85)


def _local_polygon(frame: MouthFrame, local: np.ndarray) -> np.ndarray:
    return np.round(frame.to_pixels(local) * 16).astype(np.int32)


def _ellipse(cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    return np.stack([cx + ax * np.cos(t), cy + ay * np.sin(t)], 1)


def draw_mouth(image: np.ndarray, rig: Rig, points: np.ndarray, params: np.ndarray,
               colours: Palette) -> None:
    """Draw the cavity, teeth and tongue inside the inner lips of ``points`` [468, 2], and
    the upper teeth on the lower lip (FF) and the tongue tip between the teeth (TH), as the
    synthetic mouth does for the same parameters. In place on ``image`` [H, W, 3] uint8."""
    p = dict(zip(MOUTH_PARAMS, (float(v) for v in params)))
    frame = rig.frame
    local = frame.to_local(points)
    upper = local[list(UPPER_LIP_INNER)]
    lower = local[list(LOWER_LIP_INNER)]
    hw = float(upper[-1, 0] - upper[0, 0]) / 2
    gap = float((lower[:, 1] - upper[:, 1]).max())
    if gap * frame.unit > 0.3:
        _draw_cavity(image, frame, upper, lower, hw, p, colours)
    if p["teeth_lip"] > 0.05:
        y = lower[CENTRE, 1] - 0.05
        band = np.array([[-0.5 * hw, y - FF_TEETH[0] * p["teeth_lip"]],
                         [0.5 * hw, y - FF_TEETH[0] * p["teeth_lip"]],
                         [0.5 * hw, y + FF_TEETH[1] * p["teeth_lip"]],
                         [-0.5 * hw, y + FF_TEETH[1] * p["teeth_lip"]]])
        cv2.fillPoly(image, [_local_polygon(frame, band)], colours.teeth.tolist(),
                     cv2.LINE_AA, shift=4)
    if p["tongue_out"] > 0.05:
        middle = (upper[CENTRE, 1] + lower[CENTRE, 1]) / 2 + TONGUE_LIFT
        tip = _ellipse(0.0, middle, 0.6 * hw * p["tongue_out"],
                       TH_TONGUE[0] * p["tongue_out"] + TH_TONGUE[1])
        cv2.fillPoly(image, [_local_polygon(frame, tip)], colours.tongue.tolist(),
                     cv2.LINE_AA, shift=4)


def _draw_cavity(image: np.ndarray, frame: MouthFrame, upper: np.ndarray, lower: np.ndarray,
                 hw: float, p: dict, colours: Palette) -> None:
    """The open mouth: dark cavity, the tongue on the floor (and raised for t, d, n), lower
    teeth when the teeth are nearly together, upper teeth under the upper lip."""
    outline = np.concatenate([upper, lower[::-1]])
    pixels = frame.to_pixels(outline)
    x0, y0 = np.floor(pixels.min(0)).astype(int) - 2
    x1, y1 = np.ceil(pixels.max(0)).astype(int) + 3
    h, w = image.shape[:2]
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return
    shift = frame.origin - (x0, y0)
    box = MouthFrame(shift, frame.axes, frame.unit)
    layer = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
    layer[:] = np.clip(colours.cavity, 0, 255).astype(np.uint8)
    teeth = np.clip(colours.teeth, 0, 255).tolist()
    tongue = np.clip(colours.tongue, 0, 255).tolist()
    teeth_h = 0.28 * (0.3 + 0.7 * p["teeth"])
    top, bottom = float(upper[:, 1].min()), float(lower[:, 1].max())
    # back to front: the tongue on the floor (no taller than the opening), the raised tip,
    # then the teeth over them
    cv2.fillPoly(layer, [_local_polygon(box, _ellipse(0.0, bottom, 0.6 * hw,
                                                      min(0.25, 0.4 * (bottom - top))))],
                 tongue, cv2.LINE_AA, shift=4)
    if p["tongue_up"] > 0.05:
        tip = _ellipse(0.0, top + teeth_h * 0.9, 0.3 * hw * p["tongue_up"], 0.12 * p["tongue_up"])
        cv2.fillPoly(layer, [_local_polygon(box, tip)], tongue, cv2.LINE_AA, shift=4)
    if p["teeth"] > 0.5:
        low = lower[np.abs(lower[:, 0]) <= 0.6 * hw + 1e-6]
        lower_h = teeth_h * (p["teeth"] - 0.5)
        band = np.concatenate([low - (0, lower_h), (low + (0, TEETH_TOP))[::-1]])
        cv2.fillPoly(layer, [_local_polygon(box, band)], teeth, cv2.LINE_AA, shift=4)
    edge = upper[np.abs(upper[:, 0]) <= 0.75 * hw + 1e-6]
    band = np.concatenate([edge - (0, TEETH_TOP), (edge + (0, teeth_h))[::-1]])
    cv2.fillPoly(layer, [_local_polygon(box, band)], teeth, cv2.LINE_AA, shift=4)
    mask = np.zeros(layer.shape[:2], np.uint8)
    cv2.fillPoly(mask, [_local_polygon(box, outline)], 255, cv2.LINE_AA, shift=4)
    alpha = (mask.astype(np.float32) / 255)[..., None]
    region = image[y0:y1, x0:x1]
    region[:] = np.round(region * (1 - alpha) + layer * alpha).astype(np.uint8)


def animate(image: np.ndarray, rig: Rig, params: np.ndarray, blink: float,
            colours: Palette) -> np.ndarray:
    """The picture [H, W, 3] uint8 with the face's mouth at ``params`` and eyelids at
    ``blink``; outside the moving triangles the pixels are the picture's own."""
    points = target(rig, params, blink)
    out = warp(image, np.vstack([rig.source, rig.ring]), np.vstack([points, rig.ring]),
               rig.triangles)
    draw_mouth(out, rig, points, params, colours)
    return out
