"""Step-schedule search: finds a known optimum, never loses to uniform, saves with the model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from calibration.schedule_search import coordinate_search
from calibration.schedules import calibrate
from edge_runtime.render.schedule import T_MAX, StepSchedule, uniform_schedule
from training.data.manifest import read_manifest


def test_coordinate_search_finds_the_known_optimum():
    want = np.array([T_MAX, 0.62, 0.31, 0.07])

    def objective(schedule: StepSchedule) -> float:
        return float(((np.array(schedule.timesteps) - want) ** 2).sum())

    grid = np.round(np.linspace(0.01, 0.99, 99), 2)
    best, score, calls = coordinate_search(objective, 4, grid, sweeps=4)
    assert best.timesteps == pytest.approx(tuple(want))
    assert score == pytest.approx(0.0, abs=1e-12) and calls > 3


def test_reference_start_also_searches_the_first_time():
    want = np.array([0.55, 0.2])

    def objective(schedule: StepSchedule) -> float:
        assert schedule.start == "reference"
        return float(((np.array(schedule.timesteps) - want) ** 2).sum())

    grid = np.round(np.linspace(0.05, 0.95, 19), 2)
    best, score, _ = coordinate_search(objective, 2, grid, sweeps=4, start="reference")
    assert best.start == "reference"
    assert best.timesteps == pytest.approx(tuple(want))
    assert score == pytest.approx(0.0, abs=1e-12)


def test_one_step_has_nothing_to_search():
    best, _, calls = coordinate_search(lambda s: 1.0, 1, np.linspace(0.1, 0.9, 9))
    assert best == uniform_schedule(1) and calls == 1


def test_calibration_saves_schedules_with_the_student(tiny_dataset, tiny_student):
    torch.set_num_threads(2)
    report = calibrate(tiny_student, read_manifest(tiny_dataset), steps=(1, 2), batches=1,
                       batch_size=4)
    for k, row in report.items():
        assert row["latent_mse"] <= row["uniform_latent_mse"] + 1e-9
        assert len(row["schedule"]["timesteps"]) == k
        assert set(row["by_start"]) == {"noise", "reference"}
        chosen = row["schedule"]["start"]
        assert row["latent_mse"] == min(r["latent_mse"] for r in row["by_start"].values())
        assert row["by_start"][chosen]["schedule"] == row["schedule"]
    saved = torch.load(tiny_student, weights_only=False)["schedules"]
    assert StepSchedule.from_dict(saved[2]).steps == 2
    on_disk = json.loads(tiny_student.with_name("schedules.json").read_text())
    assert on_disk["2"]["schedule"] == saved[2]


def test_a_reference_start_keeps_enough_noise_to_repaint_the_mouth():
    """An objective that rewards copying the reference (the earliest start) must not pull
    the first time below min_first; later steps may go lower."""
    grid = np.round(np.linspace(0.05, 0.95, 19), 2)

    def objective(schedule: StepSchedule) -> float:
        return sum(schedule.timesteps)

    best, _, _ = coordinate_search(objective, 2, grid, start="reference", min_first=0.5)
    assert best.start == "reference"
    assert best.timesteps[0] == pytest.approx(0.5) and best.timesteps[1] < 0.5
