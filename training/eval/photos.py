"""Real people through ``edge-run`` (``tsd eval-photos``): each held-out identity's own photo,
paste-back on, speaking its real-texture test clips, scored as a user would see it.

The runtime renders each clip from the photo as ``edge-run`` does (its own set-up: face
alignment, paste-back, the offline pipeline), driven by the clip's true visemes so the
score is the renderer's, not the recogniser's (or by a recogniser, to score what a user
gets: the opening is still the truth's). In the photo-framed output, the mouth box is
the one the training sets use (centred on the mouth, half side MOUTH_HALF x the eye
distance), found by the bundle's own face graphs on the photo:

- darkness r: the inner half of the box darkens as the mouth model's opening grows
  (minus mean luma, less its clip mean, correlated over all frames with the clip's opening);
- swing: the 5th-95th percentile range of that darkness per clip (grey levels; a range
  rather than the extremes, so one odd frame does not count as motion);
- sharpness kept: Laplacian variance in the same inner half (the lips and what is between
  them: the whole box also holds cheeks and chin that paste-back leaves as they were),
  output over the photo's own;
- identity cosine: the identity encoder on the aligned crop of each frame against the
  photo's crop;
- temporal L1 and flicker of the aligned crops over those of the clip's held truth (the
  real-texture set's render with only the mouth moving) as the output shows it: each held
  frame placed in the photo's framing and cropped again by the same alignment, so both
  sides pass the same two resamplings (which alone take 10-17% off a clip's temporal L1).
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from edge_runtime.bundle import load_bundle
from edge_runtime.cli import execute, prepare
from edge_runtime.face.align import Alignment, align, face_points, mouth_box
from edge_runtime.face.landmarks import Face
from edge_runtime.face.reference import choose, open_landmarker, read_photo, shrink
from edge_runtime.service.sdnotify import Notifier
from edge_runtime.service.settings import EdgeSettings
from training.atomic import atomic_path, write_text
from training.config import RealConfig
from training.data.dataset import to_tensor_image
from training.data.manifest import ClipRecord, Manifest
from training.data.media import read_frames
from training.data.realsources import locate, photo_sources
from training.errors import UserError
from training.eval.metrics import correlation, cosine, flicker_std, temporal_l1
from training.eval.texture import darkness, mouth_slices, sharpness

SWING_PERCENTILES = (5, 95)
BARS = {"darkness_r": 0.4, "swing": 6.0, "sharpness": 0.12, "identity_cosine": 0.9,
        "motion_ratio_tolerance": 0.15}
"""The real-face bars: darkness r and swing (grey levels) at least, sharpness kept and
identity cosine at least, temporal L1 and flicker within this share of the held truth's."""


@dataclass(frozen=True)
class ClipScores:
    identity: str
    clip: str
    frames: int
    swing: float
    sharpness: float
    identity_cosine: float
    temporal_l1_ratio: float
    flicker_ratio: float


@dataclass(frozen=True)
class PhotoReport:
    bundle: str
    clips: list[ClipScores]
    darkness_r: dict[str, float]
    """Per identity and ``all``: darkness against opening over every frame."""

    def mean(self, key: str, identity: str | None = None) -> float:
        values = [getattr(c, key) for c in self.clips if identity in (None, c.identity)]
        return float(np.mean(values)) if values else float("nan")


class _Frames:
    """A sink that keeps the composed frames as they are: the output sinks' watermark would
    add fine texture of its own to the sharpness measured here."""

    def __init__(self):
        self.frames: dict[int, np.ndarray] = {}

    def write(self, index: int, frame: np.ndarray) -> None:
        self.frames[index] = frame

    def close(self) -> None:
        pass


def render(bundle: Path, photo: Path, face: int, clip: ClipRecord, manifest: Manifest,
           steps: int, visemes: str | None = None) -> np.ndarray:
    """[T, H, W, 3] uint8: edge-run's photo-framed frames for the clip's audio (its own
    set-up and pipeline, offline), before any sink marks them. ``visemes``: an edge-run
    ``--visemes`` source; None: the clip's true visemes."""
    source = visemes or f"file:{manifest.resolve(clip.visemes)}"
    settings = EdgeSettings(bundle=str(bundle), audio=str(manifest.resolve(clip.audio)),
                            reference=str(photo), face=face, offline=True, steps=steps,
                            visemes=source, sink="null")
    try:
        prepared = prepare(settings, Notifier(environ={}))
    except (ValueError, OSError) as exc:
        raise UserError(f"edge-run cannot render {photo} with clip {clip.id}: {exc}") from None
    kept = _Frames()
    prepared.pipeline.sink = kept
    execute(prepared, threading.Event())
    return np.stack([kept.frames[i] for i in sorted(kept.frames)])


