"""Identity encoder (eq 8): a small CNN -> unit-length embedding; frozen after training."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.config import IdentityEncoderConfig
from training.models.blocks import ResBlock, conv3


class IdentityEncoder(nn.Module):
    def __init__(self, cfg: IdentityEncoderConfig):
        super().__init__()
        layers: list[nn.Module] = [conv3(3, cfg.channels[0], stride=2)]
        for cin, cout in zip(cfg.channels[:-1], cfg.channels[1:]):
            layers += [ResBlock(cin), nn.SiLU(), conv3(cin, cout, stride=2)]
        layers += [ResBlock(cfg.channels[-1]), nn.SiLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cfg.channels[-1], cfg.dim)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> [B, dim], L2-normalised."""
        pooled = self.features(image).mean(dim=(2, 3))
        return F.normalize(self.head(pooled), dim=1)
