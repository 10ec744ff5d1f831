"""Viseme -> mouth shape targets, blended over time with dominance functions.

Coarticulation follows Cohen & Massaro (1993): every phone segment s has a target shape T_s
and a dominance D_s(t) = a_s * exp(-(|t - c_s| / tau_s) ** 1.5); the mouth at time t is the
dominance-weighted mean of the targets. Strong dominance (bilabials, labiodentals, dentals)
makes lips really close / touch the teeth even in fast speech; weak dominance (velars, h)
lets neighbours shape the mouth, as in real speech.
"""

from __future__ import annotations

import numpy as np

from edge_runtime.visemes.vocabulary import NUM_VISEMES, VISEME_INDEX
from training.data.alignment import Segment

MOUTH_PARAMS = ("open", "width", "round", "closure", "teeth_lip", "tongue_out",
                "tongue_up", "teeth")
"""Per-frame mouth shape, each in [0, 1]:
open (jaw opening), width (lip spread), round (protrusion/rounding), closure (lips pressed),
teeth_lip (upper teeth on lower lip), tongue_out (tip between the teeth), tongue_up (tip behind
the upper teeth), teeth (how much of the teeth shows)."""

_TARGETS: dict[str, tuple[float, ...]] = {
    #       open  width round closure t_lip t_out t_up  teeth
    "sil": (0.00, 0.45, 0.15, 0.30, 0.00, 0.00, 0.00, 0.00),
    "PP":  (0.00, 0.42, 0.25, 1.00, 0.00, 0.00, 0.00, 0.00),
    "FF":  (0.12, 0.55, 0.05, 0.00, 1.00, 0.00, 0.00, 0.70),
    "TH":  (0.22, 0.55, 0.00, 0.00, 0.00, 1.00, 0.00, 0.70),
    "DD":  (0.28, 0.60, 0.00, 0.00, 0.00, 0.00, 0.80, 0.60),
    "kk":  (0.42, 0.55, 0.05, 0.00, 0.00, 0.00, 0.00, 0.35),
    "CH":  (0.18, 0.30, 0.75, 0.00, 0.00, 0.00, 0.00, 0.90),
    "SS":  (0.18, 0.80, 0.00, 0.00, 0.00, 0.00, 0.00, 1.00),
    "nn":  (0.22, 0.55, 0.00, 0.00, 0.00, 0.00, 1.00, 0.50),
    "RR":  (0.25, 0.35, 0.60, 0.00, 0.00, 0.00, 0.30, 0.30),
    "aa":  (1.00, 0.60, 0.00, 0.00, 0.00, 0.00, 0.00, 0.35),
    "E":   (0.55, 0.80, 0.00, 0.00, 0.00, 0.00, 0.00, 0.60),
    "I":   (0.30, 1.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.85),
    "O":   (0.70, 0.30, 0.90, 0.00, 0.00, 0.00, 0.00, 0.15),
    "U":   (0.28, 0.15, 1.00, 0.00, 0.00, 0.00, 0.00, 0.00),
}
_DOMINANCE: dict[str, float] = {
    "sil": 1.0, "PP": 5.0, "FF": 3.5, "TH": 3.0, "DD": 1.5, "kk": 0.6, "CH": 2.0,
    "SS": 2.0, "nn": 1.2, "RR": 1.5, "aa": 1.3, "E": 1.2, "I": 1.2, "O": 1.5, "U": 1.8,
}

_REST_DOMINANCE = 0.15
"""Constant pull towards ``sil``: negligible inside speech, closes the mouth within ~0.3 s."""

TARGETS = np.zeros((NUM_VISEMES, len(MOUTH_PARAMS)), dtype=np.float32)
"""[NUM_VISEMES, len(MOUTH_PARAMS)] mouth shape target per viseme id."""
DOMINANCE = np.zeros(NUM_VISEMES, dtype=np.float32)
for _name, _values in _TARGETS.items():
    TARGETS[VISEME_INDEX[_name]] = _values
    DOMINANCE[VISEME_INDEX[_name]] = _DOMINANCE[_name]


def mouth_track(phones: list[Segment], times: np.ndarray) -> np.ndarray:
    """Mouth parameters at ``times`` (seconds) -> [len(times), len(MOUTH_PARAMS)] float32.

    Between and outside phones the idle ``sil`` shape has a weak constant dominance, so the
    mouth closes and rests in silence.
    """
    sil = VISEME_INDEX["sil"]
    weights = [np.full(len(times), _REST_DOMINANCE, dtype=np.float64)]
    targets = [TARGETS[sil]]
    for seg in phones:
        centre = 0.5 * (seg.start + seg.end)
        tau = 0.5 * (seg.end - seg.start) + 0.03
        weights.append(DOMINANCE[seg.viseme] * np.exp(-(np.abs(times - centre) / tau) ** 1.5))
        targets.append(TARGETS[seg.viseme])
    w = np.stack(weights)  # [S, T]
    shape = (w.T @ np.stack(targets).astype(np.float64)) / w.sum(axis=0)[:, None]
    return shape.astype(np.float32)
