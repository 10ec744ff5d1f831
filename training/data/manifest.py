"""The manifest: JSON lines, one clip per row, shared by synthetic data and LRS3.

Row fields (paths relative to the manifest's folder):

- ``id`` (str), ``speaker`` (str: identity / talk), ``split`` (train | val | test)
- ``fps`` (int), ``frame_count`` (int), ``size`` (int: frame width = height)
- ``frames``: folder of ``000000.png``... RGB frames
- ``audio``: 16 kHz mono 16-bit wav, ``frame_count / fps`` seconds long (within one frame)
- ``visemes``: ``.npy`` int16 [frame_count] viseme ids (edge_runtime.visemes.vocabulary)
- optional ``mouth_boxes``: ``.npy`` float32 [frame_count, 4] x0, y0, x1, y1 in pixels
- optional ``flow``: ``.npy`` float16 [frame_count - 1, size/s, size/s, 2] with
  ``flow_stride`` s; flow from frame t to t+1 in full-resolution pixels
- optional ``mouth_params``: ``.npy`` float32 [frame_count, len(MOUTH_PARAMS)]
- optional ``head_pose``: ``.npy`` float32 [frame_count, 4] tx, ty (pixels), rotation (deg), scale
- optional ``alignment``: JSON with the words and phones and their times
- optional ``held_frames``: folder of frame_count PNG frames like ``frames``, with the head
  pose, gaze, blink and light held at the last frame's (only the mouth moves): what a model
  given the last frame as its reference and the audio can reproduce (synthetic sets), with
  optional ``held_mouth_boxes`` and ``held_flow`` shaped like ``mouth_boxes`` and ``flow``
- optional ``text``: the transcript
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.visemes.vocabulary import NUM_VISEMES
from training.atomic import atomic_path
from training.data.media import SAMPLE_RATE, MediaError, count_frames, wav_info
from training.errors import UserError

SPLITS = ("train", "val", "test")
REAL_TEXTURE, SYNTHETIC_TEXTURE = "real", "synthetic"
"""ClipRecord.texture: faces from real photos and video frames (training.data.real), or
procedurally drawn ones (training.data.synth)."""
TEXTURES = (REAL_TEXTURE, SYNTHETIC_TEXTURE)
MANIFEST_NAME = "manifest.jsonl"
FLOW_FIELDS = ("flow", "held_flow")
"""Optical-flow fields: both need flow_stride and have the same shape."""
PATH_FIELDS = ("frames", "audio", "visemes", "mouth_boxes", "flow", "mouth_params", "head_pose",
               "alignment", "held_frames", "held_mouth_boxes", "held_flow")
"""Fields that name a file or folder, relative to the manifest's folder."""


class ManifestError(UserError):
    """A manifest row that cannot be used; the message names the row and the field."""


@dataclass(frozen=True)
class ClipRecord:
    id: str
    speaker: str
    split: str
    fps: int
    frame_count: int
    size: int
    frames: str
    audio: str
    visemes: str
    mouth_boxes: str | None = None
    flow: str | None = None
    flow_stride: int | None = None
    mouth_params: str | None = None
    head_pose: str | None = None
    alignment: str | None = None
    text: str | None = None
    held_frames: str | None = None
    held_mouth_boxes: str | None = None
    held_flow: str | None = None
    texture: str | None = None
    """What the faces are drawn from: REAL_TEXTURE (real photos and video frames animated by
    the mouth model) or SYNTHETIC_TEXTURE; None in older manifests and for filmed clips."""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


_REQUIRED = {f.name for f in dataclasses.fields(ClipRecord)
             if f.default is dataclasses.MISSING}
_TYPES = {"fps": int, "frame_count": int, "size": int, "flow_stride": int}


@dataclass(frozen=True)
class Manifest:
    path: Path
    clips: tuple[ClipRecord, ...]

    @property
    def root(self) -> Path:
        return self.path.parent

    def resolve(self, relative: str) -> Path:
        return self.root / relative

    def split(self, name: str) -> list[ClipRecord]:
        return [c for c in self.clips if c.split == name]


def write_manifest(path: str | Path, clips: list[ClipRecord]) -> Path:
    """Write rows sorted by id, atomically."""
    path = Path(path)
    lines = [json.dumps(c.to_dict(), sort_keys=True) for c in sorted(clips, key=lambda c: c.id)]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path


def manifest_path(data: str | Path) -> Path:
    """A manifest file, or a dataset folder holding ``manifest.jsonl``."""
    data = Path(data)
    return data / MANIFEST_NAME if data.is_dir() else data


def read_manifest(data: str | Path, check_files: bool = True,
                  expected_fps: int | None = None) -> Manifest:
    """Parse and validate every row; the first problem raises ManifestError."""
    path = manifest_path(data)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read manifest ({exc.strerror})") from None
    clips, seen = [], set()
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{line_no}"
        clip = _parse_row(line, where)
        where = f"{where} (clip {clip.id})"
        if clip.id in seen:
            raise ManifestError(f"{where}: field 'id': duplicate clip id")
        seen.add(clip.id)
        if expected_fps is not None and clip.fps != expected_fps:
            raise ManifestError(f"{where}: field 'fps': expected {expected_fps}, got {clip.fps}")
        if check_files:
            _check_files(clip, path.parent, where)
        clips.append(clip)
    if not clips:
        raise ManifestError(f"{path}: manifest has no clips")
    return Manifest(path, tuple(clips))


