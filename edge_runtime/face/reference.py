"""The reference photo: read it, find the face, align it for the model and prepare the
paste-back of rendered faces into the photo at its own framing and size.

With a bundle that has face graphs: MediaPipe landmarks, the similarity alignment to the
bundle's template and paste-back. Without them (older bundles): OpenCV's Haar cascade, a
square crop with the bundle's face margin, and frames of the model's own size.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.bundle import Bundle, check_io
from edge_runtime.face.align import Alignment, align
from edge_runtime.face.detect import centre_box, crop, detect_face, square_box
from edge_runtime.face.landmarks import FACE_OVAL, NOSE_TIP, Face, FaceLandmarker
from edge_runtime.face.paste import PasteBack

log = logging.getLogger(__name__)

MAX_OUTPUT = 720
"""Default cap of the output frames' long side (pixels)."""
WORK_SIDE = 2048
"""Photos are shrunk to this long side before the face is searched and cropped (bounded
time and memory; far more than a 128 px crop needs)."""
PROFILE = 0.6
"""A face whose nose sits this far towards one cheek (the yaw measure of ``turn``) is in
profile: one cheek and half the mouth are hidden from the model."""


class PhotoError(ValueError):
    """A reference photo that cannot be used."""


@dataclass
class Reference:
    crop: np.ndarray
    """[res, res, 3] uint8 RGB: the aligned face the reference graph sees."""
    paste: PasteBack | None
    """Composes rendered faces into the photo; None when frames are the model's crop."""


def open_landmarker(bundle: Bundle, root: Path, threads: int = 2) -> FaceLandmarker:
    """The bundle's face graphs, their I/O checked against what the bundle declares."""
    face = bundle.face
    landmarker = FaceLandmarker(root / face.detector.file, root / face.landmarks.file,
                                threads)
    for name, session in (("detector", landmarker.detector), ("landmarks", landmarker.mesh)):
        check_io(getattr(face, name), session.inputs, session.outputs, f"{root}: face/{name}")
    return landmarker


REDUCTIONS = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
              (2, cv2.IMREAD_REDUCED_COLOR_2))
"""The scales at which libjpeg decodes directly (it skips the DCT coefficients it does not
need), largest first."""
MAX_DECODED_PIXELS = 40_000_000
"""Largest image decoded at full size (120 MB as RGB): a JPEG above WORK_SIDE is decoded at
a reduced scale instead, other formats (PNG, WebP, ...) this large are refused."""


