"""Paste-back: a rendered aligned face goes back into the reference photo through the inverse
alignment, blended with a feathered mask over the lower face (jaw, mouth, chin) and
colour-matched to the photo. Outside the mask every output pixel is the photo's own.

Inside the mask the photo keeps its fine detail where the face does not move: the model
renders at 128 px, the photo's face is often three or four times that, so its skin and lip
texture above the render's resolution (the photo less its blur at the render's scale) is
added back wherever the rendered face agrees with the blurred photo. Where the mouth opens
or the lips move, the render departs from the photo and the weight falls to zero, so the
still photo's lips never show over a moving mouth.

Everything that depends only on the photo (mask, region, inverse transform, detail layer)
is computed once per reference; per frame: a colour lookup and a comparison on the small
face, two warps and one blend over the mask's bounding box.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_runtime.face.align import Alignment
from edge_runtime.face.landmarks import LOWER_FACE

GROW = 0.15
"""The mask reaches this far (times the eye distance) beyond the lower-face contour: an open
mouth drops the generated jaw below the photo's chin."""
FEATHER = 0.12
"""Blur of the mask's edge (Gaussian sigma, times the eye distance)."""
GAIN_RANGE = (0.67, 1.5)
"""Bounds of the colour transfer's contrast gain: a mouth that opens must not be flattened."""
DETAIL_SIGMA = 1.0
"""The photo's detail layer is the photo less its Gaussian blur of this sigma, in rendered
pixels (the render's own resolution: what it cannot carry)."""
DETAIL_TOLERANCE = 24.0
"""Grey levels: where the rendered face differs from the blurred photo by this much (the
largest channel, smoothed over a rendered pixel), none of the photo's detail is added;
where they agree, all of it."""


