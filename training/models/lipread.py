"""Lip reader: grey mouth crops of a few frames -> the centre frame's viseme logits.

Trained on ground-truth crops and frozen; ``tsd eval`` compares its accuracy on generated
frames with its accuracy on autoencoder reconstructions of the same clips.
"""

from __future__ import annotations

import torch
from torch import nn

from edge_runtime.visemes.vocabulary import VISEMES
from training.config import LipReaderConfig
from training.models.blocks import conv_encoder, standardise


class LipReader(nn.Module):
    def __init__(self, cfg: LipReaderConfig):
        super().__init__()
        self.config = cfg
        self.net = conv_encoder(cfg.frames, cfg.channels, len(VISEMES))

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """crops: [B, frames, crop, crop] grey in [-1, 1] -> logits [B, len(VISEMES)]."""
        return self.net(standardise(crops))


def crop_windows(crops: torch.Tensor, frames: int) -> torch.Tensor:
    """Per-frame crops of one clip [N, crop, crop] -> windows centred on every frame
    [N, frames, crop, crop], edge frames repeated beyond the clip."""
    half = frames // 2
    index = torch.arange(len(crops))[:, None] + torch.arange(-half, half + 1)[None, :]
    return crops[index.clamp(0, len(crops) - 1)]
