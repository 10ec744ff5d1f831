"""Whole held-out clips for evaluation, with everything the metrics compare against."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from training.data.dataset import to_tensor_image, viseme_windows
from training.data.flow import upsample_flow
from training.data.manifest import ClipRecord, Manifest
from training.data.media import SAMPLE_RATE, read_frame, read_frames, read_wav
from training.data.mouth import MOUTH_PARAMS
from training.errors import UserError


@dataclass(frozen=True)
class EvalClip:
    """One clip's first N frames. Images in [-1, 1]."""

    id: str
    speaker: str
    frames: torch.Tensor
    """Ground truth [N, 3, H, W]."""
    reference: torch.Tensor
    """Reference image [3, H, W]: the clip's last frame (after the N scored ones when the
    clip is longer; trailing silence, so a closed mouth). The usual talking-head protocol: the
    synthetic set draws a new background, shirt and light per clip, so a frame of another
    clip would cap PSNR at ~9 dB whatever the model does (measured: copying such a reference
    scores 8.5-9.2 dB, copying the clip's own last frame 21.8 dB)."""
    visemes: torch.Tensor
    """Viseme token per frame [N] (int64)."""
    mouth_boxes: torch.Tensor
    """[N, 4] pixels (x0, y0, x1, y1)."""
    flow: torch.Tensor
    """Ground-truth flow frame t -> t+1 [N-1, 2, H, W] (pixels)."""
    audio: np.ndarray
    """16 kHz float32 samples under the N frames, zero-padded."""
    fps: int
    mouth_open: np.ndarray | None = None
    """Ground-truth jaw opening per frame [N] (the synthetic set's mouth parameters), when
    the manifest has them."""
    held: torch.Tensor | None = None
    """[N, 3, H, W] the same frames with head pose, gaze, blink and light held at the
    reference's (only the mouth moves), when the manifest has them: the part of the ground
    truth that the reference and the audio determine."""


def load_clip(manifest: Manifest, clip: ClipRecord, max_frames: int) -> EvalClip:
    n = min(clip.frame_count, max_frames)
    frames = read_frames(manifest.resolve(clip.frames), 0, n)
    if clip.mouth_boxes is None or clip.flow is None:
        raise UserError(f"{manifest.path}: clip {clip.id} lacks mouth boxes or optical flow, "
                        "which the evaluation needs")
    boxes = np.load(manifest.resolve(clip.mouth_boxes))[:n].astype(np.float32)
    stored = np.load(manifest.resolve(clip.flow), mmap_mode="r")
    flow = np.stack([upsample_flow(np.asarray(stored[k]), clip.flow_stride)
                     for k in range(n - 1)])
    audio, _ = read_wav(manifest.resolve(clip.audio))
    per_frame = SAMPLE_RATE // clip.fps
    padded = np.zeros(n * per_frame, np.float32)
    segment = audio[:n * per_frame]
    padded[:len(segment)] = segment
    return EvalClip(
        id=clip.id, speaker=clip.speaker,
        frames=to_tensor_image(frames),
        reference=to_tensor_image(read_frame(manifest.resolve(clip.frames),
                                             clip.frame_count - 1)),
        visemes=torch.from_numpy(np.load(manifest.resolve(clip.visemes))[:n].astype(np.int64)),
        mouth_boxes=torch.from_numpy(boxes),
        flow=torch.from_numpy(flow).permute(0, 3, 1, 2).contiguous(),
        audio=padded, fps=clip.fps, mouth_open=_mouth_open(manifest, clip, n),
        held=None if clip.held_frames is None
        else to_tensor_image(read_frames(manifest.resolve(clip.held_frames), 0, n)))


def _mouth_open(manifest: Manifest, clip: ClipRecord, n: int) -> np.ndarray | None:
    if clip.mouth_params is None:
        return None
    params = np.load(manifest.resolve(clip.mouth_params))[:n]
    return params[:, MOUTH_PARAMS.index("open")].astype(np.float32)


def select_clips(manifest: Manifest, split: str, max_clips: int, min_frames: int = 10
                 ) -> list[ClipRecord]:
    """Up to ``max_clips`` clips of ``split``, spread over its speakers (round robin)."""
    clips = [c for c in manifest.split(split) if c.frame_count >= min_frames]
    if not clips:
        raise UserError(f"{manifest.path}: no {split} clips with >= {min_frames} frames to "
                        "evaluate on")
    by_speaker: dict[str, list[ClipRecord]] = {}
    for clip in clips:
        by_speaker.setdefault(clip.speaker, []).append(clip)
    order = []
    for rank in range(max(len(v) for v in by_speaker.values())):
        order += [v[rank] for v in by_speaker.values() if rank < len(v)]
    return order[:max_clips]


def load_clips(manifest: Manifest, split: str, max_clips: int, max_frames: int,
               min_frames: int = 10) -> list[EvalClip]:
    """The clips of select_clips, loaded (frames, flow, audio, visemes, boxes)."""
    return [load_clip(manifest, c, max_frames)
            for c in select_clips(manifest, split, max_clips, min_frames)]


def viseme_context(clip: EvalClip, context: int) -> torch.Tensor:
    """[N, 2 * context + 1] viseme windows, ``sil`` beyond the clip."""
    return torch.from_numpy(viseme_windows(clip.visemes.numpy(), context))


def speaker_references(manifest: Manifest, splits: tuple[str, ...] = ("val", "test")
                       ) -> dict[str, torch.Tensor]:
    """One reference image [3, H, W] per held-out speaker (the middle frame of their first
    clip), for cross-identity tests."""
    refs: dict[str, torch.Tensor] = {}
    for clip in (c for c in manifest.clips if c.split in splits):
        if clip.speaker not in refs:
            refs[clip.speaker] = to_tensor_image(
                read_frame(manifest.resolve(clip.frames), clip.frame_count // 2))
    return refs
