"""Choose the fixed step schedule for each step count by search on calibration clips.

A K-step schedule starts at T_MAX (pure noise); the other K-1 times are chosen by coordinate
descent over a candidate grid: each time in turn moves to the candidate between its
neighbours that minimises the objective, for a few sweeps. The objective is any function of
a schedule (lower is better), e.g. the latent error of few-step samples on held-out clips.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from edge_runtime.schedule import T_MAX, StepSchedule, uniform_schedule

log = logging.getLogger(__name__)


def coordinate_search(objective: Callable[[StepSchedule], float], steps: int,
                      candidates: np.ndarray, sweeps: int = 2
                      ) -> tuple[StepSchedule, float, int]:
    """-> (best schedule, its objective, number of objective evaluations).

    Starts from the uniform schedule, so the result is never worse than uniform.
    """
    best = uniform_schedule(steps)
    best_score = objective(best)
    calls = 1
    grid = np.sort(np.asarray(candidates, dtype=np.float64))
    for _ in range(sweeps):
        improved = False
        for k in range(1, steps):
            times = list(best.timesteps)
            upper = times[k - 1]
            lower = times[k + 1] if k + 1 < steps else 0.0
            for t in grid[(grid < upper) & (grid > lower)]:
                trial = StepSchedule(tuple(times[:k] + [float(t)] + times[k + 1:]))
                score = objective(trial)
                calls += 1
                if score < best_score - 1e-12:
                    best, best_score, improved = trial, score, True
            log.debug("%d steps, position %d: %s -> %.5f", steps, k, best.timesteps, best_score)
        if not improved:
            break
    assert best.timesteps[0] == T_MAX
    return best, best_score, calls
