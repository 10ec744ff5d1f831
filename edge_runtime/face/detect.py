"""Face detection and square face crops with OpenCV's bundled Haar cascade (torch-free).

Used on the host (LRS3 preprocessing) and on the device (the reference photo), so both crop
faces the same way.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

CASCADE = "haarcascade_frontalface_alt2.xml"
"""alt2 found the most faces of the cascades OpenCV ships, on the synthetic faces too."""


@functools.lru_cache(maxsize=1)
def _detector() -> cv2.CascadeClassifier:
    detector = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE)
    if detector.empty():
        raise RuntimeError(f"OpenCV has no {CASCADE}; install opencv-python-headless < 5")
    return detector


def detect_face(image_rgb: np.ndarray, min_fraction: float = 0.2) -> np.ndarray | None:
    """Largest face in an RGB image -> (x, y, w, h) pixels, or None.

    min_fraction: smallest face side as a fraction of the shorter image side.
    """
    grey = cv2.equalizeHist(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY))
    side = max(16, int(min(grey.shape) * min_fraction))
    found = _detector().detectMultiScale(grey, scaleFactor=1.05, minNeighbors=3,
                                         minSize=(side, side))
    if len(found) == 0:
        return None
    return np.array(max(found, key=lambda b: b[2] * b[3]), dtype=np.float64)


def square_box(face: np.ndarray, margin: float) -> np.ndarray:
    """(x, y, w, h) -> square (centre x, centre y, side) grown by ``margin`` of the face size."""
    x, y, w, h = face
    return np.array([x + w / 2, y + h / 2, max(w, h) * (1 + margin)])


def centre_box(image: np.ndarray) -> np.ndarray:
    """The largest centred square (centre x, centre y, side) of an image."""
    h, w = image.shape[:2]
    return np.array([w / 2, h / 2, min(h, w)], dtype=np.float64)


def crop(image: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """Square crop around box (cx, cy, side), edges replicated, area-resized to size x size."""
    cx, cy, side = box
    side_px = max(1, int(round(side)))
    shift = np.array([[1.0, 0.0, side_px / 2 - cx], [0.0, 1.0, side_px / 2 - cy]])
    patch = cv2.warpAffine(image, shift, (side_px, side_px), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA if side_px > size
                      else cv2.INTER_LINEAR)


def framing_margin(frames: list[np.ndarray]) -> float | None:
    """The crop margin (as square_box takes it) that frames these already-cropped face
    images: median over the frames where a face is found of side / face side - 1. A model
    trained on such frames should see reference photos cropped the same way."""
    margins = []
    for frame in frames:
        face = detect_face(frame)
        if face is not None:
            margins.append(min(frame.shape[:2]) / max(face[2], face[3]) - 1)
    return float(np.median(margins)) if margins else None
