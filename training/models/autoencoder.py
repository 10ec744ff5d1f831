"""The latent autoencoder (paper eq 2): f=8, 128x128x3 <-> Cx16x16 (C latent channels).

The encoder runs once per reference photo (and in training); the decoder runs on the Pi
every frame in E1 mode, so it is small: PixelShuffle upsampling and one 3x3 conv per
resolution (about 0.17 GMAC at the default widths; counted by tests/test_autoencoder.py).
``latent_scale`` makes the latents unit-variance for diffusion; it is measured on the
training set after training and saved with the weights.
"""

from __future__ import annotations

import torch
from torch import nn

from training.config import AutoencoderConfig
from training.models.blocks import ResBlock, UpShuffle, conv3

LATENT_LIMIT = 6.0
"""Scaled latents of real frames stay within +-4 (unit variance); a predicted x0 is clamped
to +-LATENT_LIMIT before it is decoded or used as a sample, so one wild estimate (eps
prediction divides by sqrt(abar), about 0.003 at the noisiest time) cannot blow up."""


class Encoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        ch = cfg.enc_channels
        layers: list[nn.Module] = [conv3(3, ch[0])]
        for cin, cout in zip(ch[:-1], ch[1:]):
            layers += [nn.SiLU(), conv3(cin, cout, stride=2), ResBlock(cout)]
        layers += [ResBlock(ch[-1]), nn.SiLU(), conv3(ch[-1], cfg.latent_channels)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, H, W] in [-1, 1] -> z: [B, C, H/8, W/8] (unscaled)."""
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        ch = cfg.dec_channels
        layers: list[nn.Module] = [conv3(cfg.latent_channels, ch[0])]
        layers += [ResBlock(ch[0]) for _ in range(cfg.dec_res_blocks)]
        for cin, cout in zip(ch[:-1], ch[1:]):
            layers += [nn.SiLU(), UpShuffle(cin, cout)]
        layers += [nn.SiLU(), conv3(ch[-1], 3)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z: [B, C, h, w] (unscaled) -> x: [B, 3, 8h, 8w], about [-1, 1]."""
        return self.net(z)


class Autoencoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        if len(cfg.enc_channels) != 4 or len(cfg.dec_channels) != 4:
            raise ValueError("f=8 needs 4 encoder and 4 decoder widths (3 resolution changes)")
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.register_buffer("latent_scale", torch.ones(()))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> scaled latent [B, 4, H/8, W/8] (about unit variance)."""
        return self.encoder(x) * self.latent_scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latent -> image [B, 3, H, W]."""
        return self.decoder(z / self.latent_scale)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (reconstruction, unscaled latent)."""
        z = self.encoder(x)
        return self.decoder(z), z