@dataclass
class PasteBack:
    photo: np.ndarray
    """[H, W, 3] uint8: the photo at output size; every frame starts as a copy of it."""
    inverse: np.ndarray
    """[2, 3] aligned-crop pixels -> pixels of the region ``box``."""
    box: tuple[int, int, int, int]
    """x0, y0, x1, y1 of the region the mask covers (output pixels)."""
    mask: np.ndarray
    """[y1 - y0, x1 - x0] float32 in [0, 1]: 0 keeps the photo's pixel exactly."""
    keep: np.ndarray
    """1 - mask: the photo's weight."""
    lut: np.ndarray | None = field(default=None)
    """[256, 1, 3] uint8 colour transfer for the rendered face; fixed by ``calibrate``."""
    detail: PhotoDetail | None = field(default=None)
    """The photo's fine detail and its blur at the render's size; made on the first frame
    from the photo, ``inverse``, ``box`` and ``mask`` alone (a receiver rebuilds it the same
    way)."""

    @classmethod
    def build(cls, photo: np.ndarray, alignment: Alignment, landmarks: np.ndarray,
              eye_distance: float) -> PasteBack:
        """photo [H, W, 3] at output size; ``alignment`` from its pixels to the crop;
        landmarks [468, 2] and ``eye_distance`` in its pixels."""
        h, w = photo.shape[:2]
        polygon = np.round(landmarks[list(LOWER_FACE)]).astype(np.int32)
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [polygon], 255)
        grow = max(1, int(round(GROW * eye_distance)))
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE,
                                                          (2 * grow + 1, 2 * grow + 1)))
        soft = cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0),
                                max(FEATHER * eye_distance, 0.5))
        covered = cv2.warpAffine(np.ones((alignment.size, alignment.size), np.float32),
                                 alignment.inverse, (w, h), flags=cv2.INTER_NEAREST)
        soft *= cv2.erode(covered, np.ones((3, 3), np.uint8))
        soft[soft < 1 / 255] = 0
        ys, xs = np.nonzero(soft)
        if len(xs) == 0:
            raise ValueError("the lower-face mask is empty (the face lies outside the photo)")
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        shift = np.array([[1.0, 0, -x0], [0, 1.0, -y0], [0, 0, 1]])
        inverse = (shift @ np.vstack([alignment.inverse, [0, 0, 1]]))[:2]
        mask = np.ascontiguousarray(soft[y0:y1, x0:x1])
        return cls(photo, inverse, (int(x0), int(y0), int(x1), int(y1)), mask, 1 - mask)

    def _warp(self, face: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = self.box
        return cv2.warpAffine(face, self.inverse, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)

    def calibrate(self, face: np.ndarray) -> None:
        """Fix the colour transfer from a rendered face [S, S, 3] (a resting mouth): per
        channel, its mean and spread inside the mask are matched to the photo's."""
        x0, y0, x1, y1 = self.box
        inside = self.mask > 0.5
        rendered = self._warp(face)[inside].astype(np.float64)  # [N, 3]
        photo = self.photo[y0:y1, x0:x1][inside].astype(np.float64)
        gain = np.clip(photo.std(0) / np.maximum(rendered.std(0), 1.0), *GAIN_RANGE)
        levels = np.arange(256, dtype=np.float64)[:, None]
        table = (levels - rendered.mean(0)) * gain + photo.mean(0)  # [256, 3]
        self.lut = np.clip(np.round(table), 0, 255).astype(np.uint8)[:, None, :]

    def __call__(self, face: np.ndarray) -> np.ndarray:
        """Rendered aligned face [S, S, 3] uint8 -> the frame [H, W, 3] uint8."""
        if self.lut is None:
            self.calibrate(face)
        if self.detail is None or self.detail.blurred.shape[0] != face.shape[0]:
            self.detail = PhotoDetail.of(self.photo, self.inverse, self.box, self.mask,
                                         face.shape[0])
        x0, y0, x1, y1 = self.box
        frame = self.photo.copy()
        coloured = cv2.LUT(face, self.lut)
        blended = cv2.blendLinear(self._warp(coloured), self.photo[y0:y1, x0:x1], self.mask,
                                  self.keep)
        weight = self._warp(self.detail.weight(coloured))  # [h, w]
        detail = cv2.multiply(self.detail.layer, cv2.cvtColor(weight, cv2.COLOR_GRAY2RGB))
        frame[y0:y1, x0:x1] = cv2.add(blended, detail, dtype=cv2.CV_8U)
        return frame


@dataclass(frozen=True)
class PhotoDetail:
    layer: np.ndarray
    """[y1 - y0, x1 - x0, 3] float32: the photo over the box less its blur (signed), times
    the paste-back's mask."""
    blurred: np.ndarray
    """[S, S, 3] uint8: the blurred photo in the rendered face's pixels."""

    @classmethod
    def of(cls, photo: np.ndarray, inverse: np.ndarray, box: tuple[int, int, int, int],
           mask: np.ndarray, size: int) -> PhotoDetail:
        """photo [H, W, 3] uint8; ``inverse`` [2, 3] maps the rendered face [size, size] to
        the pixels of ``box``, ``mask`` [y1 - y0, x1 - x0] is the rendered face's weight."""
        x0, y0, x1, y1 = box
        region = photo[y0:y1, x0:x1].astype(np.float32)
        forward = cv2.invertAffineTransform(inverse)
        scale = 1 / Alignment(forward, size).scale  # photo px per face px
        blurred = cv2.GaussianBlur(region, (0, 0), max(DETAIL_SIGMA * scale, 0.5))
        small = cv2.warpAffine(blurred, forward, (size, size), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
        return cls((region - blurred) * mask[:, :, None],
                   np.clip(np.round(small), 0, 255).astype(np.uint8))

    def weight(self, face: np.ndarray) -> np.ndarray:
        """Colour-matched rendered face [S, S, 3] uint8 -> [S, S] float32 in [0, 1]: how much
        of the photo's detail belongs there."""
        red, green, blue = cv2.split(cv2.absdiff(face, self.blurred))
        gap = cv2.GaussianBlur(cv2.max(cv2.max(red, green), blue), (0, 0), 1.0)
        return cv2.max(1 - gap.astype(np.float32) / DETAIL_TOLERANCE, 0.0)
