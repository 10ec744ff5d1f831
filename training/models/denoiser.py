"""The latent denoiser (teacher and student share it; only the widths differ).

Inputs (batch B, latent C x h x w = C x 16 x 16 at 128 px, C = 4 or 8, W = 2 * viseme_context + 1):
  x_t [B, C, h, w]       noisy latent
  noise_level [B]        log-SNR of the time (edge_runtime.render.schedule.log_snr), so the schedule
                         math stays in one numpy module and the graph needs none of it
  ref [B, C, h, w]       reference latent, concatenated with x_t (who to look like)
  identity [B, D_id]     identity embedding of the reference (FiLM; eq 8's anchor)
  visemes [B, W] int64   viseme tokens t-c..t+c around the frame (how to move the mouth)
Output: eps [B, C, h, w] (the teacher's eps-prediction, eq 4) or v [B, C, h, w] (the
student's; x0 = sqrt(abar) x_t - sqrt(1 - abar) v), as PREDICTION says.

Reference-centred: the network sees y = x_t - sqrt(abar) ref, the forward process of the
residual r0 = z0 - ref (y = sqrt(abar) r0 + sqrt(1 - abar) eps), and its output F adds to
a skip term chosen so that F = 0 predicts x0 = ref + sqrt(abar) y (the posterior mean of a
unit-variance residual). A talking face is its reference plus a small change around the
mouth: an untrained or under-trained denoiser then still returns a sharp reference instead of
a blur, and training spends its capacity on the mouth. The output keeps its meaning (eps or
v of x_t), so samplers, schedules and the device graphs need nothing new.

The conditioning vector (time + identity + visemes) modulates every residual block with
FiLM. With ``viseme_gate`` the visemes get a FiLM of their own, weighted per position by a
learned gate, so they can move the mouth and leave the rest of the face alone. No GroupNorm
(export); residual branches start at zero.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from edge_runtime.visemes.vocabulary import NUM_VISEMES
from training.config import DenoiserConfig
from training.models.blocks import conv3

PREDICTION: dict[str, Literal["eps", "v"]] = {"teacher": "eps", "student": "v"}
"""What each role's denoiser predicts."""