def _parse_row(line: str, where: str) -> ClipRecord:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{where}: invalid JSON ({exc.msg})") from None
    if not isinstance(row, dict):
        raise ManifestError(f"{where}: a row must be a JSON object")
    known = {f.name for f in dataclasses.fields(ClipRecord)}
    for key in sorted(set(row) - known):
        raise ManifestError(f"{where}: field {key!r}: unknown field")
    for key in sorted(_REQUIRED - set(row)):
        raise ManifestError(f"{where}: field {key!r}: missing")
    for key, value in row.items():
        expected = _TYPES.get(key, str)
        if value is not None and (not isinstance(value, expected) or isinstance(value, bool)):
            raise ManifestError(f"{where}: field {key!r}: expected {expected.__name__}, "
                                f"got {value!r}")
    clip = ClipRecord(**row)
    if clip.split not in SPLITS:
        raise ManifestError(f"{where}: field 'split': must be one of {SPLITS}, got {clip.split!r}")
    if clip.texture not in (None, *TEXTURES):
        raise ManifestError(f"{where}: field 'texture': must be one of {TEXTURES}, "
                            f"got {clip.texture!r}")
    for key in ("fps", "frame_count", "size"):
        if getattr(clip, key) <= 0:
            raise ManifestError(f"{where}: field {key!r}: must be positive")
    for field in FLOW_FIELDS:
        if getattr(clip, field) is not None and clip.flow_stride is None:
            raise ManifestError(f"{where}: field 'flow_stride': required when {field!r} is set")
    return clip


def _npy_shape(path: Path, where: str, field: str) -> tuple[tuple[int, ...], np.ndarray]:
    if not path.is_file():
        raise ManifestError(f"{where}: field {field!r}: missing file {path}")
    try:
        array = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as exc:
        raise ManifestError(f"{where}: field {field!r}: unreadable .npy {path} ({exc})") from None
    return array.shape, array


def _expect_shape(shape: tuple[int, ...], expected: tuple[int, ...], where: str,
                  field: str) -> None:
    if shape != expected:
        raise ManifestError(f"{where}: field {field!r}: shape {shape} does not match "
                            f"expected {expected} (frame_count and size of the row)")


def _check_frame_folder(clip: ClipRecord, root: Path, where: str, field: str) -> None:
    folder = root / getattr(clip, field)
    if not folder.is_dir():
        raise ManifestError(f"{where}: field {field!r}: missing folder {folder}")
    n_frames = count_frames(folder)
    if n_frames != clip.frame_count:
        raise ManifestError(f"{where}: field {field!r}: {n_frames} frames on disk, "
                            f"frame_count says {clip.frame_count}")


def _check_files(clip: ClipRecord, root: Path, where: str) -> None:
    _check_frame_folder(clip, root, where, "frames")
    if clip.held_frames is not None:
        _check_frame_folder(clip, root, where, "held_frames")
    _check_audio(clip, root / clip.audio, where)
    shape, visemes = _npy_shape(root / clip.visemes, where, "visemes")
    _expect_shape(shape, (clip.frame_count,), where, "visemes")
    if visemes.size and (int(visemes.min()) < 0 or int(visemes.max()) >= NUM_VISEMES):
        raise ManifestError(f"{where}: field 'visemes': ids outside 0..{NUM_VISEMES - 1}")
    optional = {
        "mouth_boxes": (clip.frame_count, 4),
        "held_mouth_boxes": (clip.frame_count, 4),
        "head_pose": (clip.frame_count, 4),
    }
    for field in FLOW_FIELDS:
        if getattr(clip, field) is not None:
            side = clip.size // clip.flow_stride
            optional[field] = (clip.frame_count - 1, side, side, 2)
    for field, expected in optional.items():
        relative = getattr(clip, field)
        if relative is not None:
            _expect_shape(_npy_shape(root / relative, where, field)[0], expected, where, field)
    if clip.mouth_params is not None:
        shape = _npy_shape(root / clip.mouth_params, where, "mouth_params")[0]
        if len(shape) != 2 or shape[0] != clip.frame_count:
            raise ManifestError(f"{where}: field 'mouth_params': shape {shape} does not have "
                                f"frame_count={clip.frame_count} rows")
    if clip.alignment is not None and not (root / clip.alignment).is_file():
        raise ManifestError(f"{where}: field 'alignment': missing file {root / clip.alignment}")


def _check_audio(clip: ClipRecord, path: Path, where: str) -> None:
    if not path.is_file():
        raise ManifestError(f"{where}: field 'audio': missing file {path}")
    try:
        info = wav_info(path)
    except MediaError as exc:
        raise ManifestError(f"{where}: field 'audio': {exc}") from None
    if info.rate != SAMPLE_RATE or info.channels != 1 or info.sample_width != 2:
        raise ManifestError(f"{where}: field 'audio': expected 16 kHz mono 16-bit, got "
                            f"{info.rate} Hz, {info.channels} channel(s), "
                            f"{8 * info.sample_width}-bit")
    audio_frames = info.samples * clip.fps / SAMPLE_RATE
    if abs(audio_frames - clip.frame_count) > 1.0:
        raise ManifestError(f"{where}: field 'audio': {info.samples / SAMPLE_RATE:.3f} s of audio "
                            f"is {audio_frames:.1f} frames at {clip.fps} fps, "
                            f"frame_count says {clip.frame_count}")
