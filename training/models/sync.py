"""Sync expert (SyncNet-style): embeds a log-mel window and a mouth-crop window so that
in-sync pairs are close. Frozen after training; a regulariser and the lip-sync metric."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.config import SyncExpertConfig
from training.models.blocks import conv_encoder, standardise

MEL_CENTRE, MEL_SPREAD = 5.0, 4.0


class SyncExpert(nn.Module):
    def __init__(self, cfg: SyncExpertConfig):
        super().__init__()
        self.config = cfg
        self.audio = conv_encoder(1, cfg.channels, cfg.dim)
        self.video = conv_encoder(cfg.frames, cfg.channels, cfg.dim)

    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """mel: [B, 4 * frames, n_mels] log-mel -> [B, dim] unit vectors."""
        # fixed affine: silence (log 1e-5 = -11.5) and speech (about -4..2) land near [-2, 2];
        # per-window normalisation would erase the loudness that tells silence from speech
        return F.normalize(self.audio((mel[:, None] + MEL_CENTRE) / MEL_SPREAD), dim=1)

    def embed_video(self, crops: torch.Tensor) -> torch.Tensor:
        """crops: [B, frames, crop, crop] grey in [-1, 1] -> [B, dim] unit vectors."""
        return F.normalize(self.video(standardise(crops)), dim=1)

    def video_activations(self, crops: torch.Tensor) -> list[torch.Tensor]:
        """crops as embed_video -> the video trunk's activations after each SiLU (two per
        stage, before the pooling), each unit-normalised over channels [B, C, h, w]."""
        x, out = standardise(crops), []
        for layer in self.video:
            if isinstance(layer, nn.AdaptiveAvgPool2d):
                break
            x = layer(x)
            if isinstance(layer, nn.SiLU):
                out.append(F.normalize(x, dim=1))
        return out


def mouth_crops(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Differentiable crop-and-resize of each image's box, grey.
    images: [N, 3, H, W] in [-1, 1]; boxes: [N, 4] (x0, y0, x1, y1 pixels) -> [N, size, size]."""
    n, _, h, w = images.shape
    cx = (boxes[:, 0] + boxes[:, 2]) / 2 / w * 2 - 1
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 / h * 2 - 1
    sx = (boxes[:, 2] - boxes[:, 0]) / w
    sy = (boxes[:, 3] - boxes[:, 1]) / h
    theta = torch.zeros(n, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, cx, sy, cy
    grid = F.affine_grid(theta, (n, 3, size, size), align_corners=False)
    crops = F.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                          align_corners=False)
    return crops.mean(dim=1)


def sync_distances(video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    """video: [B, D], audio: [B, O, D] (one per offset) -> Euclidean distances [B, O]."""
    return (video[:, None] - audio).norm(dim=-1)