def _header(path: str | Path) -> tuple[int, int, str]:
    """(width, height, format) from the file's header alone (Pillow reads no pixels)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return image.width, image.height, image.format or ""
    except FileNotFoundError:
        raise PhotoError(f"{path}: reference image not found") from None
    except Image.DecompressionBombError:
        raise PhotoError(f"{path}: the image has more than {2 * Image.MAX_IMAGE_PIXELS} "
                         "pixels; shrink it") from None
    except (OSError, ValueError):
        raise PhotoError(f"{path}: cannot read the reference image (not an image)") from None


def read_photo(path: str | Path) -> np.ndarray:
    """RGB uint8 [H, W, 3], never much larger than WORK_SIDE when the file is larger: a JPEG
    is decoded at 1/2, 1/4 or 1/8 of its size (the largest reduction that keeps the long
    side at WORK_SIDE or more), so the full image is never held in memory. PhotoError when
    the file is missing, not an image, or too large to decode within MAX_DECODED_PIXELS."""
    width, height, kind = _header(path)
    flag = cv2.IMREAD_COLOR
    if kind == "JPEG":
        flag = next((f for n, f in REDUCTIONS if max(width, height) // n >= WORK_SIDE), flag)
    elif width * height > MAX_DECODED_PIXELS:
        raise PhotoError(f"{path}: {width}x{height} {kind} is more than "
                         f"{MAX_DECODED_PIXELS // 1_000_000} megapixels; shrink it or save "
                         "it as JPEG (decoded at a reduced size)")
    image = cv2.imread(str(path), flag)
    if image is None:
        raise PhotoError(f"{path}: cannot read the reference image (not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=image)  # in place: no second copy


def shrink(image: np.ndarray, long_side: int) -> np.ndarray:
    """The image with its long side at most ``long_side`` (area-averaged)."""
    h, w = image.shape[:2]
    scale = long_side / max(h, w)
    if scale >= 1:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def turn(face: Face) -> float:
    """Yaw measure in [-1, 1]: where the nose tip sits between the two sides of the face
    along the eye line (0 frontal, +-1 the nose on a cheek's contour: full profile)."""
    points = face.landmarks[:, :2]
    right, left = face.eye_centres()
    axis = (left - right) / np.linalg.norm(left - right)
    along = (points[list(FACE_OVAL)] - points[NOSE_TIP]) @ axis
    near, far = -along.min(), along.max()  # the nose to each side of the face
    return float((far - near) / max(far + near, 1e-6))


def choose(faces: list[Face], index: int | None, path) -> Face:
    """The face ``index`` (1 = leftmost), else the largest; several faces are logged."""
    by_x = sorted(faces, key=lambda f: f.box[0])
    if index is not None:
        if not 1 <= index <= len(faces):
            raise PhotoError(f"{path}: --face {index}: the photo has {len(faces)} face"
                             f"{'s' if len(faces) > 1 else ''} (numbered 1.. from the left)")
        return by_x[index - 1]
    if len(faces) > 1:
        largest = by_x.index(faces[0]) + 1
        log.warning("%s: %d faces; using face %d from the left, the largest (--face N "
                    "chooses another)", path, len(faces), largest)
    return faces[0]


def _check_pose(face: Face, image: np.ndarray, path) -> None:
    yaw = turn(face)
    if abs(yaw) >= PROFILE:
        log.warning("%s: the face is turned towards profile (yaw measure %.2f); the model "
                    "expects a face seen from the front, so the mouth will look wrong", path,
                    yaw)
    h, w = image.shape[:2]
    oval = face.landmarks[list(FACE_OVAL), :2]
    outside = (oval[:, 0] < 0) | (oval[:, 0] > w - 1) | (oval[:, 1] < 0) | (oval[:, 1] > h - 1)
    if outside.any():
        log.warning("%s: the face is cut by the photo's border; the crop repeats the edge "
                    "pixels there", path)


def _on_output(alignment: Alignment, landmarks: np.ndarray, factor: float
               ) -> tuple[Alignment, np.ndarray]:
    """Alignment and landmarks of the work image moved to an image ``factor`` times its
    size (pixel centres kept: p_out = (p + 0.5) * factor - 0.5)."""
    back = np.array([[1 / factor, 0, 0.5 / factor - 0.5], [0, 1 / factor, 0.5 / factor - 0.5],
                     [0, 0, 1]])
    return (Alignment(alignment.matrix @ back, alignment.size),
            (landmarks + 0.5) * factor - 0.5)


def _haar_reference(photo: np.ndarray, bundle: Bundle, path) -> Reference:
    face = detect_face(photo)
    if face is None:
        log.warning("%s: no face found; using a centre crop", path)
        box = centre_box(photo)
    else:
        box = square_box(face, bundle.face_margin)
    log.info("bundle %r has no face graphs: Haar cascade crop, frames of %d px", bundle.name,
             bundle.resolution)
    return Reference(crop(photo, box, bundle.resolution), None)


def prepare_reference(path: str | Path, bundle: Bundle, root: Path, face_index: int | None
                      = None, output_size: int = MAX_OUTPUT, paste_back: bool = True,
                      threads: int = 2) -> Reference:
    """Photo of any size and framing -> the aligned crop for the reference graph and, when
    ``paste_back``, the composer of frames at the photo's framing (long side capped at
    ``output_size``). PhotoError (one line) for a photo without a usable face."""
    photo = read_photo(path)
    if bundle.face is None:
        return _haar_reference(photo, bundle, path)
    work = shrink(photo, WORK_SIDE)
    faces = open_landmarker(bundle, root, threads).faces(work)
    if not faces:
        raise PhotoError(f"{path}: no face found (MediaPipe face detection); use a photo "
                         "with a face seen from the front")
    face = choose(faces, face_index, path)
    _check_pose(face, work, path)
    alignment = align(face, bundle.face.template, bundle.resolution)
    face_crop = alignment.crop(work)
    if not paste_back:
        return Reference(face_crop, None)
    output = shrink(photo, output_size)
    factor = max(output.shape[:2]) / max(work.shape[:2])
    out_alignment, landmarks = _on_output(alignment, face.landmarks[:, :2], factor)
    eye_distance = factor * float(np.linalg.norm(np.subtract(*face.eye_centres())))
    return Reference(face_crop, PasteBack.build(output, out_alignment, landmarks,
                                                eye_distance))
