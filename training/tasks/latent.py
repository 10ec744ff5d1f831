"""What the teacher and student trainers share: conditioning, per-frame prediction and the
pixel-space regularisers of eq 10/11 on decoded predictions."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from training.config import WindowConfig
from training.data.dataset import TalkingFaceDataset
from training.data.manifest import Manifest
from training.diffusion.samplers import noise_level
from training.errors import UserError
from training.losses import (
    box_mask,
    identity_loss,
    masked_l1,
    motion_gap,
    mouth_motion_gap,
    moving_outside_mouth,
    outside_mouth_change,
    temporal_loss,
)
from training.models.autoencoder import LATENT_LIMIT
from training.models.loading import load_frozen
from training.tasks.sync import sync_feature_gap, sync_loss


def load_autoencoder(path: str, latent_channels: int) -> nn.Module:
    """The frozen autoencoder at ``path``, refused unless its latent width is the
    denoiser's ``latent_channels``."""
    autoencoder = load_frozen(path, "autoencoder")
    channels = autoencoder.config.latent_channels
    if latent_channels != channels:
        raise UserError(f"model.latent_channels is {latent_channels}, but the autoencoder "
                        f"{path} has {channels} latent channels")
    return autoencoder


class LatentTask:
    """Holds the frozen autoencoder and identity encoder and the datasets; ``latent_channels``
    is the denoiser's latent width, refused unless it is the autoencoder's. ``chin``: score
    the real-texture windows' moving jaw (``chin_motion``) and keep it out of ``leak``."""

    def __init__(self, autoencoder: str, identity_encoder: str, latent_channels: int,
                 window: WindowConfig, manifest: Manifest, seed: int, items_per_clip: int,
                 sync_expert: str | None = None, chin: bool = False):
        self.chin = chin
        self.autoencoder = load_autoencoder(autoencoder, latent_channels)
        self.identity = load_frozen(identity_encoder, "identity encoder")
        self.sync = load_frozen(sync_expert, "sync expert") if sync_expert else None
        if self.sync is not None and window.frames < self.sync.config.frames:
            raise UserError(f"the sync term needs windows of >= {self.sync.config.frames} "
                            f"frames (the expert's), got window.frames = {window.frames}")
        self.train_set = TalkingFaceDataset(manifest, "train", window, seed, items_per_clip)
        val_window = dataclasses.replace(window, p_cross=0.0)
        self.val_set = TalkingFaceDataset(manifest, "val", val_window, seed + 1, 2)

    def to(self, device: torch.device) -> None:
        """Moves the frozen networks to the trainer's device (the model moves itself)."""
        for net in (self.autoencoder, self.identity, self.sync):
            if net is not None:
                net.to(device)

    def condition(self, batch: dict):
        """-> z0 [B, T, C, h, w], ref latent [B, C, h, w], identity [B, D] (no gradients)."""
        frames = batch["frames"]
        b, t = frames.shape[:2]
        with torch.no_grad():
            z0 = self.autoencoder.encode(frames.flatten(0, 1)).unflatten(0, (b, t))
            ref = self.autoencoder.encode(batch["reference"])
            ident = self.identity(batch["reference"])
        return z0, ref, ident

    @staticmethod
    def predict(model: nn.Module, x: torch.Tensor, t: torch.Tensor, ref: torch.Tensor,
                ident: torch.Tensor, visemes: torch.Tensor) -> torch.Tensor:
        """x: [B, T, C, h, w], t: [B] (shared by the frames of a sample) -> [B, T, C, h, w]."""
        b, n = x.shape[:2]

        def rep(v: torch.Tensor) -> torch.Tensor:
            return v.repeat_interleave(n, dim=0)

        out = model(x.flatten(0, 1), noise_level(rep(t)), rep(ref), rep(ident),
                    visemes.flatten(0, 1))
        return out.unflatten(0, (b, n))

    def regularisers(self, x0: torch.Tensor, batch: dict,
                     ident: torch.Tensor) -> dict[str, torch.Tensor]:
        """Decode x0 [B, T, C, h, w] once and score each sample ([B] each): identity (eq 8,
        first frame vs the reference embedding), the flow-warped temporal difference (eq 9),
        mouth-box L1 against the ground truth, the frame-to-frame change outside the mouth boxes
        that the ground truth does not have (``leak``: where x_t says nothing of the head's
        motion, its best value is no change, so it stops viseme changes moving the rest of
        the face), how much more or less the mouth moves than the truth's
        (``mouth_motion``), with ``chin`` the same for the pixels outside the mouth boxes
        that move in a real-texture window's truth (``chin_motion``; ``leak`` then leaves
        them out: with the timing uncertain its best answer there is a still jaw), and with
        a sync expert the sync term and ``mouth_feature``, the distance between its
        activations on the decoded and the true mouth windows."""
        b, n = x0.shape[:2]
        z = x0.flatten(0, 1).clamp(-LATENT_LIMIT, LATENT_LIMIT)
        image = self.autoencoder.decode(z).unflatten(0, (b, n))
        frames = batch["frames"]
        mask = box_mask(batch["mouth_boxes"].flatten(0, 1), *frames.shape[-2:])
        mouth = masked_l1(image.flatten(0, 1), frames.flatten(0, 1), mask, per_sample=True)
        masks = mask.unflatten(0, (b, n))
        moving = (moving_outside_mouth(frames, masks, batch["real_texture"]) if self.chin
                  else None)
        terms = {"identity": identity_loss(self.identity(image[:, 0]), ident),
                 "temporal": temporal_loss(image, batch["flow"], per_sample=True),
                 "mouth": mouth.view(b, n).mean(1),
                 "leak": outside_mouth_change(image, frames, masks, moving),
                 "mouth_motion": mouth_motion_gap(image, frames, masks)}
        if moving is not None:
            terms["chin_motion"] = motion_gap(image, frames, moving)
        if self.sync is not None:
            terms["sync"] = sync_loss(self.sync, image, batch["mouth_boxes"], batch["audio"])
            terms["mouth_feature"] = sync_feature_gap(self.sync, image, frames,
                                                      batch["mouth_boxes"])
        return terms
