"""LRS3-TED -> manifest: face crop, 16 kHz audio, per-frame visemes, optical flow.

LRS3 layout: ``<root>/{pretrain,trainval,test}/<talk id>/<clip>.mp4`` (face tracks with an
audio track) next to ``<clip>.txt``::

    Text:  SO WHAT I WANT TO TALK ABOUT
    Conf:  3

    WORD START END ASDSCORE
    SO 0.11 0.24 4.1
    ...

Talks stand in for speakers. ``test`` stays test; a seeded share of the training talks becomes
``val``. Word times place CMUdict phones inside each word; a transcript without the word
table is force-aligned with pocketsphinx. Every clip is written atomically and skipped when
already done, so an interrupted run resumes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.face.align import CANONICAL, Alignment, align, template_mouth_box
from edge_runtime.face.detect import centre_box, crop, detect_face, square_box
from edge_runtime.face.landmarks import FaceLandmarker
from training.atomic import atomic_dir
from training.config import Lrs3Config
from training.data.alignment import Segment, align_transcript, frame_visemes, phones_from_word_times
from training.data.flow import optical_flow
from training.data.landmarks import landmarker_from_cache
from training.data.manifest import ClipRecord, write_manifest
from training.data.media import SAMPLE_RATE, MediaError, read_mp4, write_frames, write_wav
from training.data.parallel import run_parallel, worker_count
from training.errors import UserError

log = logging.getLogger(__name__)

LRS3_SPLITS = {"pretrain": "train", "trainval": "train", "test": "test"}
WORD_TABLE_HEADER = "WORD START END ASDSCORE"
MOUTH_BOX = (0.5, 0.72, 0.19)
"""Mouth ROI in a Haar face crop: centre x, centre y, half-size (fractions of the crop side);
the Haar face box puts the mouth here to within a few pixels. Aligned crops put it at the
template's mouth (edge_runtime.face.align.template_mouth_box)."""


class Lrs3Error(UserError):
    """An LRS3 file that cannot be used; names the file and the line."""


@dataclass(frozen=True)
class Transcript:
    text: str
    conf: str | None
    words: list[Segment]
    """Word segments from the word table; empty when the file has none."""


def parse_transcript(path: Path) -> Transcript:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    header: dict[str, str] = {}
    words: list[Segment] = []
    in_table = False
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if line.strip() == WORD_TABLE_HEADER:
            in_table = True
            continue
        if in_table:
            parts = line.split()
            try:
                word, start, end = parts[0], float(parts[1]), float(parts[2])
            except (IndexError, ValueError):
                raise Lrs3Error(f"{path}:{line_no}: word row must be 'WORD START END ASDSCORE', "
                                f"got {line!r}") from None
            if end < start:
                raise Lrs3Error(f"{path}:{line_no}: word {word!r} ends before it starts")
            words.append(Segment(word, start, end))
        elif ":" in line:
            key, value = line.split(":", 1)
            header[key.strip()] = value.strip()
    if "Text" not in header:
        raise Lrs3Error(f"{path}:1: missing 'Text:' line")
    return Transcript(header["Text"], header.get("Conf"), words)


@dataclass(frozen=True)
class Lrs3Clip:
    split_dir: str
    talk: str
    name: str
    mp4: Path

    @property
    def id(self) -> str:
        return f"{self.split_dir}-{self.talk}-{self.name}"


def discover(root: Path) -> list[Lrs3Clip]:
    if not root.is_dir():
        raise Lrs3Error(f"{root}: LRS3 root folder does not exist")
    clips = [Lrs3Clip(split_dir, mp4.parent.name, mp4.stem, mp4)
             for split_dir in LRS3_SPLITS
             for mp4 in sorted((root / split_dir).glob("*/*.mp4"))]
    if not clips:
        raise Lrs3Error(f"{root}: no <split>/<talk>/<clip>.mp4 files under "
                        f"{', '.join(LRS3_SPLITS)}")
    return clips


