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


def conv_encoder(cin: int, channels: tuple[int, ...], dim: int) -> nn.Sequential:
    """Classifier/embedding trunk -> [B, dim]: per stage a stride-2 and a stride-1 3x3 conv,
    each with BatchNorm and SiLU, then global average pooling and a linear layer. These
    networks are frozen judges (and small graphs where exported), so BatchNorm is fine here:
    it folds into the convs, and without it they learned many times slower."""
    layers: list[nn.Module] = []
    for a, b in zip((cin, *channels[:-1]), channels):
        layers += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.BatchNorm2d(b), nn.SiLU(),
                   conv3(b, b), nn.BatchNorm2d(b), nn.SiLU()]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels[-1], dim)]
    return nn.Sequential(*layers)


def standardise(crops: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit contrast per window [B, frames, h, w]: skin tone and lighting vary far
    more than mouth shapes do, and would otherwise dominate the first layers."""
    mean = crops.mean(dim=(1, 2, 3), keepdim=True)
    std = crops.std(dim=(1, 2, 3), keepdim=True)
    return (crops - mean) / (std + 0.05)
