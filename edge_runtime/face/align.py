"""Alignment: a similarity transform (rotation, uniform scale, shift) that takes a face's eye
centres and mouth to canonical positions, as FFHQ- and LRS-style pipelines align faces, so a
photo of any size, tilt or framing lands where the model's training frames put the face.

One module for the device (the reference photo) and every data path that prepares training
frames; the canonical positions a bundle's model expects are measured on its training frames
at export and stored in the bundle (``face.template``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_runtime.face.landmarks import MOUTH_CORNERS, Face

POINTS = ("right_eye", "left_eye", "mouth")
"""The aligned points, in order: the subject's right and left eye centre, and the midpoint of
the mouth corners (it moves less than the lips' centre when the mouth opens)."""

CANONICAL = ((0.384, 0.4153), (0.6117, 0.4132), (0.4991, 0.6464))
"""Where the synthetic talking faces put POINTS (fractions of the frame side): the template
``tsd bundle-face --bundle bundles/demo --data data/demo`` measures on the demo dataset's
training frames. Data paths that crop real faces align them to it, so every training set
frames faces alike."""
MOUTH_HALF = 0.83
"""Half the side of the square mouth box, times the template's eye distance: the mean of
the synthetic faces' mouth boxes (training.data.synth.mouth_box) over the demo dataset
(0.83, standard deviation 0.05 across clips)."""


def mouth_box(points: np.ndarray) -> np.ndarray:
    """The mouth box [4] (x0, y0, x1, y1) of POINTS [3, 2] (right eye, left eye, mouth):
    a square centred on the mouth, half side MOUTH_HALF x the eye distance."""
    right, left, mouth = np.asarray(points, np.float64)
    half = MOUTH_HALF * float(np.linalg.norm(left - right))
    return np.array([*(mouth - half), *(mouth + half)], np.float32)


def template_mouth_box(template: tuple[tuple[float, float], ...], size: int) -> np.ndarray:
    """The mouth box [4] (x0, y0, x1, y1 pixels) of a size x size crop aligned to
    ``template``: centred on its mouth point."""
    return mouth_box(np.asarray(template, np.float64) * size)


@dataclass(frozen=True)
class Alignment:
    """Photo pixels -> a size x size aligned crop."""

    matrix: np.ndarray
    """[2, 3] affine (a similarity) from photo pixels to crop pixels."""
    size: int

    @property
    def inverse(self) -> np.ndarray:
        """[2, 3] crop pixels -> photo pixels."""
        return cv2.invertAffineTransform(self.matrix)

    @property
    def scale(self) -> float:
        """Crop pixels per photo pixel."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The aligned crop [size, size, C]; area outside the photo repeats its edge."""
        flags = cv2.INTER_AREA if self.scale < 1 else cv2.INTER_LINEAR
        if self.scale < 0.5:  # warpAffine does not average: pre-shrink against aliasing
            return self._shrunk(image).crop(cv2.resize(image, None, fx=0.5, fy=0.5,
                                                       interpolation=cv2.INTER_AREA))
        return cv2.warpAffine(image, self.matrix, (self.size, self.size), flags=flags,
                              borderMode=cv2.BORDER_REPLICATE)

    def _shrunk(self, image: np.ndarray) -> Alignment:
        """The same alignment for the image at half size (pixel centres kept)."""
        half = np.array([[2.0, 0, 0.5], [0, 2.0, 0.5], [0, 0, 1]])
        return Alignment(self.matrix @ half, self.size)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """[N, 2] photo pixels -> crop pixels."""
        return points @ self.matrix[:, :2].T + self.matrix[:, 2]


def similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The least-squares similarity [2, 3] taking points ``source`` [N, 2] onto ``target``
    [N, 2] (N >= 2; no reflection). Closed form in complex numbers, as Umeyama's; written
    here because OpenCV's estimateAffinePartial2D is a robust (RANSAC/LMedS) estimator whose
    answer for three exact points need not be the least-squares one."""
    src = source[:, 0] + 1j * source[:, 1]
    dst = target[:, 0] + 1j * target[:, 1]
    src_mean, dst_mean = src.mean(), dst.mean()
    centred = src - src_mean
    a = np.vdot(centred, dst - dst_mean) / np.vdot(centred, centred).real
    b = dst_mean - a * src_mean
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])


def face_points(face: Face) -> np.ndarray:
    """[3, 2] POINTS of a landmarked face, in photo pixels."""
    mouth = face.landmarks[list(MOUTH_CORNERS), :2].mean(0)
    return np.vstack([face.eye_centres(), mouth])


def align(face: Face, template: tuple[tuple[float, float], ...], size: int) -> Alignment:
    """The alignment taking ``face`` to ``template`` (POINTS as fractions of the crop side)
    in a size x size crop."""
    target = np.asarray(template, np.float64) * size
    return Alignment(similarity(face_points(face), target), size)
