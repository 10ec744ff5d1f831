"""Faces and their 468 landmarks with MediaPipe's published graphs, run by LiteRT (torch-free,
no mediapipe package): ``face_detection_short_range`` finds faces (boxes and six keypoints)
and ``face_landmark`` places the 468-point mesh in a rotated crop around each.

The pre- and post-processing follows MediaPipe's own graphs for these models (letterboxed
128x128 input in [-1, 1], 896 SSD anchors, weighted non-maximum suppression; a square crop
1.5x the face box, rotated so the eyes are level, 192x192 in [0, 1]); it is written here
because the runtime ships only the .tflite files, not MediaPipe's calculators.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.backends import PlainTFLiteSession

DETECTOR_SIZE = 128
LANDMARK_SIZE = 192
MIN_SCORE = 0.5
"""Detections and landmark sets scoring below this are not faces (MediaPipe's default)."""
NMS_IOU = 0.3
ROI_SCALE = 1.5
"""The landmark crop is this much larger than the face box (MediaPipe's face_landmark ROI)."""
KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear")
"""The detector's six keypoints, in its output order (the subject's right and left)."""

RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
MOUTH_CORNERS = (61, 291)
"""The subject's right and left mouth corner (outer lip)."""
UPPER_LIP_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LOWER_LIP_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
UPPER_LIP_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_LIP_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
"""The four lip contours, each from the subject's right corner (image left) to the left one;
the k-th points of the upper and lower contours face each other across the mouth."""
NOSE_TIP = 1
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378,
             400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54,
             103, 67, 109)
"""Mesh indices around the face, clockwise in the image from the top of the forehead."""
LOWER_FACE = (93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397,
              288, 361, 323, 327, 2, 98)
"""The jaw, mouth and chin region: the face oval from cheek to cheek around the chin, closed
across the base of the nose (alae and subnasale)."""


@dataclass(frozen=True)
class Face:
    """One face in image pixels."""

    box: np.ndarray
    """[4] x0, y0, x1, y1 of the detector's box."""
    score: float
    keypoints: np.ndarray
    """[6, 2] the detector's KEYPOINTS."""
    landmarks: np.ndarray | None = None
    """[468, 3] x, y (pixels) and relative depth, once landmarked."""

    @property
    def area(self) -> float:
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))

    def eye_centres(self) -> np.ndarray:
        """[2, 2] the subject's right then left eye centre (mean of each eye's contour)."""
        points = self.landmarks[:, :2]
        return np.stack([points[list(RIGHT_EYE)].mean(0), points[list(LEFT_EYE)].mean(0)])