@dataclass(frozen=True)
class Geometry:
    """Where the face is in the photo-framed output."""

    box: np.ndarray
    """[4] the mouth box x0, y0, x1, y1 in output pixels."""
    alignment: Alignment
    """Output pixels -> the bundle's aligned crop."""


def locate_face(face: Face, template, size: int) -> Geometry:
    return Geometry(mouth_box(face_points(face)), align(face, template, size))


def _embed(identity: torch.nn.Module, crops: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([identity(to_tensor_image(part)) for part in np.array_split(
            crops, max(1, len(crops) // 32))])


def as_seen(held: np.ndarray, geometry: Geometry, shape: tuple[int, int]) -> np.ndarray:
    """Held truth [T, S, S, 3] (aligned crops) -> the same frames after the round trip the
    output takes: into the photo-framed output of ``shape`` (H, W) and back to the crop."""
    inverse = geometry.alignment.inverse
    return np.stack([geometry.alignment.crop(cv2.warpAffine(
        frame, inverse, (shape[1], shape[0]), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE)) for frame in held])


def score_clip(frames: np.ndarray, photo: np.ndarray, geometry: Geometry,
               held: np.ndarray, identity: torch.nn.Module | None, identity_name: str,
               clip_id: str) -> tuple[ClipScores, np.ndarray]:
    """Scores of one rendered clip and its darkness curve [T] (clip mean removed)."""
    boxes = np.repeat(geometry.box[None], len(frames), axis=0)
    curve = darkness(frames, boxes)
    rows, cols = mouth_slices(geometry.box, frames.shape[1:3], 0.5)
    kept = np.mean([sharpness(f[rows, cols]) for f in frames]) / max(
        sharpness(photo[rows, cols]), 1e-6)
    crops = np.stack([geometry.alignment.crop(f) for f in frames])
    cos = float("nan")
    if identity is not None:
        reference = _embed(identity, geometry.alignment.crop(photo)[None])
        cos = float(cosine(_embed(identity, crops), reference[0]).mean())
    made = to_tensor_image(crops)
    truth = to_tensor_image(as_seen(held, geometry, frames.shape[1:3]))
    low, high = np.percentile(curve, SWING_PERCENTILES)
    scores = ClipScores(identity_name, clip_id, len(frames), float(high - low), float(kept), cos,
                        temporal_l1(made) / max(temporal_l1(truth), 1e-9),
                        flicker_std(made) / max(flicker_std(truth), 1e-9))
    return scores, curve - curve.mean()


def evaluate_photos(bundle: Path, manifest: Manifest, config: RealConfig, split: str,
                    clips_per_identity: int, identity: torch.nn.Module | None,
                    steps: int = 2, sheet: Path | None = None, visemes: str | None = None
                    ) -> PhotoReport:
    loaded, root = load_bundle(bundle)
    if loaded.face is None:
        raise UserError(f"{bundle}: the bundle has no face graphs; paste-back needs them")
    landmarker = open_landmarker(loaded, root)
    clips = manifest.split(split)
    identities = sorted({c.speaker for c in clips})
    sources = photo_sources(config, identities)
    if not sources:
        raise UserError(f"{manifest.path}: no {split} identity has a photo among the sources "
                        "of the real-texture config")
    paths = locate(tuple({s.name: s for s, _ in sources.values()}.values()))
    rows: list[ClipScores] = []
    curves: dict[str, list[np.ndarray]] = {}
    openings: dict[str, list[np.ndarray]] = {}
    strips: list[np.ndarray] = []
    for name, (source, face_number) in tqdm(sorted(sources.items()), desc="identities"):
        path = paths[source.name]
        chosen = sorted((c for c in clips if c.speaker == name),
                        key=lambda c: c.id)[:clips_per_identity]
        photo = geometry = None
        for clip in chosen:
            frames = render(bundle, path, face_number, clip, manifest, steps, visemes)
            if photo is None:  # one photo, one output size: its face is found once
                photo = shrink(read_photo(path), max(frames.shape[1:3]))
                if photo.shape != frames.shape[1:]:
                    raise UserError(f"{path}: edge-run's frames are {frames.shape[1:3]}, "
                                    f"the photo at that size {photo.shape[:2]}")
                face = choose(landmarker.faces(photo), face_number, path)
                geometry = locate_face(face, loaded.face.template, loaded.resolution)
            held = read_frames(manifest.resolve(clip.held_frames))
            n = min(len(frames), len(held), clip.frame_count)
            scores, curve = score_clip(frames[:n], photo, geometry, held[:n], identity, name,
                                       clip.id)
            rows.append(scores)
            curves.setdefault(name, []).append(curve)
            openings.setdefault(name, []).append(
                np.load(manifest.resolve(clip.mouth_params))[:n, 0])
            if clip is chosen[0]:
                strips.append(_strip(frames[:n], geometry, openings[name][0]))
    darkness_r = {name: correlation(np.concatenate(curves[name]), np.concatenate(openings[name]))
                  for name in curves}
    darkness_r["all"] = correlation(np.concatenate([c for v in curves.values() for c in v]),
                                     np.concatenate([o for v in openings.values() for o in v]))
    if sheet is not None and strips:
        with atomic_path(sheet) as tmp:
            cv2.imwrite(str(tmp), cv2.cvtColor(np.vstack(strips), cv2.COLOR_RGB2BGR))
    return PhotoReport(str(bundle), rows, darkness_r)


def _strip(frames: np.ndarray, geometry: Geometry, opening: np.ndarray, count: int = 8,
           side: int = 160) -> np.ndarray:
    """One row of the contact sheet: ``count`` frames from the most closed to the most open
    mouth (by the mouth model), each the face around the mouth box."""
    order = np.argsort(opening)
    picks = order[np.linspace(0, len(order) - 1, count).round().astype(int)]
    x0, y0, x1, y1 = geometry.box
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 1.6 * (x1 - x0) / 2
    matrix = np.array([[side / (2 * half), 0, side / 2 - cx * side / (2 * half)],
                       [0, side / (2 * half), side / 2 - (cy - 0.6 * half) * side / (2 * half)]])
    return np.hstack([cv2.warpAffine(frames[i], matrix, (side, side), flags=cv2.INTER_AREA,
                                     borderMode=cv2.BORDER_REPLICATE) for i in picks])


def bars(report: PhotoReport) -> list[dict]:
    tol = BARS["motion_ratio_tolerance"]
    rows = [("mouth darkness r with the opening", report.darkness_r["all"], ">=",
             BARS["darkness_r"]),
            ("mouth swing (grey levels, mean over clips)", report.mean("swing"), ">=",
             BARS["swing"]),
            ("mouth sharpness kept (mean over clips)", report.mean("sharpness"), ">=",
             BARS["sharpness"]),
            ("identity cosine", report.mean("identity_cosine"), ">=",
             BARS["identity_cosine"]),
            ("|temporal L1 / held truth - 1|", abs(report.mean("temporal_l1_ratio") - 1), "<=",
             tol),
            ("|flicker / held truth - 1|", abs(report.mean("flicker_ratio") - 1), "<=", tol)]
    return [{"bar": name, "value": value, "threshold": limit,
             "passed": bool(value >= limit if op == ">=" else value <= limit)}
            for name, value, op, limit in rows]


def write_report(report: PhotoReport, out: Path) -> str:
    """OUT/photos.json and OUT/photos.md (returned)."""
    identities = sorted({c.identity for c in report.clips})
    lines = ["| identity | clips | darkness r | swing (grey) | sharpness kept | identity cos | "
             "temporal L1 / held truth | flicker / held truth |",
             "|---|---|---|---|---|---|---|---|"]
    for name in [*identities, None]:
        label = name or "all"
        count = sum(1 for c in report.clips if name in (None, c.identity))
        lines.append(
            f"| {label} | {count} | {report.darkness_r[label]:.2f} | "
            f"{report.mean('swing', name):.1f} | {100 * report.mean('sharpness', name):.1f}% | "
            f"{report.mean('identity_cosine', name):.3f} | "
            f"{report.mean('temporal_l1_ratio', name):.2f} | "
            f"{report.mean('flicker_ratio', name):.2f} |")
    lines += ["", "| bar | value | threshold | passed |", "|---|---|---|---|"]
    lines += [f"| {b['bar']} | {b['value']:.3g} | {b['threshold']:g} | "
              f"{'yes' if b['passed'] else 'NO'} |" for b in bars(report)]
    table = "\n".join(lines) + "\n"
    write_text(out / "photos.json", json.dumps(
        {"bundle": report.bundle, "clips": [asdict(c) for c in report.clips],
         "darkness_r": report.darkness_r, "bars": bars(report)}, indent=2))
    write_text(out / "photos.md", table)
    return table