def fourier_features(x: torch.Tensor, dim: int) -> torch.Tensor:
    """log-SNR [B] -> [B, dim] sin/cos features at geometric frequencies."""
    half = dim // 2
    freqs = torch.exp(torch.linspace(0, math.log(64.0), half, device=x.device))
    angles = x[:, None] / 4 * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class Conditioning(nn.Module):
    """(noise level, identity, visemes) -> (global [B, cond_dim], mouth [B, cond_dim] or None).

    Ungated, the visemes join the global vector; gated, they get a vector of their own that
    the blocks apply through a spatial gate."""

    def __init__(self, cfg: DenoiserConfig):
        super().__init__()
        d = cfg.cond_dim
        self.time = nn.Sequential(nn.Linear(cfg.time_features, d), nn.SiLU(), nn.Linear(d, d))
        self.identity = nn.Linear(cfg.identity_dim, d)
        self.viseme = nn.Embedding(NUM_VISEMES, cfg.viseme_dim)
        self.viseme_position = nn.Parameter(torch.zeros(cfg.viseme_window, cfg.viseme_dim))
        self.visemes = nn.Sequential(nn.Linear(cfg.viseme_window * cfg.viseme_dim, d), nn.SiLU(),
                                     nn.Linear(d, d))
        self.time_features, self.gated = cfg.time_features, cfg.viseme_gate

    def forward(self, noise_level: torch.Tensor, identity: torch.Tensor, visemes: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        time = self.time(fourier_features(noise_level, self.time_features))
        tokens = self.visemes((self.viseme(visemes) + self.viseme_position).flatten(1))
        if self.gated:
            return F.silu(time + self.identity(identity)), F.silu(time + tokens)
        return F.silu(time + self.identity(identity) + tokens), None


class FiLMBlock(nn.Module):
    """x + scale * conv(silu(FiLM(conv(silu(x)), cond))); gated, plus a second FiLM from the
    viseme vector weighted per position by sigmoid(1x1 conv(x))."""

    def __init__(self, channels: int, cond_dim: int, gated: bool):
        super().__init__()
        self.conv1 = conv3(channels, channels)
        self.conv2 = conv3(channels, channels)
        self.film = nn.Linear(cond_dim, 2 * channels)
        self.scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.mouth_film = nn.Linear(cond_dim, 2 * channels) if gated else None
        self.gate = nn.Conv2d(channels, 1, 1) if gated else None

    def forward(self, x: torch.Tensor, cond: torch.Tensor, mouth: torch.Tensor | None
                ) -> torch.Tensor:
        gamma, beta = self.film(cond)[:, :, None, None].chunk(2, dim=1)
        h = self.conv1(F.silu(x))
        if mouth is not None:
            gate = torch.sigmoid(self.gate(x))  # [B, 1, h, w]
            mouth_gamma, mouth_beta = self.mouth_film(mouth)[:, :, None, None].chunk(2, dim=1)
            gamma, beta = gamma + gate * mouth_gamma, beta + gate * mouth_beta
        h = h * (1 + gamma) + beta
        return x + self.scale * self.conv2(F.silu(h))


class Denoiser(nn.Module):
    """A small UNet over the latent grid: len(channels) resolutions, skip connections."""

    def __init__(self, cfg: DenoiserConfig, prediction: Literal["eps", "v"]):
        super().__init__()
        if prediction not in ("eps", "v"):
            raise ValueError(f"prediction must be 'eps' or 'v', got {prediction!r}")
        self.config, self.prediction = cfg, prediction
        ch, d, n = cfg.channels, cfg.cond_dim, cfg.blocks_per_level
        self.cond = Conditioning(cfg)
        self.inp = conv3(2 * cfg.latent_channels, ch[0])
        self.down_blocks = nn.ModuleList(
            nn.ModuleList(FiLMBlock(c, d, cfg.viseme_gate) for _ in range(n)) for c in ch)
        self.downsample = nn.ModuleList(conv3(a, b, stride=2) for a, b in zip(ch[:-1], ch[1:]))
        self.upsample = nn.ModuleList(conv3(b, a) for a, b in zip(ch[:-1], ch[1:]))
        self.up_blocks = nn.ModuleList(
            nn.ModuleList(FiLMBlock(c, d, cfg.viseme_gate) for _ in range(n))
            for c in ch[:-1])
        self.out = conv3(ch[0], cfg.latent_channels)

    def forward(self, x: torch.Tensor, noise_level: torch.Tensor, ref: torch.Tensor,
                identity: torch.Tensor, visemes: torch.Tensor) -> torch.Tensor:
        cond, mouth = self.cond(noise_level, identity, visemes)
        abar = torch.sigmoid(noise_level)[:, None, None, None]  # log-SNR -> alpha_bar
        y = x - abar.sqrt() * ref
        out = self._unet(y, ref, cond, mouth)
        if self.prediction == "eps":
            return out + (1 - abar).sqrt() * y
        return out - (1 - abar).sqrt() * ref

    def _unet(self, y: torch.Tensor, ref: torch.Tensor, cond: torch.Tensor,
              mouth: torch.Tensor | None) -> torch.Tensor:
        h = self.inp(torch.cat([y, ref], dim=1))
        skips = []
        for level, blocks in enumerate(self.down_blocks):
            for block in blocks:
                h = block(h, cond, mouth)
            if level < len(self.downsample):
                skips.append(h)
                h = self.downsample[level](F.silu(h))
        for level in reversed(range(len(self.up_blocks))):
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = self.upsample[level](F.silu(h)) + skips[level]
            for block in self.up_blocks[level]:
                h = block(h, cond, mouth)
        return self.out(F.silu(h))
