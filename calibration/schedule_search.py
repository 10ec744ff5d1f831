"""Choose the fixed step schedule for each step count by search on calibration clips.

A noise-start K-step schedule starts at T_MAX (pure noise); its other K-1 times are chosen by
coordinate descent over a candidate grid: each time in turn moves to the candidate between
its neighbours that minimises the objective, for a few sweeps. A reference-start schedule
(sampling from the noised reference latent) also searches its first time: first a scan of
uniform schedules starting at each candidate, then the same coordinate descent over all K
positions. The objective is any function of a schedule (lower is better), e.g. the latent
error of few-step samples on held-out clips.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from edge_runtime.render.schedule import T_MAX, StepSchedule, uniform_schedule

log = logging.getLogger(__name__)

Objective = Callable[[StepSchedule], float]


def coordinate_search(objective: Objective, steps: int, candidates: np.ndarray,
                      sweeps: int = 2, start: str = "noise", min_first: float = 0.0
                      ) -> tuple[StepSchedule, float, int]:
    """-> (best schedule, its objective, number of objective evaluations). ``min_first``:
    the earliest first time a reference start may use.

    Noise start begins from the uniform schedule, so the result is never worse than uniform;
    reference start is never worse than the best uniform schedule of any candidate start.
    """
    grid = np.sort(np.asarray(candidates, dtype=np.float64))
    if start == "noise":
        best, first_position = uniform_schedule(steps), 1
        best_score, calls = objective(best), 1
    else:
        scored = [(objective(uniform_schedule(steps, float(t), "reference")), float(t))
                  for t in grid if min_first <= t < T_MAX]
        best_score, first = min(scored)
        best, first_position, calls = uniform_schedule(steps, first, "reference"), 0, len(scored)
    for _ in range(sweeps):
        improved = False
        for k in range(first_position, steps):
            times = list(best.timesteps)
            upper = times[k - 1] if k > 0 else T_MAX
            lower = times[k + 1] if k + 1 < steps else 0.0
            floor = min_first if k == 0 else 0.0
            for t in grid[(grid < upper) & (grid > lower) & (grid >= floor)]:
                trial = StepSchedule(tuple(times[:k] + [float(t)] + times[k + 1:]), start)
                score = objective(trial)
                calls += 1
                if score < best_score - 1e-12:
                    best, best_score, improved = trial, score, True
            log.debug("%d steps, position %d: %s -> %.5f", steps, k, best.timesteps, best_score)
        if not improved:
            break
    assert start != "noise" or best.timesteps[0] == T_MAX
    return best, best_score, calls
