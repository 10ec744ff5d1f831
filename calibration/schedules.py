"""``tsd calibrate schedules``: search the 1/2/4/8-step schedules of a trained student on
held-out (val) clips and save them with its checkpoint (final.pt["schedules"] and
schedules.json beside it).

Both inference starts are searched for every step count (pure noise at T_MAX, and the
reference latent noised to a searched first time); the one with the lower error becomes the
saved default, and the report keeps both. The error is the latent MSE of the samples against
the clip's latents with the mouth box weighted 3x, so a start that copies the reference's
closed mouth cannot win on the background alone."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from calibration.schedule_search import coordinate_search
from edge_runtime.render.schedule import START_MODES, StepSchedule, log_snr_grid, uniform_schedule
from training.atomic import atomic_path, write_text
from training.config import StudentRunConfig, from_dict
from training.data.manifest import Manifest
from training.errors import UserError
from training.losses import box_mask
from training.models.denoiser import PREDICTION, Denoiser
from training.tasks.latent import LatentTask
from training.tasks.student import sample_windows

log = logging.getLogger(__name__)

MIN_REFERENCE_START = 0.5
"""Earliest first time of a reference start. Below it the sampler returns little more than
the (noised) reference, so the mouth stops following the audio; on the demo student the
unconstrained search chose t = 0.02, i.e. copying the reference, because a mouth that never
moves still has a small average error."""

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
    model = Denoiser(config.model, PREDICTION["student"])
    model.load_state_dict(state["model"])
    return state, config, model.eval()


def mouth_weights(boxes: torch.Tensor, latent_size: int, image_size: int) -> torch.Tensor:
    """Mouth boxes [B, T, 4] (pixels) -> weights [B, T, 1, h, w]: 3 inside the box, else 1."""
    b, n = boxes.shape[:2]
    scaled = boxes.flatten(0, 1) * (latent_size / image_size)
    mask = box_mask(scaled, latent_size, latent_size)
    return (1 + 2 * mask).unflatten(0, (b, n))


def calibrate(path: Path, manifest: Manifest, steps: tuple[int, ...] = (1, 2, 4, 8),
              batches: int = 4, batch_size: int = 8, seed: int = 0) -> dict[int, dict]:
    """Search each step count's schedule; write them into the checkpoint -> the report."""
    state, config, model = load_student(path)
    latents = LatentTask(config.autoencoder, config.identity_encoder, config.model.latent_channels,
                         config.window, manifest, seed, 2)
    loader = DataLoader(latents.val_set, batch_size=batch_size, shuffle=False)
    fixed = [b for _, b in zip(range(batches), loader)]
    conds = [latents.condition(b) for b in fixed]  # encode once, sample many times

    weights = [mouth_weights(b["mouth_boxes"], c[0].shape[-1], b["frames"].shape[-1])
               for b, c in zip(fixed, conds)]

    def objective(schedule: StepSchedule) -> float:
        generator = torch.Generator().manual_seed(seed)
        errors = [float((w * (sample_windows(latents, model, b, schedule, generator, c)
                              - c[0]).pow(2)).mean() / w.mean())
                  for b, c, w in zip(fixed, conds, weights)]
        return float(np.mean(errors))

    candidates = log_snr_grid(CANDIDATES + 1, config.loss.t_min)[:-1]
    report = {}
    for k in steps:
        uniform_score = objective(uniform_schedule(k))
        found = {start: coordinate_search(objective, k, candidates, start=start,
                                          min_first=MIN_REFERENCE_START)
                 for start in START_MODES}
        chosen = min(found, key=lambda s: found[s][1])
        best, score, _ = found[chosen]
        report[k] = {"schedule": best.to_dict(), "latent_mse": score,
                     "uniform_latent_mse": uniform_score,
                     "evaluations": sum(f[2] for f in found.values()),
                     "by_start": {s: {"schedule": f[0].to_dict(), "latent_mse": f[1]}
                                  for s, f in found.items()}}
        log.info("%d steps: %s start %s, weighted latent MSE %.5f (uniform noise start %.5f)",
                 k, chosen, best.timesteps, score, uniform_score)
    state["schedules"] = {k: r["schedule"] for k, r in report.items()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    write_text(path.with_name("schedules.json"), json.dumps(report, indent=2))
    return report
