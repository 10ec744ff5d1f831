"""Look and listen: a contact sheet PNG with viseme labels and an mp4 with the audio track."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.visemes.vocabulary import VISEMES
from training.atomic import atomic_path
from training.data.manifest import ClipRecord, Manifest
from training.data.media import read_frames, read_wav, write_mp4

log = logging.getLogger(__name__)

LABEL_HEIGHT = 14


def _label(frame: np.ndarray, text: str, scale: int) -> np.ndarray:
    """frame [H, W, 3] -> [H*scale + label, W*scale, 3] with ``text`` under it."""
    big = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    band = np.full((LABEL_HEIGHT * scale, big.shape[1], 3), 255, np.uint8)
    cv2.putText(band, text, (3, int(LABEL_HEIGHT * scale * 0.75)), cv2.FONT_HERSHEY_SIMPLEX,
                0.4 * scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([big, band], axis=0)


def contact_sheet(manifest: Manifest, clips: list[ClipRecord], frames_per_clip: int = 10,
                  scale: int = 1) -> np.ndarray:
    """One row per clip: evenly spaced frames labelled with frame index and viseme."""
    rows = []
    for clip in clips:
        visemes = np.load(manifest.resolve(clip.visemes))
        picks = _speech_frames(visemes, frames_per_clip)
        frames = read_frames(manifest.resolve(clip.frames))
        tiles = [_label(frames[i], f"{i} {VISEMES[visemes[i]]}", scale) for i in picks]
        row = np.concatenate(tiles, axis=1)
        title = np.full((LABEL_HEIGHT * scale, row.shape[1], 3), 235, np.uint8)
        cv2.putText(title, f"{clip.id} ({clip.split}) {clip.text or ''}"[:120],
                    (3, int(LABEL_HEIGHT * scale * 0.75)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * scale, (40, 40, 40), 1, cv2.LINE_AA)
        rows.append(np.concatenate([title, row], axis=0))
    return np.concatenate(rows, axis=0)


def _speech_frames(visemes: np.ndarray, count: int) -> np.ndarray:
    """Frames spread over the clip, preferring the spoken part so the mouth shapes show."""
    spoken = np.flatnonzero(visemes != 0)
    lo, hi = (spoken[0], spoken[-1]) if len(spoken) else (0, len(visemes) - 1)
    return np.unique(np.linspace(lo, hi, count).round().astype(int))


def write_preview(manifest: Manifest, out: Path, clip_ids: list[str] | None = None,
                  max_clips: int = 6, frames_per_clip: int = 10) -> list[Path]:
    """contact_sheet.png plus one <clip>.mp4 (with audio) per chosen clip -> written paths."""
    by_id = {c.id: c for c in manifest.clips}
    if clip_ids:
        missing = [c for c in clip_ids if c not in by_id]
        if missing:
            raise KeyError(f"clip {missing[0]!r} is not in {manifest.path}")
        clips = [by_id[c] for c in clip_ids]
    else:
        clips = _one_per_speaker(manifest.clips, max_clips)
    out.mkdir(parents=True, exist_ok=True)
    sheet = contact_sheet(manifest, clips, frames_per_clip)
    written = [out / "contact_sheet.png"]
    with atomic_path(written[0]) as tmp:
        cv2.imwrite(str(tmp), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    for clip in clips:
        frames = read_frames(manifest.resolve(clip.frames))
        audio, rate = read_wav(manifest.resolve(clip.audio))
        path = out / f"{clip.id}.mp4"
        write_mp4(path, _even(frames), clip.fps, audio, rate)
        written.append(path)
    log.info("preview of %d clips in %s", len(clips), out)
    return written


def _one_per_speaker(clips: tuple[ClipRecord, ...], limit: int) -> list[ClipRecord]:
    chosen, seen = [], set()
    for clip in clips:
        if clip.speaker not in seen:
            chosen.append(clip)
            seen.add(clip.speaker)
    return chosen[:limit]


def _even(frames: np.ndarray) -> np.ndarray:
    """H.264 with yuv420p needs even width and height."""
    h, w = frames.shape[1:3]
    return frames[:, : h - h % 2, : w - w % 2]
