"""The device graphs as torch modules with their exact I/O contract (static shapes, batch 1).

  reference   image uint8 [H, W, 3] RGB -> ref_latent [1, C, h, w], identity [1, D]
  step        one consistency step: x [1, C, h, w], noise_level [1] (log-SNR), ref_latent,
              identity, visemes int32 [1, W] -> x0 [1, C, h, w]
  generate_K  K steps unrolled with the K-step schedule baked in: noise [1, C, h, w],
              renoise [K-1, C, h, w] (not for K = 1), ref_latent, identity, visemes -> x0
  decoder     latent [1, C, h, w] -> frame uint8 [H, W, 3] RGB (clamp, scale, layout inside)
  visemes     log-mel window [1, W, n_mels] -> viseme logits [1, 15] (the audio recogniser)

Pre- and post-processing live inside the graphs so the runtime only moves arrays. The student
predicts v; abar = sigmoid(log-SNR), so the step graph turns v into x0 without any schedule
code on the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edge_runtime.render.schedule import StepSchedule, log_snr

STEP_INPUTS = ("x", "noise_level", "ref_latent", "identity", "visemes")


def generate_inputs(steps: int) -> tuple[str, ...]:
    """Input names of generate_K: one step needs no re-noising tensor."""
    renoise = ("renoise",) if steps > 1 else ()
    return ("noise", *renoise, "ref_latent", "identity", "visemes")


def _x0_from_v(x: torch.Tensor, level: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    abar = torch.sigmoid(level)[:, None, None, None]  # log-SNR -> alpha_bar
    return abar.sqrt() * x - (1 - abar).sqrt() * v


class ReferenceGraph(nn.Module):
    def __init__(self, autoencoder: nn.Module, identity: nn.Module):
        super().__init__()
        self.autoencoder, self.identity = autoencoder, identity

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = image.permute(2, 0, 1)[None].float() / 127.5 - 1.0
        return self.autoencoder.encode(x), self.identity(x)


class StepGraph(nn.Module):
    def __init__(self, student: nn.Module):
        super().__init__()
        self.student = student

    def forward(self, x, noise_level, ref_latent, identity, visemes) -> torch.Tensor:
        v = self.student(x, noise_level, ref_latent, identity, visemes.long())
        return _x0_from_v(x, noise_level, v)


class GenerateGraph(nn.Module):
    """The K-step sampler of edge_runtime with ``schedule`` as constants."""

    def __init__(self, student: nn.Module, schedule: StepSchedule):
        super().__init__()
        self.step = StepGraph(student)
        self.schedule = schedule
        levels = log_snr(np.asarray(schedule.timesteps))
        self.register_buffer("levels", torch.as_tensor(levels, dtype=torch.float32))

    def forward(self, noise: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        """Inputs in the order of generate_inputs(K)."""
        renoise, (ref_latent, identity, visemes) = (rest[0], rest[1:]) if len(rest) == 4 \
            else (None, rest)
        x = noise
        if self.schedule.start == "reference":
            abar = torch.sigmoid(self.levels[0])
            x = abar.sqrt() * ref_latent + (1 - abar).sqrt() * noise
        x0 = x
        for k in range(self.schedule.steps):
            level = self.levels[k:k + 1]
            x0 = self.step(x, level, ref_latent, identity, visemes)
            if k + 1 < self.schedule.steps:
                abar = torch.sigmoid(self.levels[k + 1])
                x = abar.sqrt() * x0 + (1 - abar).sqrt() * renoise[k:k + 1]
        return x0


class DecoderGraph(nn.Module):
    def __init__(self, autoencoder: nn.Module):
        super().__init__()
        self.autoencoder = autoencoder

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        image = self.autoencoder.decode(latent).clamp(-1.0, 1.0)
        pixels = torch.round((image[0] + 1.0) * 127.5).permute(1, 2, 0)
        return pixels.to(torch.uint8)


@dataclass(frozen=True)
class GraphDef:
    """A graph to export: module, example inputs (real ones for the parity check) and names."""

    name: str
    module: nn.Module
    inputs: dict[str, torch.Tensor]
    outputs: tuple[str, ...]
