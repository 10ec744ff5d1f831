"""The diffusion noise schedule and step schedules (numpy; the one source of truth).

Cosine variance-preserving schedule (Nichol & Dhariwal 2021) in continuous time t in [0, 1]:
x_t = sqrt(abar(t)) x_0 + sqrt(1 - abar(t)) eps. A step schedule is the decreasing list of
times at which a sampler evaluates the model; the first is where sampling starts from noise.
The trainer, the samplers, the schedule search and the device runtime all use this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

COSINE_OFFSET = 0.008
T_MAX = 0.999
"""Latest time used: abar(1) is 0, where x_t carries no signal and eps-prediction is undefined."""


def alpha_bar(t: np.ndarray | float) -> np.ndarray:
    """abar(t) of the cosine schedule; 1 at t=0, about 1e-5 at T_MAX."""
    t = np.clip(np.asarray(t, dtype=np.float64), 0.0, T_MAX)
    f = np.cos((t + COSINE_OFFSET) / (1 + COSINE_OFFSET) * np.pi / 2) ** 2
    f0 = np.cos(COSINE_OFFSET / (1 + COSINE_OFFSET) * np.pi / 2) ** 2
    return f / f0


def log_snr(t: np.ndarray | float) -> np.ndarray:
    """log(abar / (1 - abar)): the model's noise-level input."""
    ab = alpha_bar(t)
    return np.log(ab) - np.log1p(-np.minimum(ab, 1 - 1e-12))


START_MODES = ("noise", "reference")
"""Where sampling starts: pure noise at T_MAX, or the reference latent noised to the first
time (which must then be below T_MAX, or no reference signal survives)."""


@dataclass(frozen=True)
class StepSchedule:
    """Times (decreasing, in (0, T_MAX]) at which a K-step sampler calls the model, and what
    the first step starts from."""

    timesteps: tuple[float, ...]
    start: Literal["noise", "reference"] = "noise"

    def __post_init__(self) -> None:
        t = np.asarray(self.timesteps)
        if len(t) == 0 or np.any(np.diff(t) >= 0) or t[0] > T_MAX + 1e-9 or t[-1] <= 0:
            raise ValueError(f"a step schedule is decreasing times in (0, {T_MAX}], "
                             f"got {self.timesteps}")
        if self.start not in START_MODES:
            raise ValueError(f"start must be one of {START_MODES}, got {self.start!r}")

    @property
    def steps(self) -> int:
        return len(self.timesteps)

    def to_dict(self) -> dict:
        return {"timesteps": [round(float(t), 6) for t in self.timesteps], "start": self.start}

    @classmethod
    def from_dict(cls, data: dict) -> StepSchedule:
        return cls(tuple(float(t) for t in data["timesteps"]), data.get("start", "noise"))


def uniform_schedule(steps: int, first: float = T_MAX,
                     start: Literal["noise", "reference"] = "noise") -> StepSchedule:
    """``steps`` times evenly spaced from ``first`` down to first/steps (DDIM's spacing)."""
    return StepSchedule(tuple(first * (steps - k) / steps for k in range(steps)), start)


def times_at_log_snr(values: np.ndarray) -> np.ndarray:
    """Inverse of log_snr on (0, T_MAX]: the times whose log-SNR are ``values``."""
    grid = np.linspace(0.0, T_MAX, 20001)[1:]
    lam = log_snr(grid)  # decreasing in t
    return np.interp(-np.asarray(values, dtype=np.float64), -lam, grid)


def log_snr_grid(n: int, t_min: float, t_max: float = T_MAX) -> np.ndarray:
    """n increasing times from t_min to t_max, evenly spaced in log-SNR: neighbouring times
    differ by the same signal ratio, so one DDIM step between them is equally hard
    everywhere (uniform spacing in t makes the steps near t = 1 explode)."""
    lam = np.linspace(log_snr(t_min), log_snr(t_max), n)
    times = times_at_log_snr(lam)
    times[0], times[-1] = t_min, t_max
    return times
