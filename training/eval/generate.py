"""Generate a whole clip's latents with each method under evaluation.

A clip is one stream: its frames share one start noise and one set of re-noising noises (the
runtime does the same), and every frame is generated independently from the reference and
its own viseme window, as on the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edge_runtime.render.schedule import StepSchedule, uniform_schedule
from training.diffusion.samplers import (
    consistency_sample,
    ddim_sample,
    eps_to_x0,
    q_sample,
    start_latent,
)
from training.tasks.latent import LatentTask
from training.tasks.student import student_x0

MAX_RENOISE = 8
"""Re-noising tensors drawn per stream: enough for any schedule up to 9 steps."""


@dataclass(frozen=True)
class Condition:
    """A clip's conditioning and target latents (frames batched as one stream, B = 1)."""

    z0: torch.Tensor
    """Latents of the ground-truth frames [1, N, C, h, w]."""
    ref: torch.Tensor
    """Reference latent [1, C, h, w]."""
    ident: torch.Tensor
    """Identity embedding of the reference [1, D]."""
    visemes: torch.Tensor
    """Viseme windows [1, N, 2 * context + 1]."""


@dataclass(frozen=True)
class StreamNoise:
    start: torch.Tensor
    """[1, 1, C, h, w], broadcast over the frames."""
    renoise: torch.Tensor
    """[MAX_RENOISE, 1, 1, C, h, w]."""

    @classmethod
    def draw(cls, latent_shape: tuple[int, ...], seed: int) -> StreamNoise:
        generator = torch.Generator().manual_seed(seed)
        start = torch.randn((1, 1, *latent_shape), generator=generator)
        renoise = torch.randn((MAX_RENOISE, 1, 1, *latent_shape), generator=generator)
        return cls(start, renoise)


def condition(autoencoder: nn.Module, identity: nn.Module, frames: torch.Tensor,
              reference: torch.Tensor, visemes: torch.Tensor) -> Condition:
    """frames [N, 3, H, W], reference [3, H, W], visemes [N, 2c+1] -> Condition."""
    with torch.no_grad():
        z0 = autoencoder.encode(frames)[None]
        ref = autoencoder.encode(reference[None])
        ident = identity(reference[None])
    return Condition(z0, ref, ident, visemes[None])


def _frames(noise: torch.Tensor, cond: Condition) -> torch.Tensor:
    return noise.expand_as(cond.z0)


def teacher_ddim(teacher: nn.Module, cond: Condition, noise: StreamNoise, steps: int
                 ) -> torch.Tensor:
    """Deterministic DDIM from pure noise in ``steps`` uniform steps -> [N, C, h, w]."""
    def eps_model(x, t):
        return LatentTask.predict(teacher, x, t, cond.ref, cond.ident, cond.visemes)

    x = ddim_sample(eps_model, _frames(noise.start, cond), uniform_schedule(steps))
    return x[0]


@torch.no_grad()
def student_sample(student: nn.Module, cond: Condition, noise: StreamNoise,
                   schedule: StepSchedule) -> torch.Tensor:
    """Multistep consistency sampling -> [N, C, h, w], starting where ``schedule.start``
    says (pure noise or the noised reference latent)."""
    start = start_latent(_frames(noise.start, cond), schedule, cond.ref[:, None])
    renoise = noise.renoise.expand(-1, -1, cond.z0.shape[1], -1, -1, -1)

    def f(x, t):
        return student_x0(student, x, t, cond.ref, cond.ident, cond.visemes)

    return consistency_sample(f, start, schedule, renoise)[0]


@torch.no_grad()
def one_step(kind: str, model: nn.Module | None, cond: Condition, noise: StreamNoise,
             t: float) -> torch.Tensor:
    """Table 1: the clip's latents noised to time t with the stream's noise, then either left
    as they are (``noisy``) or denoised in one model call (``teacher``: eps -> x0;
    ``student``: its consistency function) -> [N, C, h, w]."""
    times = torch.full((1,), float(t))
    x = q_sample(cond.z0, times[:, None], _frames(noise.start, cond))
    if kind == "noisy":
        return x[0]
    if kind == "teacher":
        eps = LatentTask.predict(model, x, times, cond.ref, cond.ident, cond.visemes)
        return eps_to_x0(x, times[:, None], eps)[0]
    if kind == "student":
        return student_x0(model, x, times, cond.ref, cond.ident, cond.visemes)[0]
    raise ValueError(f"unknown one-step method {kind!r}")
