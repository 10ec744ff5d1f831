"""The synthetic talking-face dataset: procedural identities speaking espeak-ng sentences.

Each clip is a pure function of (config, identity index, clip index), so generation is
deterministic, parallel and resumable (finished clip folders are kept).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.atomic import atomic_dir
from training.config import RealConfig, SynthConfig, to_dict
from training.data.alignment import Segment, cmudict, frame_visemes
from training.data.face import (
    SUPERSAMPLE,
    FrameState,
    Identity,
    Scene,
    mouth_centre,
    pose_matrix,
    render_background,
    render_frame,
    sample_identity,
    sample_scene,
)
from training.data.flow import optical_flow
from training.data.manifest import SYNTHETIC_TEXTURE, ClipRecord, write_manifest
from training.data.media import SAMPLE_RATE, write_frames, write_wav
from training.data.mouth import mouth_track
from training.data.parallel import run_parallel, worker_count
from training.data.speech import ENGLISH_VOICES, VOICE_VARIANTS, Voice, synthesize

log = logging.getLogger(__name__)

MOUTH_BOX_SCALE = 2.2
"""Mouth ROI half-size in units of the identity's mouth half-width (covers the widest shape)."""


@dataclass(frozen=True)
class ClipJob:
    config: SynthConfig
    identity: int
    clip: int
    split: str
    out: Path


def identity_name(index: int) -> str:
    return f"id{index:04d}"


def clip_name(identity: int, clip: int) -> str:
    return f"{identity_name(identity)}_c{clip:03d}"


def assign_splits(config: SynthConfig) -> list[str]:
    """Split of every identity: a seeded permutation cut by the configured fractions."""
    n = config.identities
    order = np.random.default_rng([config.seed, 7]).permutation(n)
    n_val = max(1, round(n * config.splits.val))
    n_test = max(1, round(n * config.splits.test))
    splits = ["train"] * n
    for rank, index in enumerate(order):
        if rank < n_val:
            splits[index] = "val"
        elif rank < n_val + n_test:
            splits[index] = "test"
    return splits


VOCABULARY_SIZE = 5000
_BLOCKED = frozenset({"porn", "sex", "sexy", "fuck", "fucking", "shit", "damn", "hell", "ass",
                      "bitch", "gay", "dick", "nude", "naked", "xxx", "kill", "killed", "rape"})


@functools.lru_cache(maxsize=1)
def vocabulary() -> tuple[tuple[str, ...], np.ndarray]:
    """The most frequent English words (wordfreq) that CMUdict can pronounce, with sampling
    probabilities ~ (rank + 20) ** -0.7 so function words recur as in real speech."""
    import wordfreq

    pattern = re.compile(r"^[a-z]+$")
    words = tuple(w for w in wordfreq.top_n_list("en", VOCABULARY_SIZE)
                  if pattern.match(w) and w in cmudict() and w not in _BLOCKED)
    weights = (np.arange(len(words)) + 20.0) ** -0.7
    return words, weights / weights.sum()


def sample_voice(rng: np.random.Generator) -> Voice:
    """An espeak-ng voice: base, variant, rate, pitch and range."""
    return Voice(base=str(rng.choice(ENGLISH_VOICES)),
                 variant=str(rng.choice(VOICE_VARIANTS)),
                 rate_wpm=int(rng.integers(140, 190)), pitch=int(rng.integers(25, 75)),
                 pitch_range=int(rng.integers(30, 80)))


def identity_of(config: SynthConfig, index: int) -> tuple[Identity, Voice]:
    rng = np.random.default_rng([config.seed, index, 1])
    ident = sample_identity(rng)
    return ident, sample_voice(rng)


def sentence(rng: np.random.Generator, config: SynthConfig | RealConfig) -> str:
    vocab, p = vocabulary()
    words = list(rng.choice(vocab, size=rng.integers(config.min_words, config.max_words + 1), p=p))
    if len(words) >= 4 and rng.random() < config.pause_probability:
        words[int(rng.integers(1, len(words) - 2))] += ","
    return " ".join(words).capitalize() + "."


