"""The held render's latents, encoded once per dataset split and kept on disk.

The student's regression stage (``tsd train student-regress``) learns from single frames: the
held render's latent, the clip's reference latent and identity embedding, and the frame's
viseme window. Encoding a 128 px frame costs more than the student's training step on it,
so every frame is encoded once and the split is kept in one ``.npz`` named by a digest of
the manifest, the split, the viseme context and the two encoders' files: any change to
them encodes again, and nothing stale is read.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from edge_runtime.bundle import sha256_file
from training.atomic import atomic_path
from training.data.dataset import to_tensor_image, viseme_windows
from training.data.manifest import REAL_TEXTURE, ClipRecord, Manifest
from training.data.media import read_frame, read_frames
from training.errors import UserError

log = logging.getLogger(__name__)

ENCODE_BATCH = 64
"""Frames encoded at once (bounded memory for long clips)."""


@dataclass(frozen=True)
class HeldLatents:
    """One split's frames (N) from its clips (K), latent grid [C, h, w]."""

    z: np.ndarray
    """[N, C, h, w] float16: the held render's latent of each frame."""
    mouth: np.ndarray
    """[N, h, w] bool: the latent cells under the frame's held mouth box, one cell of margin."""
    visemes: np.ndarray
    """[N, 2 * context + 1] int64: the frame's viseme window."""
    clip: np.ndarray
    """[N] int64: the frame's clip (index into ``ref``, ``identity``, ``real``, ``ids``)."""
    ref: np.ndarray
    """[K, C, h, w] float16: the latent of each clip's reference (its last frame, the pose
    the held render holds)."""
    identity: np.ndarray
    """[K, D] float32: the identity embedding of each clip's reference."""
    real: np.ndarray
    """[K] bool: the clip is real-texture (ClipRecord.texture)."""
    ids: np.ndarray
    """[K] str: clip ids."""

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **{k: getattr(self, k) for k in self.__dataclass_fields__})

    @classmethod
    def load(cls, path: Path) -> HeldLatents:
        with np.load(path) as data:
            return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def mouth_cells(boxes: np.ndarray, cell: float, grid: int) -> np.ndarray:
    """Mouth boxes [N, 4] (x0, y0, x1, y1 in pixels) -> [N, grid, grid] bool: the cells whose
    centre lies within the box grown by one cell on every side."""
    centres = (np.arange(grid) + 0.5)[None] * cell
    inside_x = (centres >= boxes[:, 0:1] - cell) & (centres <= boxes[:, 2:3] + cell)
    inside_y = (centres >= boxes[:, 1:2] - cell) & (centres <= boxes[:, 3:4] + cell)
    return inside_y[:, :, None] & inside_x[:, None, :]


def cache_path(folder: Path, manifest: Manifest, split: str, context: int,
               encoders: tuple[Path, Path]) -> Path:
    """Where the split's latents live: named by what they are a function of."""
    digest = hashlib.sha256(f"{split}:{context}".encode())
    for path in (manifest.path, *encoders):
        digest.update(sha256_file(path).encode())
    return folder / f"held-latents-{split}-{digest.hexdigest()[:16]}.npz"


@torch.no_grad()
def _encode_clip(clip: ClipRecord, manifest: Manifest, autoencoder: nn.Module,
                 identity: nn.Module, context: int) -> tuple:
    frames = read_frames(manifest.resolve(clip.held_frames), 0, clip.frame_count)
    z = torch.cat([autoencoder.encode(to_tensor_image(frames[i:i + ENCODE_BATCH]))
                   for i in range(0, len(frames), ENCODE_BATCH)])
    reference = to_tensor_image(read_frame(manifest.resolve(clip.frames),
                                           clip.frame_count - 1))[None]
    boxes = np.load(manifest.resolve(clip.held_mouth_boxes))[:clip.frame_count]
    cell = clip.size / z.shape[-1]
    windows = viseme_windows(np.load(manifest.resolve(clip.visemes)), context)
    return (z.numpy().astype(np.float16), mouth_cells(boxes, cell, z.shape[-1]),
            windows[:clip.frame_count], autoencoder.encode(reference)[0].numpy(),
            identity(reference)[0].numpy())