@functools.lru_cache(maxsize=1)
def anchors() -> np.ndarray:
    """[896, 2] anchor centres (fractions of the input) of the short-range detector: a 16x16
    grid with 2 anchors per cell (stride 8) and an 8x8 grid with 6 (three layers at stride
    16), every anchor 1x1 (fixed size)."""
    centres = []
    for grid, per_cell in ((16, 2), (8, 6)):
        ys, xs = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
        cells = np.stack([(xs.ravel() + 0.5) / grid, (ys.ravel() + 0.5) / grid], axis=1)
        centres.append(np.repeat(cells, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    own = (box[2] - box[0]) * (box[3] - box[1])
    return inter / np.maximum(own + areas - inter, 1e-9)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray
                 ) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """MediaPipe's weighted non-maximum suppression: each cluster of boxes overlapping the
    best remaining one by more than NMS_IOU becomes their score-weighted mean.
    boxes [N, 4], keypoints [N, 6, 2], scores [N] -> [(box, score, keypoints)]."""
    order = np.argsort(-scores)
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    remaining = np.ones(len(scores), bool)
    found = []
    for i in range(len(scores)):
        if not remaining[i]:
            continue
        cluster = remaining & (_iou(boxes[i], boxes) > NMS_IOU)
        cluster[i] = True
        weights = scores[cluster] / scores[cluster].sum()
        found.append(((boxes[cluster] * weights[:, None]).sum(0), float(scores[i]),
                      (keypoints[cluster] * weights[:, None, None]).sum(0)))
        remaining &= ~cluster
    return found


def _letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, np.ndarray]:
    """RGB image -> (square [size, size, 3] with the image scaled to fit and centred,
    scale, offset [2]): image pixel p sits at p * scale + offset."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    offset = np.array([(size - w * scale) / 2, (size - h * scale) / 2])
    matrix = np.array([[scale, 0, offset[0]], [0, scale, offset[1]]])
    square = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_AREA
                            if scale < 1 else cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    return square, scale, offset


def roi_transform(centre: np.ndarray, side: float, angle: float, size: int) -> np.ndarray:
    """[2, 3] affine taking image pixels to a size x size crop of the square of ``side``
    around ``centre``, turned by ``angle`` (radians; positive turns the image's content
    clockwise in the crop, undoing a face tilted anticlockwise)."""
    cos, sin = np.cos(angle), np.sin(angle)
    scale = size / side
    rotate = np.array([[cos, sin], [-sin, cos]]) * scale
    return np.hstack([rotate, (size / 2 - rotate @ centre)[:, None]])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip(x, -80, 80)))


class FaceLandmarker:
    """Faces in an RGB photo, largest first, each with its 468 landmarks."""

    def __init__(self, detector: Path, landmarks: Path, threads: int = 2):
        self.detector = PlainTFLiteSession(detector, threads)
        self.mesh = PlainTFLiteSession(landmarks, threads)

    @staticmethod
    def _run(session: PlainTFLiteSession, x: np.ndarray) -> list[np.ndarray]:
        return session.run({session.inputs[0].name: x})

    def _candidates(self, image: np.ndarray, origin: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One detector pass over ``image`` (a part of the photo at ``origin`` [2]) ->
        boxes [N, 4], keypoints [N, 6, 2] (photo pixels) and scores [N] >= MIN_SCORE."""
        square, scale, offset = _letterbox(image, DETECTOR_SIZE)
        x = (square.astype(np.float32) / 127.5 - 1.0)[None]
        regressors, classificators = self._run(self.detector, x)
        scores = _sigmoid(classificators[0, :, 0])
        keep = scores >= MIN_SCORE
        centre = anchors()[keep]
        raw = regressors[0][keep] / DETECTOR_SIZE  # [N, 16]: fractions of the input
        middle = raw[:, :2] + centre
        half = raw[:, 2:4] / 2
        boxes = np.concatenate([middle - half, middle + half], axis=1) * DETECTOR_SIZE
        points = (raw[:, 4:16].reshape(-1, 6, 2) + centre[:, None]) * DETECTOR_SIZE
        boxes = (boxes.reshape(-1, 2, 2) - offset) / scale + origin
        return boxes.reshape(-1, 4), (points - offset) / scale + origin, scores[keep]

    def detect(self, image: np.ndarray) -> list[Face]:
        """RGB uint8 [H, W, 3] -> faces (box, score, keypoints), largest first. The whole
        photo, then overlapping square tiles of a half and a quarter of its long side: the
        short-range detector sees 128x128, where a face of a tenth of a big photo is lost."""
        h, w = image.shape[:2]
        found = [self._candidates(image, np.zeros(2))]
        for side in {max(h, w) // 2, max(h, w) // 4}:
            if side < 2 * DETECTOR_SIZE:
                continue
            step = side // 2
            for y in range(0, max(h - side, 0) + step, step):
                for x in range(0, max(w - side, 0) + step, step):
                    found.append(self._candidates(image[y:y + side, x:x + side],
                                                  np.array([x, y], np.float64)))
        boxes, points, scores = (np.concatenate(part) for part in zip(*found))
        faces = [Face(box, score, keypoints)
                 for box, score, keypoints in weighted_nms(boxes, points, scores)]
        return sorted(faces, key=lambda f: -f.area)

    def _mesh(self, image: np.ndarray, centre: np.ndarray, side: float, angle: float
              ) -> tuple[np.ndarray, float]:
        """Landmarks [468, 3] (image pixels) and presence score in one rotated crop."""
        matrix = roi_transform(centre, side, angle, LANDMARK_SIZE)
        crop = cv2.warpAffine(image, matrix, (LANDMARK_SIZE, LANDMARK_SIZE),
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mesh, presence = self._run(self.mesh, (crop.astype(np.float32) / 255.0)[None])
        points = mesh.reshape(-1, 3).astype(np.float64)
        back = cv2.invertAffineTransform(matrix)
        xy = points[:, :2] @ back[:, :2].T + back[:, 2]
        depth = points[:, 2:] * side / LANDMARK_SIZE
        return np.hstack([xy, depth]), float(_sigmoid(presence.ravel()[0]))

    def landmark(self, image: np.ndarray, face: Face) -> Face | None:
        """The face with its mesh, or None when the landmark graph says it is no face.
        Two passes, as MediaPipe tracks: the detector's box and eyes give the first crop,
        the first mesh's extent and eye line a tighter second one."""
        right, left = face.keypoints[0], face.keypoints[1]
        centre = (face.box[:2] + face.box[2:]) / 2
        side = ROI_SCALE * max(face.box[2] - face.box[0], face.box[3] - face.box[1])
        points, presence = self._mesh(image, centre, side, _eye_angle(right, left))
        if presence < MIN_SCORE:
            return None
        xy = points[:, :2]
        low, high = xy.min(0), xy.max(0)
        eyes = Face(face.box, face.score, face.keypoints, points).eye_centres()
        points, presence = self._mesh(image, (low + high) / 2, ROI_SCALE * (high - low).max(),
                                      _eye_angle(*eyes))
        if presence < MIN_SCORE:
            return None
        return Face(face.box, face.score, face.keypoints, points)

    def faces(self, image: np.ndarray) -> list[Face]:
        """Every face with its landmarks, largest first."""
        found = (self.landmark(image, face) for face in self.detect(image))
        return [face for face in found if face is not None]


def _eye_angle(right: np.ndarray, left: np.ndarray) -> float:
    """The angle (radians) of the line from the subject's right eye (image left) to the left
    eye; 0 when the eyes are level."""
    dx, dy = left - right
    return float(np.arctan2(dy, dx))