def _smooth_noise(rng: np.random.Generator, t: np.ndarray, fmin: float, fmax: float) -> np.ndarray:
    """Sum of three random low-frequency sinusoids, roughly in [-1, 1]."""
    out = np.zeros_like(t)
    for _ in range(3):
        out += np.sin(2 * np.pi * rng.uniform(fmin, fmax) * t + rng.uniform(0, 2 * np.pi))
    return out / 3


def _blinks(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Eyelid closure 0..1 per time: a blink every ~3 s, 150-250 ms long."""
    closure = np.zeros_like(t)
    when = rng.uniform(0.2, 1.5)
    while when < t[-1] + 1:
        length = rng.uniform(0.15, 0.25)
        inside = (t >= when) & (t < when + length)
        closure[inside] = np.sin(np.pi * (t[inside] - when) / length)
        when += length + rng.exponential(2.5) + 0.5
    return closure


def speech_track(rng: np.random.Generator, config: SynthConfig | RealConfig, speech: np.ndarray,
                 n_frames: int, lead: float) -> np.ndarray:
    """The clip's audio [n_frames / fps s]: ``speech`` after ``lead`` seconds of silence, with
    background noise at a random SNR from ``config.noise_snr_db``."""
    total = n_frames * SAMPLE_RATE // config.fps
    audio = np.zeros(total, np.float32)
    start = int(round(lead * SAMPLE_RATE))
    audio[start:start + len(speech)] = speech[:total - start]
    speech_rms = float(np.sqrt(np.mean(speech ** 2)) + 1e-8)
    snr = rng.uniform(*config.noise_snr_db)
    audio += rng.normal(0, speech_rms / 10 ** (snr / 20), total).astype(np.float32)
    return np.clip(audio, -1, 1)


def shift_segments(segments: list[Segment], offset: float) -> list[Segment]:
    return [Segment(s.label, s.start + offset, s.end + offset, s.viseme) for s in segments]


def generate_clip(job: ClipJob) -> ClipRecord:
    """Render one clip into ``job.out / clips / <id>`` (skipped when already complete)."""
    config = job.config
    cid = clip_name(job.identity, job.clip)
    folder = Path("clips") / cid
    record = ClipRecord(
        id=cid, speaker=identity_name(job.identity), split=job.split, fps=config.fps,
        frame_count=0, size=config.size, frames=str(folder / "frames"),
        audio=str(folder / "audio.wav"), visemes=str(folder / "visemes.npy"),
        mouth_boxes=str(folder / "mouth_boxes.npy"), mouth_params=str(folder / "mouth_params.npy"),
        head_pose=str(folder / "head_pose.npy"), alignment=str(folder / "alignment.json"),
        flow=str(folder / "flow.npy") if config.flow else None,
        flow_stride=config.flow_stride if config.flow else None,
        held_frames=str(folder / "held_frames"),
        held_mouth_boxes=str(folder / "held_mouth_boxes.npy"),
        held_flow=str(folder / "held_flow.npy") if config.flow else None, texture=SYNTHETIC_TEXTURE)
    done = job.out / folder / "record.json"
    if done.is_file():
        kept = ClipRecord(**json.loads(done.read_text()))
        # A folder from before every clip had its held render is rendered again (the same
        # frames, plus the held ones).
        if _held_paths(kept) == _held_paths(record):
            return ClipRecord(**(kept.to_dict() | {"texture": SYNTHETIC_TEXTURE}))
    ident, voice = identity_of(config, job.identity)
    rng = np.random.default_rng([config.seed, job.identity, job.clip, 2])
    text = sentence(rng, config)
    voice = Voice(voice.base, voice.variant, int(voice.rate_wpm * rng.uniform(0.9, 1.1)),
                  voice.pitch, voice.pitch_range)
    utterance = synthesize(text, voice)
    lead = rng.uniform(*config.lead_silence_s)
    duration = lead + len(utterance.audio) / SAMPLE_RATE + rng.uniform(*config.tail_silence_s)
    n_frames = math.ceil(duration * config.fps)
    phones, words = shift_segments(utterance.phones, lead), shift_segments(utterance.words, lead)
    audio = speech_track(rng, config, utterance.audio, n_frames, lead)
    scene = sample_scene(rng)
    motion = clip_motion(phones, n_frames, config, rng)
    frames, boxes, poses = render_clip(ident, scene, motion, config.size)
    held_frames, held_boxes, _ = render_clip(ident, scene, motion.held(n_frames - 1), config.size)
    record = _with_frames(record, n_frames)
    record = ClipRecord(**(record.to_dict() | {"text": text}))
    write_clip(job.out / folder, RenderedClip(
        frames, held_frames, audio, frame_visemes(phones, n_frames, config.fps), boxes,
        held_boxes, motion.mouth, poses,
        {"text": text, "voice": voice.__dict__, "words": [w.to_dict() for w in words],
         "phones": [p.to_dict() for p in phones]}), record, config)
    return record


@dataclass(frozen=True)
class RenderedClip:
    """One clip's ground truth as the manifest stores it (docs/data.md)."""

    frames: np.ndarray
    """[T, H, W, 3] uint8 RGB, as recorded."""
    held_frames: np.ndarray
    """[T, H, W, 3] uint8, the held render: pose, light and blinks held, only the mouth moving."""
    audio: np.ndarray
    """[N] float32 16 kHz."""
    visemes: np.ndarray
    """[T] viseme ids."""
    boxes: np.ndarray
    """[T, 4] mouth box (x0, y0, x1, y1) in pixels."""
    held_boxes: np.ndarray
    """[T, 4] mouth box of the held render."""
    mouth: np.ndarray
    """[T, 8] the mouth model's parameters."""
    poses: np.ndarray
    """[T, P] head pose."""
    alignment: dict
    """Text, voice, word and phone times (alignment.json)."""


def write_clip(folder: Path, clip: RenderedClip, record: ClipRecord,
               config: SynthConfig | RealConfig) -> None:
    """The clip's files, written atomically into ``folder`` (record.json last, inside)."""
    with atomic_dir(folder) as tmp:
        write_frames(tmp / "frames", clip.frames)
        write_frames(tmp / "held_frames", clip.held_frames)
        write_wav(tmp / "audio.wav", clip.audio)
        np.save(tmp / "visemes.npy", clip.visemes)
        np.save(tmp / "mouth_boxes.npy", clip.boxes)
        np.save(tmp / "held_mouth_boxes.npy", clip.held_boxes)
        np.save(tmp / "mouth_params.npy", clip.mouth)
        np.save(tmp / "head_pose.npy", clip.poses)
        if config.flow:
            np.save(tmp / "flow.npy", optical_flow(clip.frames, config.flow_stride))
            np.save(tmp / "held_flow.npy", optical_flow(clip.held_frames, config.flow_stride))
        (tmp / "alignment.json").write_text(json.dumps(clip.alignment))
        (tmp / "record.json").write_text(json.dumps(record.to_dict()))


def _held_paths(record: ClipRecord) -> tuple[str | None, ...]:
    return record.held_frames, record.held_mouth_boxes, record.held_flow


def _with_frames(record: ClipRecord, n_frames: int) -> ClipRecord:
    return ClipRecord(**(record.to_dict() | {"frame_count": n_frames}))


def mouth_box(ident: Identity, state: FrameState, size: int) -> np.ndarray:
    """Square mouth ROI (x0, y0, x1, y1) in output pixels, following the head pose."""
    mx, my = mouth_centre(ident, state)
    cx, cy = pose_matrix(state.pose, size) @ np.array([mx * size, my * size, 1.0])
    half = MOUTH_BOX_SCALE * ident.mouth_w * size * float(state.pose[3])
    return np.array([cx - half, cy - half, cx + half, cy + half], np.float32)


@dataclass(frozen=True)
class Motion:
    """Everything that changes over a clip, per frame [T, ...]."""

    mouth: np.ndarray
    """[T, len(MOUTH_PARAMS)] mouth shape, from the phones."""
    blink: np.ndarray
    """[T] eyelid closure."""
    gaze: np.ndarray
    """[T, 2] iris offset."""
    pose: np.ndarray
    """[T, 4] tx, ty (canvas units), rotation (degrees), scale."""
    gain: np.ndarray
    """[T] light gain."""
    direction: np.ndarray
    """[T] light direction (radians)."""
    strength: float
    """Light strength (constant over the clip)."""

    def held(self, index: int) -> Motion:
        """The same mouth, with blink, gaze, head pose and light held at frame ``index``: what
        a model given that frame as its reference and the audio can reproduce."""
        def hold(a: np.ndarray) -> np.ndarray:
            return np.repeat(a[index:index + 1], len(a), axis=0)
        return Motion(self.mouth, hold(self.blink), hold(self.gaze), hold(self.pose),
                      hold(self.gain), hold(self.direction), self.strength)


def clip_motion(phones: list[Segment], n_frames: int, config: SynthConfig | RealConfig,
                rng: np.random.Generator) -> Motion:
    """Mouth from the phones; blinks, gaze, head pose and light as smooth random tracks."""
    t = (np.arange(n_frames) + 0.5) / config.fps
    mouth = mouth_track(phones, t)
    blink = _blinks(rng, t)
    pose = np.stack([0.03 * _smooth_noise(rng, t, 0.05, 0.4),
                     0.025 * _smooth_noise(rng, t, 0.05, 0.4),
                     5.0 * _smooth_noise(rng, t, 0.05, 0.3),
                     1.0 + 0.03 * _smooth_noise(rng, t, 0.05, 0.3)], axis=1)
    gaze = np.stack([_smooth_noise(rng, t, 0.1, 0.5), 0.5 * _smooth_noise(rng, t, 0.1, 0.5)], 1)
    light_dir, light_strength = rng.uniform(0, 2 * np.pi), rng.uniform(0.05, 0.25)
    gain = 1.0 + 0.08 * _smooth_noise(rng, t, 0.05, 0.3)
    direction = light_dir + 0.3 * _smooth_noise(rng, t, 0.05, 0.2)
    return Motion(mouth, blink, gaze, pose, gain, direction, float(light_strength))


def render_clip(ident: Identity, scene: Scene, motion: Motion, size: int):
    """-> frames [T, S, S, 3] uint8, mouth boxes [T, 4], head pose [T, 4] (tx, ty pixels)."""
    background = render_background(scene, size * SUPERSAMPLE)
    n_frames = len(motion.mouth)
    frames = np.zeros((n_frames, size, size, 3), np.uint8)
    boxes = np.zeros((n_frames, 4), np.float32)
    poses = np.zeros((n_frames, 4), np.float32)
    for i in range(n_frames):
        pose = motion.pose[i]
        state = FrameState(mouth=motion.mouth[i], blink=float(motion.blink[i]),
                           gaze=tuple(motion.gaze[i]), pose=pose,
                           light=(float(motion.gain[i]), float(motion.direction[i]),
                                  motion.strength))
        frames[i] = render_frame(ident, scene, state, background, size)
        boxes[i] = mouth_box(ident, state, size)
        poses[i] = (pose[0] * size, pose[1] * size, pose[2], pose[3])
    return frames, boxes, poses


def generate(config: SynthConfig, out: Path) -> tuple[list[ClipRecord], float]:
    """Generate (or finish) the dataset in ``out``; -> (records, seconds spent)."""
    out.mkdir(parents=True, exist_ok=True)
    splits = assign_splits(config)
    jobs = [ClipJob(config, config.first_identity + i, j, splits[i], out)
            for i in range(config.identities) for j in range(config.clips_per_identity)]
    workers = worker_count(config.workers)
    start = time.perf_counter()
    records = list(run_parallel(generate_clip, jobs, workers, "synth clips"))
    elapsed = time.perf_counter() - start
    write_manifest(out / "manifest.jsonl", records)
    (out / "synth-config.json").write_text(json.dumps(to_dict(config), indent=2))
    log.info("wrote %d clips to %s in %.1f s (%.2f clips/s, %d workers)", len(records), out,
             elapsed, len(records) / elapsed, workers)
    return records, elapsed
