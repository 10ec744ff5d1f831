"""Schedules and samplers on Gaussian data, where the exact denoiser is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_runtime.render.schedule import T_MAX, StepSchedule, alpha_bar, log_snr, uniform_schedule
from training.diffusion.samplers import (
    abar,
    consistency_sample,
    ddim_sample,
    eps_to_x0,
    q_sample,
    x0_to_eps,
)

MU, S = 0.7, 0.3  # data ~ N(MU, S^2) per element


def exact_eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Posterior-mean denoiser of Gaussian data, as an eps-prediction."""
    a = abar(t, x)
    x0 = MU + a.sqrt() * S**2 / (a * S**2 + 1 - a) * (x - a.sqrt() * MU)
    return x0_to_eps(x, t, x0)


def exact_consistency(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Maps any point of a probability-flow ODE trajectory to its origin (Gaussian data)."""
    a = abar(t, x)
    return MU + S * (x - a.sqrt() * MU) / (a * S**2 + 1 - a).sqrt()


def test_cosine_schedule_endpoints_and_monotone():
    t = np.linspace(0, 1, 101)
    ab = alpha_bar(t)
    assert ab[0] == pytest.approx(1.0) and ab[-1] < 1e-4 and np.all(np.diff(ab) < 0)
    assert np.all(np.diff(log_snr(t[:-1])) < 0)


def test_step_schedule_validation_and_round_trip():
    s = uniform_schedule(4)
    assert s.timesteps == pytest.approx((T_MAX, 0.75 * T_MAX, 0.5 * T_MAX, 0.25 * T_MAX))
    assert StepSchedule.from_dict(s.to_dict()) == StepSchedule(
        tuple(round(t, 6) for t in s.timesteps))
    for bad in ((), (0.5, 0.7), (1.5, 0.2), (0.5, 0.0)):
        with pytest.raises(ValueError):
            StepSchedule(bad)
    ref = uniform_schedule(2, 0.6, "reference")
    assert ref.timesteps == pytest.approx((0.6, 0.3))
    assert StepSchedule.from_dict(ref.to_dict()) == ref
    assert StepSchedule.from_dict({"timesteps": [0.5]}).start == "noise"
    with pytest.raises(ValueError, match="start must be one of"):
        StepSchedule((0.5,), "image")


def test_forward_process_and_parameterisations_invert():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(4, 4, 8, 8, generator=g), torch.randn(4, 4, 8, 8, generator=g)
    t = torch.tensor([0.1, 0.4, 0.7, 0.95])
    x = q_sample(x0, t, eps)
    assert torch.allclose(eps_to_x0(x, t, eps), x0, atol=1e-4)
    assert torch.allclose(x0_to_eps(x, t, x0), eps, atol=1e-4)


def test_ddim_with_the_exact_denoiser_converges_to_the_data_distribution():
    """DDIM is a first-order ODE solver: the error in the std shrinks about as 1/steps."""
    noise = torch.randn(20000, 1, 1, 1, generator=torch.Generator().manual_seed(1))
    errors = {}
    for steps in (25, 50, 200):
        x0 = ddim_sample(exact_eps, noise, uniform_schedule(steps))
        assert float(x0.mean()) == pytest.approx(MU, abs=0.01)
        errors[steps] = abs(float(x0.std()) - S)
    assert errors[200] < errors[50] < errors[25] < 0.1 * S
    assert errors[200] < 0.015 * S
    assert errors[25] / errors[50] == pytest.approx(2.0, rel=0.25)


def test_ddim_is_deterministic():
    noise = torch.randn(8, 4, 4, 4, generator=torch.Generator().manual_seed(2))
    a = ddim_sample(exact_eps, noise, uniform_schedule(10))
    assert torch.equal(a, ddim_sample(exact_eps, noise, uniform_schedule(10)))


@pytest.mark.parametrize("steps", [1, 2, 4, 8])
def test_consistency_sampling_with_the_exact_function_is_step_count_invariant(steps):
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(20000, 1, 1, 1, generator=g)
    renoise = torch.randn(7, 20000, 1, 1, 1, generator=g)
    x0 = consistency_sample(exact_consistency, noise, uniform_schedule(steps), renoise)
    assert float(x0.mean()) == pytest.approx(MU, abs=0.01)
    assert float(x0.std()) == pytest.approx(S, rel=0.03)
    one = consistency_sample(exact_consistency, noise, uniform_schedule(1), renoise)
    if steps == 1:
        assert torch.equal(x0, one)


def test_reusing_one_noise_for_every_renoise_step_is_wrong():
    """Why the sampler wants an independent noise per re-noising step (fixed per stream)."""
    g = torch.Generator().manual_seed(4)
    noise = torch.randn(20000, 1, 1, 1, generator=g)
    same = torch.randn(20000, 1, 1, 1, generator=g).expand(7, -1, -1, -1, -1)
    x0 = consistency_sample(exact_consistency, noise, uniform_schedule(4), same)
    assert abs(float(x0.std()) - S) > 0.1 * S
