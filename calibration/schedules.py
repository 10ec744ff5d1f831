"""``tsd calibrate schedules``: search the 1/2/4/8-step schedules of a trained student on
held-out (val) clips and save them with its checkpoint (final.pt["schedules"] and
schedules.json beside it)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from calibration.schedule_search import coordinate_search
from edge_runtime.schedule import StepSchedule, log_snr_grid, uniform_schedule
from training.atomic import atomic_path, write_text
from training.config import StudentRunConfig, from_dict
from training.data.manifest import Manifest
from training.errors import UserError
from training.models.denoiser import Denoiser
from training.tasks.latent import LatentTask
from training.tasks.student import sample_windows

log = logging.getLogger(__name__)

CANDIDATES = 32
"""Candidate times (evenly spaced in log-SNR) for every searched position."""


def load_student(path: Path) -> tuple[dict, StudentRunConfig, Denoiser]:
    if not path.is_file():
        raise UserError(f"{path}: student checkpoint not found (tsd train student ...)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    try:
        config = from_dict(StudentRunConfig, state["config"], f"{path}:config")
    except KeyError:
        raise UserError(f"{path}: not a student checkpoint") from None
    model = Denoiser(config.model)
    model.load_state_dict(state["model"])
    return state, config, model.eval()


def calibrate(path: Path, manifest: Manifest, steps: tuple[int, ...] = (1, 2, 4, 8),
              batches: int = 4, batch_size: int = 8, seed: int = 0) -> dict[int, dict]:
    """Search each step count's schedule; write them into the checkpoint -> the report."""
    state, config, model = load_student(path)
    latents = LatentTask(config.autoencoder, config.identity_encoder, config.window, manifest,
                         seed, 2)
    loader = DataLoader(latents.val_set, batch_size=batch_size, shuffle=False)
    fixed = [b for _, b in zip(range(batches), loader)]
    conds = [latents.condition(b) for b in fixed]  # encode once, sample many times

    def objective(schedule: StepSchedule) -> float:
        generator = torch.Generator().manual_seed(seed)
        errors = [float(F.mse_loss(sample_windows(latents, model, b, schedule, generator, c),
                                   c[0])) for b, c in zip(fixed, conds)]
        return float(np.mean(errors))

    candidates = log_snr_grid(CANDIDATES + 1, config.loss.t_min)[:-1]
    report = {}
    for k in steps:
        uniform_score = objective(uniform_schedule(k))
        best, score, calls = coordinate_search(objective, k, candidates)
        report[k] = {"schedule": best.to_dict(), "latent_mse": score,
                     "uniform_latent_mse": uniform_score, "evaluations": calls}
        log.info("%d steps: %s latent MSE %.5f (uniform %.5f)", k, best.timesteps, score,
                 uniform_score)
    state["schedules"] = {k: r["schedule"] for k, r in report.items()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    write_text(path.with_name("schedules.json"), json.dumps(report, indent=2))
    return report