def split_of(clip: Lrs3Clip, val_fraction: float) -> str:
    """test stays test; a stable hash of the talk id sends val_fraction of talks to val."""
    split = LRS3_SPLITS[clip.split_dir]
    if split == "train":
        digest = int(hashlib.sha1(clip.talk.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        if digest < val_fraction:
            return "val"
    return split


def smooth_track(hits_t: list[int], hits: list[np.ndarray], n: int) -> np.ndarray:
    """Per-frame values [n, D] from values [K, D] at frames ``hits_t``: interpolated, then
    a 5-frame moving average, so crops do not jitter."""
    hits = np.array(hits, np.float64)
    all_t = np.arange(n)
    track = np.stack([np.interp(all_t, hits_t, hits[:, k]) for k in range(hits.shape[1])],
                     axis=1)
    kernel = np.ones(5) / 5
    padded = np.pad(track, ((2, 2), (0, 0)), mode="edge")
    return np.stack([np.convolve(padded[:, k], kernel, mode="valid")
                     for k in range(hits.shape[1])], axis=1)


def face_track(frames: np.ndarray, every: int, margin: float) -> np.ndarray | None:
    """Square crop box per frame [T, 3] (centre x, centre y, side) from OpenCV's Haar
    cascade, or None when no face: the largest face every ``every``-th frame, smoothed."""
    hits_t, hits = [], []
    for t in range(0, len(frames), every):
        face = detect_face(frames[t])
        if face is not None:
            hits_t.append(t)
            hits.append(square_box(face, margin))
    return smooth_track(hits_t, hits, len(frames)) if hits else None


def landmark_track(frames: np.ndarray, every: int, size: int, landmarker: FaceLandmarker
                   ) -> np.ndarray | None:
    """Alignment per frame [T, 2, 3] (photo pixels -> size x size crop) to the canonical
    template, or None when no face: MediaPipe landmarks of the largest face every
    ``every``-th frame; the similarity's four parameters are smoothed over time."""
    hits_t, hits = [], []
    for t in range(0, len(frames), every):
        faces = landmarker.faces(frames[t])
        if faces:
            (a, b, tx), (_, _, ty) = align(faces[0], CANONICAL, size).matrix
            hits_t.append(t)
            hits.append(np.array([a, b, tx, ty]))
    if not hits:
        return None
    a, b, tx, ty = smooth_track(hits_t, hits, len(frames)).T
    return np.stack([np.stack([a, b, tx], 1), np.stack([-b, a, ty], 1)], 1)


def resample_frames(frames: np.ndarray, fps_in: float, fps_out: int) -> np.ndarray:
    if abs(fps_in - fps_out) < 1e-3:
        return frames
    n_out = int(round(len(frames) * fps_out / fps_in))
    index = np.clip(np.round((np.arange(n_out) + 0.5) * fps_in / fps_out - 0.5), 0,
                    len(frames) - 1).astype(int)
    return frames[index]


@dataclass(frozen=True)
class Lrs3Job:
    clip: Lrs3Clip
    split: str
    out: Path
    config: Lrs3Config


def process_clip(job: Lrs3Job) -> ClipRecord | str:
    """Preprocess one clip -> its record, or a one-line reason it was skipped."""
    try:
        return _process(job)
    except UserError as exc:
        return str(exc)


def _face_frames(raw: np.ndarray, mp4: Path, config: Lrs3Config
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Face crops [T, size, size, 3] of a clip's frames and the mouth box [4] (x0, y0, x1,
    y1 pixels) in them: aligned by landmarks (config.face) or cropped by the Haar box."""
    if config.face == "landmarks":
        track = landmark_track(raw, config.detect_every, config.size, _landmarker())
        if track is not None:
            frames = np.stack([Alignment(m, config.size).crop(f) for f, m in zip(raw, track)])
            return frames, template_mouth_box(CANONICAL, config.size)
        log.warning("%s: no face found by the landmark graphs; using the Haar cascade", mp4)
    track = face_track(raw, config.detect_every, config.face_margin)
    if track is None:
        log.warning("%s: no face found; using a centre crop", mp4)
        track = np.tile(centre_box(raw[0]), (len(raw), 1))
    cx, cy, half = (v * config.size for v in MOUTH_BOX)
    return (np.stack([crop(f, b, config.size) for f, b in zip(raw, track)]),
            np.array([cx - half, cy - half, cx + half, cy + half], np.float32))


@functools.lru_cache(maxsize=1)
def _landmarker() -> FaceLandmarker:
    """One landmarker per worker process (the graphs load once)."""
    return landmarker_from_cache(threads=1)


def _process(job: Lrs3Job) -> ClipRecord:
    clip, config = job.clip, job.config
    folder = Path("clips") / clip.id
    done = job.out / folder / "record.json"
    if done.is_file():
        return ClipRecord(**json.loads(done.read_text()))
    txt = clip.mp4.with_suffix(".txt")
    if not txt.is_file():
        raise Lrs3Error(f"{txt}: transcript missing")
    transcript = parse_transcript(txt)
    video = read_mp4(clip.mp4)
    if video.audio is None:
        raise MediaError(f"{clip.mp4}: no audio track")
    raw = resample_frames(video.frames, video.fps, config.fps)
    n = len(raw)
    frames, mouth_box = _face_frames(raw, clip.mp4, config)
    audio = np.zeros(n * SAMPLE_RATE // config.fps, np.float32)
    audio[: min(len(audio), len(video.audio))] = video.audio[: len(audio)]
    source = "lrs3-word-times"
    if transcript.words and config.align == "auto":
        words, phones = transcript.words, phones_from_word_times(transcript.words)
    else:
        words, phones = align_transcript(audio, transcript.text.split())
        source = "pocketsphinx"
    record = ClipRecord(
        id=clip.id, speaker=clip.talk, split=job.split, fps=config.fps, frame_count=n,
        size=config.size, frames=str(folder / "frames"), audio=str(folder / "audio.wav"),
        visemes=str(folder / "visemes.npy"), mouth_boxes=str(folder / "mouth_boxes.npy"),
        alignment=str(folder / "alignment.json"), text=transcript.text,
        flow=str(folder / "flow.npy") if config.flow else None,
        flow_stride=config.flow_stride if config.flow else None)
    with atomic_dir(job.out / folder) as tmp:
        write_frames(tmp / "frames", frames)
        write_wav(tmp / "audio.wav", audio)
        np.save(tmp / "visemes.npy", frame_visemes(phones, n, config.fps))
        np.save(tmp / "mouth_boxes.npy", np.tile(mouth_box, (n, 1)))
        if config.flow:
            np.save(tmp / "flow.npy", optical_flow(frames, config.flow_stride))
        (tmp / "alignment.json").write_text(json.dumps({
            "text": transcript.text, "source": source, "words": [w.to_dict() for w in words],
            "phones": [p.to_dict() for p in phones]}))
        (tmp / "record.json").write_text(json.dumps(record.to_dict()))
    return record


def preprocess(root: Path, out: Path, config: Lrs3Config,
               limit: int | None = None) -> list[ClipRecord]:
    """Process every clip under ``root`` (resuming finished ones) and write the manifest."""
    clips = discover(root)[:limit]
    jobs = [Lrs3Job(c, split_of(c, config.val_fraction), out, config) for c in clips]
    records, skipped = [], []
    for result in run_parallel(process_clip, jobs, worker_count(config.workers), "lrs3 clips"):
        (records if isinstance(result, ClipRecord) else skipped).append(result)
    for reason in skipped:
        log.warning("skipped: %s", reason)
    if not records:
        raise Lrs3Error(f"{root}: no clip could be processed ({len(skipped)} skipped)")
    write_manifest(out / "manifest.jsonl", records)
    log.info("%d clips written, %d skipped", len(records), len(skipped))
    return records
