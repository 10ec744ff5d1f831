"""Samplers take (model, x, schedule): the schedule is explicit data (edge_runtime.render.schedule).

Models are closures over their conditioning: ``eps_model(x, t) -> eps`` for the teacher,
``x0_model(x, t) -> x0`` for consistency sampling. ``t`` is a float tensor [B] in (0, 1).
Latents are [B, C, h, w].
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from edge_runtime.render.schedule import StepSchedule, alpha_bar, log_snr
from training.models.autoencoder import LATENT_LIMIT

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def abar(t: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """alpha_bar(t) as a tensor broadcastable against ``like`` ([B] -> [B, 1, 1, 1])."""
    t_np = t.detach().cpu().numpy() if torch.is_tensor(t) else t
    value = torch.as_tensor(alpha_bar(t_np), dtype=like.dtype, device=like.device)
    return value.reshape(-1, *([1] * (like.dim() - 1))) if value.dim() else value


def q_sample(x0: torch.Tensor, t: torch.Tensor | float, eps: torch.Tensor) -> torch.Tensor:
    """Forward process (eq 3): sqrt(abar) x0 + sqrt(1 - abar) eps."""
    a = abar(t, x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * eps


def eps_to_x0(x: torch.Tensor, t: torch.Tensor | float, eps: torch.Tensor) -> torch.Tensor:
    a = abar(t, x)
    return (x - (1 - a).sqrt() * eps) / a.sqrt()


def x0_to_eps(x: torch.Tensor, t: torch.Tensor | float, x0: torch.Tensor) -> torch.Tensor:
    a = abar(t, x)
    return (x - a.sqrt() * x0) / (1 - a).sqrt()


def noise_level(t: torch.Tensor) -> torch.Tensor:
    """Times [B] -> the denoiser's noise-level input, log-SNR [B] (schedule math in numpy)."""
    return torch.as_tensor(log_snr(t.detach().cpu().numpy()), dtype=t.dtype, device=t.device)


def v_to_x0(x: torch.Tensor, t: torch.Tensor | float, v: torch.Tensor) -> torch.Tensor:
    """v-parameterisation (v = sqrt(abar) eps - sqrt(1 - abar) x0): x0 without dividing by
    sqrt(abar), so it stays stable at the noisiest times, and x0 = x exactly at t = 0."""
    a = abar(t, x)
    return a.sqrt() * x - (1 - a).sqrt() * v


def batch_t(t: float, x: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0],), float(t), dtype=x.dtype, device=x.device)


def start_latent(noise: torch.Tensor, schedule: StepSchedule,
                 reference: torch.Tensor) -> torch.Tensor:
    """x at the first time of the schedule: pure noise, or with ``schedule.start ==
    "reference"`` the reference latent (broadcast like ``noise``) noised to that time."""
    if schedule.start == "noise":
        return noise
    return q_sample(reference.expand_as(noise), schedule.timesteps[0], noise)


def ddim_step(x: torch.Tensor, t, t_next, eps: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """One deterministic DDIM step (eta = 0) from time t to t_next -> (x at t_next, x0).

    The x0 estimate is clamped to the latent range and eps re-derived from it: at T_MAX,
    eps -> x0 multiplies the model's error by 1/sqrt(abar) (about 300), and unclamped the
    first steps of a 50-step run threw the sample to |z| ~ 100."""
    x0 = eps_to_x0(x, t, eps).clamp(-LATENT_LIMIT, LATENT_LIMIT)
    eps = x0_to_eps(x, t, x0)
    a_next = abar(t_next, x)
    return a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps, x0


@torch.no_grad()
def ddim_sample(eps_model: Model, x: torch.Tensor, schedule: StepSchedule) -> torch.Tensor:
    """Deterministic DDIM from x at timesteps[0] down to t = 0 -> x0."""
    times = list(schedule.timesteps) + [0.0]
    for t, t_next in zip(times[:-1], times[1:]):
        x, _ = ddim_step(x, t, t_next, eps_model(x, batch_t(t, x)))
    return x


@torch.no_grad()
def consistency_sample(x0_model: Model, x: torch.Tensor, schedule: StepSchedule,
                       renoise: torch.Tensor) -> torch.Tensor:
    """Multistep consistency sampling: predict x0, re-noise to the next time, repeat.

    renoise: [>= K-1, *x.shape], an independent noise for each re-noising step (reusing one
    noise correlates it with the prediction and skews the samples; see the tests). A stream
    fixes these noises once and shares them across frames, so frames differ only by their
    conditioning: no noise-induced flicker.
    """
    if schedule.steps > 1 and renoise.shape[0] < schedule.steps - 1:
        raise ValueError(f"{schedule.steps} steps need {schedule.steps - 1} re-noise tensors, "
                         f"got {renoise.shape[0]}")
    x0 = x
    for k, t in enumerate(schedule.timesteps):
        x0 = x0_model(x, batch_t(t, x))
        if k + 1 < schedule.steps:
            x = q_sample(x0, schedule.timesteps[k + 1], renoise[k])
    return x0
