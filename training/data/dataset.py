"""Training samples: random T-frame windows with a reference frame, viseme windows and flow.

Each item is drawn with its own RNG seeded from (seed, index), so samples are the same whatever
the number of DataLoader workers. Indices past ``len(dataset)`` are valid and wrap around the
clips with fresh randomness: a sampler passes ``epoch * len(dataset) + i`` for new windows
every epoch without any state in the (copied) worker datasets.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from edge_runtime.visemes.vocabulary import SIL
from training.config import WindowConfig
from training.data.flow import upsample_flow
from training.data.manifest import REAL_TEXTURE, ClipRecord, Manifest
from training.data.media import SAMPLE_RATE, read_frame, read_frames, read_wav
from training.errors import UserError

log = logging.getLogger(__name__)


def viseme_windows(visemes: np.ndarray, context: int) -> np.ndarray:
    """[N] ids -> [N, 2*context+1]: tokens t-context..t+context, ``sil`` beyond the clip."""
    padded = np.pad(visemes.astype(np.int64), context, constant_values=SIL)
    index = np.arange(len(visemes))[:, None] + np.arange(2 * context + 1)[None, :]
    return padded[index]


def to_tensor_image(frames: np.ndarray) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> float32 [..., 3, H, W] in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).float().div_(127.5).sub_(1.0)
    return x.movedim(-1, -3)


@dataclass(frozen=True)
class FrameSource:
    """Manifest paths of one clip's frames and what is measured on them."""

    frames: str
    mouth_boxes: str | None
    flow: str | None


class TalkingFaceDataset(Dataset):
    """Windows of ``config.frames`` consecutive frames from one split of a manifest.

    Item (T = config.frames, C = 2 * viseme_context + 1, H = W = clip size):
      frames [T, 3, H, W] in [-1, 1]; reference [3, H, W]; ref_cross (bool: reference from a
      different identity, eq 12); visemes [T, C] int64; mouth_boxes [T, 4] (pixels);
      flow [T-1, 2, H, W] (frame t -> t+1, pixels; zeros when absent); audio [T * 640] float32;
      identity (index into ``speakers``); real_texture (bool: the clip's faces are real photos
      or video frames, ClipRecord.texture); clip (index into ``clips``); start (first frame).
    """

    def __init__(self, manifest: Manifest, split: str, config: WindowConfig | None = None,
                 seed: int = 0, items_per_clip: int = 1):
        config = config or WindowConfig()
        self.manifest, self.config, self.seed = manifest, config, seed
        clips = manifest.split(split)
        self.clips: list[ClipRecord] = [c for c in clips if c.frame_count >= config.frames]
        if len(self.clips) < len(clips):
            log.warning("%d clips shorter than %d frames left out", len(clips) - len(self.clips),
                        config.frames)
        if not self.clips:
            raise ValueError(f"no clips of split {split!r} with >= {config.frames} frames in "
                             f"{manifest.path}")
        if config.target == "held":
            self._require(lambda c: c.held_frames and c.held_mouth_boxes,
                          "no held render (the synthetic set's held_frames and "
                          "held_mouth_boxes), which window.target held needs; re-run "
                          "tsd data synth on the dataset, or train on target: recorded")
        if config.with_flow and config.frames > 1:
            self._require(lambda c: self._source(c).flow,
                          "no optical flow, which the temporal loss needs; re-run the data "
                          "command without --no-flow")
        self.speakers = sorted({c.speaker for c in self.clips})
        speaker_index = {s: i for i, s in enumerate(self.speakers)}
        self.clip_speaker = np.array([speaker_index[c.speaker] for c in self.clips])
        self.items_per_clip = items_per_clip

    def _require(self, has: Callable[[ClipRecord], object], problem: str) -> None:
        missing = [c.id for c in self.clips if not has(c)]
        if missing:
            raise UserError(f"{self.manifest.path}: clip {missing[0]} (and {len(missing) - 1} "
                            f"more) has {problem}")

    def _source(self, clip: ClipRecord) -> FrameSource:
        """Where the frames, boxes and flow of ``config.target`` live for ``clip``."""
        if self.config.target == "held":
            return FrameSource(clip.held_frames, clip.held_mouth_boxes, clip.held_flow)
        return FrameSource(clip.frames, clip.mouth_boxes, clip.flow)

    def _reference_index(self, rng: np.random.Generator, clip: ClipRecord) -> int:
        """A random frame, or for held targets the last (the frame the pose is held at)."""
        if self.config.target == "held":
            return clip.frame_count - 1
        return int(rng.integers(0, clip.frame_count))

    def __len__(self) -> int:
        return len(self.clips) * self.items_per_clip

    def _other_identity_clip(self, rng: np.random.Generator, speaker: int) -> int | None:
        others = np.flatnonzero(self.clip_speaker != speaker)
        return int(rng.choice(others)) if len(others) else None

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        ci = index % len(self.clips)
        clip, cfg = self.clips[ci], self.config
        start = int(rng.integers(0, clip.frame_count - cfg.frames + 1))
        source = self._source(clip)
        frames = read_frames(self.manifest.resolve(source.frames), start, cfg.frames)

        ref_clip_index, cross = ci, False
        if rng.random() < cfg.p_cross:
            other = self._other_identity_clip(rng, self.clip_speaker[ci])
            if other is not None:
                ref_clip_index, cross = other, True
        ref_clip = self.clips[ref_clip_index]
        reference = read_frame(self.manifest.resolve(ref_clip.frames),
                               self._reference_index(rng, ref_clip))

        visemes = np.load(self.manifest.resolve(clip.visemes))
        windows = viseme_windows(visemes, cfg.viseme_context)[start:start + cfg.frames]
        size = clip.size
        boxes = np.zeros((cfg.frames, 4), np.float32)
        if source.mouth_boxes is not None:
            boxes = np.load(self.manifest.resolve(source.mouth_boxes))[start:start + cfg.frames]
        flow = np.zeros((max(cfg.frames - 1, 0), size, size, 2), np.float32)
        if cfg.with_flow and source.flow is not None:
            stored = np.load(self.manifest.resolve(source.flow), mmap_mode="r")
            for k in range(cfg.frames - 1):
                flow[k] = upsample_flow(np.asarray(stored[start + k]), clip.flow_stride)
        audio = self._audio(clip, start)
        return {
            "frames": to_tensor_image(frames),
            "reference": to_tensor_image(reference),
            "ref_cross": torch.tensor(cross),
            "visemes": torch.from_numpy(windows),
            "mouth_boxes": torch.from_numpy(np.ascontiguousarray(boxes, np.float32)),
            "flow": torch.from_numpy(flow).permute(0, 3, 1, 2).contiguous(),
            "audio": torch.from_numpy(audio),
            "identity": torch.tensor(int(self.clip_speaker[ci])),
            "real_texture": torch.tensor(clip.texture == REAL_TEXTURE),
            "ref_identity": torch.tensor(int(self.clip_speaker[ref_clip_index])),
            "clip": torch.tensor(ci),
            "start": torch.tensor(start),
        }

    def _audio(self, clip: ClipRecord, start: int) -> np.ndarray:
        """The audio under the window: [frames * SAMPLE_RATE / fps] float32, zero-padded."""
        per_frame = SAMPLE_RATE // clip.fps
        audio, _ = read_wav(self.manifest.resolve(clip.audio))
        segment = audio[start * per_frame:(start + self.config.frames) * per_frame]
        out = np.zeros(self.config.frames * per_frame, np.float32)
        out[:len(segment)] = segment
        return out
