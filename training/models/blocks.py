"""Building blocks chosen for export: plain 3x3/1x1 convs, SiLU, PixelShuffle; no GroupNorm
(it quantizes and converts badly), residual branches scaled from zero for stable training
without normalisation."""

from __future__ import annotations

import torch
from torch import nn


def conv3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


class ResBlock(nn.Module):
    """x + scale * conv(silu(conv(silu(x)))); scale starts at 0 so a deep stack trains like
    a shallow one without normalisation layers."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = conv3(channels, channels)
        self.conv2 = conv3(channels, channels)
        self.act = nn.SiLU()
        self.scale = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.scale * self.conv2(self.act(self.conv1(self.act(x))))


class UpShuffle(nn.Module):
    """x2 upsampling: 1x1 conv to 4*cout channels, PixelShuffle (DepthToSpace), 3x3 conv.
    Costs far fewer MACs than a 3x3 conv at the high resolution before the shuffle."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.expand = nn.Conv2d(cin, 4 * cout, 1)
        self.shuffle = nn.PixelShuffle(2)
        self.conv = conv3(cout, cout)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.act(self.shuffle(self.expand(x))))
