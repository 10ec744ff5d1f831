"""The invisible watermark: a tiled spread-spectrum pattern added to the luma of every frame.

The mark is a TILE x TILE pattern repeated over the whole frame: a *sync* pattern, whose
presence says "synthetic output of this project", plus a *payload* pattern circularly shifted
by the payload (10 bits: 32 x 32 possible shifts). Both are band-limited to periods of 4.6-16
pixels (``BAND``), which H.264 at CRF 28 keeps and a resize to 50% does not alias, with the
frequencies of 8-pixel block grids (JPEG, H.264) and of stripes left out.

Embedding adds a precomputed integer pattern to R, G and B alike (a luma change, chroma
untouched): two saturating additions per frame. Detection sums the image's TILE-sized blocks
(the mark adds up, the picture does not), phase-correlates that sum with each pattern, and
reports the correlation peak in units of its standard deviation under no mark (``score``).
Because the mark repeats, any crop of at least a tile (the face alone) carries all of it,
at any offset; the tile's scale is searched over ``SCALES`` (a resized copy).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np

TILE = 32
"""Period of the mark in pixels (at the frame's own size)."""
BAND = (2.0, 7.0)
"""Frequencies of the mark in cycles per tile (periods TILE / 7 .. TILE / 2 pixels)."""
AMPLITUDE = 2.3
"""RMS of the mark in grey levels (PSNR about 40.6 dB against the unmarked frame)."""
PAYLOAD_SHARE = 0.6
"""Amplitude of the payload pattern relative to the sync pattern."""
THRESHOLD = 6.0
"""Sync score above which a frame is marked: the peak of the correlation surface in
standard deviations of an unmarked surface."""
SCALES = (1.0, 0.5, 0.75, 2 / 3, 1.5, 2.0)
"""Sizes of the frame relative to the marked original that detection tries; the best
score wins (a half-size copy also scores at scale 1, with a wrong payload)."""
PAYLOAD_BITS = 10
"""Bits of payload: a shift of the payload pattern, TILE x TILE positions."""
MATCH = 3.0
"""Score at an expected payload's own shift above which the frame carries that payload: one
position, not a search, so an unmarked or other payload exceeds it by chance 0.13% of the
time (a video is judged by the majority of its frames)."""
UPSAMPLE = 4
"""Correlation surfaces are read on a grid this much finer than a pixel of the tile, so that
the payload's shift relative to the sync peak is found whatever sub-pixel offset a crop or a
resize left."""
KEY = b"temposync-edge/synthetic-media/v1"
"""Seeds the two patterns: a detector needs nothing else."""


def _band_bins() -> np.ndarray:
    """[M, 2] (ky, kx) in -7..7 of the mark's frequencies (both halves of the spectrum)."""
    k = np.arange(-TILE // 2 + 1, TILE // 2)
    ky, kx = np.meshgrid(k, k, indexing="ij")
    radius = np.hypot(ky, kx)
    keep = (radius >= BAND[0]) & (radius <= BAND[1]) & (ky != 0) & (kx != 0)
    keep &= ~((ky % 4 == 0) & (kx % 4 == 0))  # 8-pixel block grids
    return np.stack([ky[keep], kx[keep]], 1)


BINS = _band_bins()


def _pattern(name: bytes) -> np.ndarray:
    """[TILE, TILE] float64, unit RMS: random phases (from the key) on the band's bins."""
    spectrum = np.zeros((TILE, TILE), np.complex128)
    stream = hashlib.shake_256(KEY + b"/" + name).digest(4 * len(BINS))
    phases = np.frombuffer(stream, np.uint32) / 2**32 * 2 * np.pi
    for (ky, kx), phase in zip(BINS, phases):
        if (ky, kx) > (0, 0):  # one of each conjugate pair; the other mirrors it
            spectrum[ky % TILE, kx % TILE] = np.exp(1j * phase)
            spectrum[-ky % TILE, -kx % TILE] = np.exp(-1j * phase)
    pattern = np.fft.ifft2(spectrum).real
    return pattern / pattern.std()


SYNC = _pattern(b"sync")
PAYLOAD = _pattern(b"payload")


def payload_of(digest: str) -> int:
    """The payload for a bundle: the first PAYLOAD_BITS bits of its sha256 (hex)."""
    return int(digest[:4], 16) >> (16 - PAYLOAD_BITS) if digest else 0


def tile(payload: int) -> np.ndarray:
    """[TILE, TILE] int16: the mark's tile for ``payload`` (rounded grey levels)."""
    dy, dx = divmod(payload % (1 << PAYLOAD_BITS), TILE)
    mark = SYNC + PAYLOAD_SHARE * np.roll(PAYLOAD, (dy, dx), (0, 1))
    mark *= AMPLITUDE / mark.std()
    return np.round(mark).astype(np.int16)


class Watermarker:
    """Marks frames of any size with one payload; the tiled pattern is made once per frame
    size (a stream's frames all have one size)."""

    def __init__(self, payload: int):
        self.payload = payload
        self._tile = tile(payload)
        self._shape: tuple[int, ...] = ()
        self._up = self._down = np.zeros(0, np.uint8)

    def _prepare(self, shape: tuple[int, ...]) -> None:
        h, w = shape[:2]
        reps = (-(-h // TILE), -(-w // TILE))
        mark = np.tile(self._tile, reps)[:h, :w, None].repeat(shape[2], 2)
        self._up = np.clip(mark, 0, 255).astype(np.uint8)
        self._down = np.clip(-mark, 0, 255).astype(np.uint8)
        self._shape = shape

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] -> a marked copy."""
        if frame.shape != self._shape:
            self._prepare(frame.shape)
        return cv2.subtract(cv2.add(frame, self._up), self._down)


def _unit(values: np.ndarray) -> np.ndarray:
    return values / np.maximum(np.abs(values), 1e-9)


@dataclass(frozen=True)
class Detection:
    score: float
    """Sync peak in standard deviations of an unmarked surface (0 when the image is smaller
    than a tile at every scale)."""
    payload: int | None
    """The payload read at that scale, when the frame is marked."""
    payload_score: float
    scale: float
    """The scale (relative to the marked original) that scored best."""
    expected_score: float | None = None
    """The payload surface at the shift of the payload asked about (``detect(expected=)``):
    above MATCH when the frame carries it. Reliable where the blind read is not (small
    crops)."""

    @property
    def matches(self) -> bool:
        return self.marked and self.expected_score is not None and (
            self.expected_score >= MATCH)

    @property
    def marked(self) -> bool:
        return self.score >= THRESHOLD


def _matcher(pattern: np.ndarray) -> np.ndarray:
    """[M] complex: the conjugate phases of the pattern's spectrum at BINS."""
    full = np.fft.fft2(pattern)
    return np.conj(_unit(full[BINS[:, 0] % TILE, BINS[:, 1] % TILE]))



_GRID = TILE * UPSAMPLE
_RINGS = np.round(np.hypot(BINS[:, 0], BINS[:, 1])).astype(int)
_SYNC_BINS = _matcher(SYNC)
_PAYLOAD_BINS = _matcher(PAYLOAD)


def _surface(values: np.ndarray) -> np.ndarray:
    """[_GRID, _GRID]: the correlation surface of per-bin values with unit-magnitude terms
    (a phase correlation), in standard deviations of a surface of random phases."""
    spectrum = np.zeros((_GRID, _GRID), np.complex128)
    spectrum[BINS[:, 0] % _GRID, BINS[:, 1] % _GRID] = values
    return np.fft.ifft2(spectrum).real * _GRID * _GRID / np.sqrt(len(BINS))


def _read(bins: np.ndarray, expected: int | None) -> tuple[float, int, float, float | None]:
    """The folded tile's spectrum at BINS -> (sync score, payload, payload score, score at
    the ``expected`` payload's shift). The sync part, estimated ring by ring at the sync
    peak, is taken out before the payload is read."""
    sync = _surface(_unit(bins) * _SYNC_BINS)
    peak = np.unravel_index(np.argmax(sync), sync.shape)
    shift = np.exp(-2j * np.pi * (BINS[:, 0] * peak[0] + BINS[:, 1] * peak[1]) / _GRID)
    placed = np.conj(_SYNC_BINS) * shift
    along = (bins * np.conj(placed)).real
    gain = np.bincount(_RINGS, along) / np.maximum(np.bincount(_RINGS), 1)
    data = _surface(_unit(bins - gain[_RINGS] * placed) * _PAYLOAD_BINS)
    # [TILE, TILE]: the payload surface at each whole-pixel shift from the sync peak, where
    # an expected payload is scored too (the surface's own maximum can fall between two
    # shifts after an encode, and rounding it then misreads a bit)
    steps = UPSAMPLE * np.arange(TILE)
    lattice = data[np.ix_((peak[0] + steps) % _GRID, (peak[1] + steps) % _GRID)]
    payload = int(np.argmax(lattice))
    at = None if expected is None else float(lattice.flat[expected % (TILE * TILE)])
    return float(sync[peak]), payload, float(lattice.flat[payload]), at


def _fold(luma: np.ndarray, side: int) -> np.ndarray | None:
    """Sum of the image's side x side blocks, the last row and column of blocks filled up
    with the image's mean (None when the image is smaller than a block)."""
    h, w = luma.shape
    if h < side or w < side:
        return None
    padded = np.full((-(-h // side) * side, -(-w // side) * side), luma.mean(), np.float32)
    padded[:h, :w] = luma
    return padded.reshape(padded.shape[0] // side, side, padded.shape[1] // side, side).sum((0, 2))


def luma(image: np.ndarray) -> np.ndarray:
    """RGB uint8 [H, W, 3] (or grey [H, W]) -> float32 luma [H, W]."""
    if image.ndim == 2:
        return image.astype(np.float32)
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)


def _at_scale(grey: np.ndarray, scale: float, expected: int | None) -> Detection | None:
    """The detection assuming the image is ``scale`` times the marked original's size."""
    side = round(TILE * scale)
    if side <= 2 * BAND[1]:
        return None
    factor = side / (TILE * scale)
    if abs(factor - 1) > 1e-6:  # the tile to a whole number of pixels
        grey = cv2.resize(grey, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
    folded = _fold(grey, side)
    if folded is None:
        return None
    full = np.fft.fft2(folded)
    sync, payload, payload_score, at = _read(full[BINS[:, 0] % side, BINS[:, 1] % side],
                                             expected)
    return Detection(sync, payload, payload_score, scale, at)


def detect(image: np.ndarray, expected: int | None = None) -> Detection:
    """Looks for the mark in an RGB [H, W, 3] or grey [H, W] uint8 image; with ``expected``
    (a payload), also scores that payload at its own shift."""
    grey = luma(image)
    best = Detection(0.0, None, 0.0, 1.0)
    for scale in SCALES:
        found = _at_scale(grey, scale, expected)
        if found is None:
            continue
        if found.score > best.score:
            best = found
    if not best.marked:
        return Detection(best.score, None, 0.0, best.scale, best.expected_score)
    return best