def encode_split(manifest: Manifest, split: str, autoencoder: nn.Module, identity: nn.Module,
                 context: int) -> HeldLatents:
    """Every frame of the split's held renders -> HeldLatents."""
    clips = manifest.split(split)
    missing = [c.id for c in clips if not (c.held_frames and c.held_mouth_boxes)]
    if missing:
        raise UserError(f"{manifest.path}: clip {missing[0]} (and {len(missing) - 1} more) has "
                        "no held render, which the regression stage learns from; re-run "
                        "tsd data synth or tsd data real on the dataset")
    if not clips:
        raise UserError(f"{manifest.path}: no clips in split {split!r}")
    parts = [_encode_clip(c, manifest, autoencoder, identity, context)
             for c in tqdm(clips, desc=f"encode {split}", unit="clip")]
    return HeldLatents(
        z=np.concatenate([p[0] for p in parts]), mouth=np.concatenate([p[1] for p in parts]),
        visemes=np.concatenate([p[2] for p in parts]).astype(np.int64),
        clip=np.concatenate([np.full(len(p[0]), k) for k, p in enumerate(parts)]),
        ref=np.stack([p[3] for p in parts]).astype(np.float16),
        identity=np.stack([p[4] for p in parts]).astype(np.float32),
        real=np.array([c.texture == REAL_TEXTURE for c in clips]),
        ids=np.array([c.id for c in clips]))


def held_latents(manifest: Manifest, split: str, autoencoder: tuple[Path, nn.Module],
                 identity: tuple[Path, nn.Module], context: int, folder: Path) -> HeldLatents:
    """The split's latents from ``folder`` when cached there, else encoded and cached."""
    path = cache_path(folder, manifest, split, context, (autoencoder[0], identity[0]))
    if path.is_file():
        log.info("held latents of %s from %s", split, path)
        return HeldLatents.load(path)
    latents = encode_split(manifest, split, autoencoder[1], identity[1], context)
    latents.save(path)
    log.info("held latents of %s (%d frames) cached in %s", split, len(latents.z), path)
    return latents


class HeldLatentFrames(Dataset):
    """Frames of HeldLatents drawn at random, each item a pure function of (seed, index).

    ``real_share``: the share of draws from real-texture clips when the split has both kinds
    (None: every frame alike), so that a few real faces are not drowned by many synthetic
    ones. Item: z0 [C, h, w]; reference [C, h, w]; identity [D]; visemes [2k+1]; mouth
    [h, w] float (1 under the mouth)."""

    def __init__(self, latents: HeldLatents, seed: int, real_share: float | None = None):
        self.latents, self.seed = latents, seed
        weight = np.ones(len(latents.z))
        real = latents.real[latents.clip]
        if real_share is not None and real.any() and not real.all():
            weight = np.where(real, real_share / real.sum(), (1 - real_share) / (~real).sum())
        self.cumulative = np.cumsum(weight / weight.sum())

    def __len__(self) -> int:
        return len(self.latents.z)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        frame = min(int(np.searchsorted(self.cumulative, rng.random(), side="right")),
                    len(self.cumulative) - 1)
        lat, clip = self.latents, int(self.latents.clip[frame])
        return {"z0": torch.from_numpy(lat.z[frame].astype(np.float32)),
                "reference": torch.from_numpy(lat.ref[clip].astype(np.float32)),
                "identity": torch.from_numpy(lat.identity[clip]),
                "visemes": torch.from_numpy(lat.visemes[frame]),
                "mouth": torch.from_numpy(lat.mouth[frame].astype(np.float32))}
