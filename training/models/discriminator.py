"""Mouth discriminator: is a window of mouth crops a reconstruction of real frames or a
denoiser's output, given the visemes it should show?

A patch discriminator (spectral-normalised stride-2 convs, as latent-diffusion autoencoders
and Wav2Lip's quality critic use) over grey crops of frames t-1..t+1, with a projection
term for frame t's viseme (Miyato and Koyama's projection discriminator), so that a sharp
mouth of the wrong shape does not pass for a real one.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from edge_runtime.visemes.vocabulary import VISEMES
from training.config import AdversaryConfig
from training.models.blocks import standardise


class MouthDiscriminator(nn.Module):
    def __init__(self, cfg: AdversaryConfig):
        super().__init__()
        self.config = cfg
        layers: list[nn.Module] = []
        for a, b in zip((cfg.frames, *cfg.channels[:-1]), cfg.channels):
            layers += [spectral_norm(nn.Conv2d(a, b, 4, stride=2, padding=1)),
                       nn.LeakyReLU(0.2)]
        self.trunk = nn.Sequential(*layers)
        self.patch = spectral_norm(nn.Conv2d(cfg.channels[-1], 1, 3, padding=1))
        self.embed = spectral_norm(nn.Embedding(len(VISEMES), cfg.channels[-1]))

    def forward(self, crops: torch.Tensor, visemes: torch.Tensor) -> torch.Tensor:
        """crops: [B, frames, crop, crop] grey in [-1, 1]; visemes: [B] the centre frame's
        ids -> realness [B] (mean patch score plus the viseme projection)."""
        h = self.trunk(standardise(crops))
        pooled = h.mean(dim=(2, 3))
        return self.patch(h).mean(dim=(1, 2, 3)) + (self.embed(visemes) * pooled).sum(1)
