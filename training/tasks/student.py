"""``tsd train student``: multi-noise consistency distillation from the teacher (eq 11).

Grid: N times from t_min to T_MAX, evenly spaced in log-SNR. Each sample draws a pair of
neighbours t_lo < t_hi (every noise level gets trained: the paper's multi-noise objective),
noises the clip's latents to t_hi with one shared noise, and lets the frozen teacher take one
DDIM step to t_lo. The student's x0 at t_hi must match the *target network's* x0 at t_lo
(consistency along the teacher's ODE trajectory). The target is an EMA of the student
(decay loss.target_ema), kept in the checkpoint so a resumed run stays exact.

The student outputs v (x0 = sqrt(abar) x - sqrt(1 - abar) v): stable at the noisiest times
and exactly x0 = x at t = 0, the consistency boundary condition. Added terms: eq 7 matching
of the teacher's one-step x0 (weighted by abar, where that estimate is sharp) and the eq 8/9
regularisers plus the mouth ROI on the decoded student output.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_runtime.render.schedule import StepSchedule, log_snr_grid, uniform_schedule
from training.config import StudentRunConfig
from training.data.manifest import Manifest
from training.diffusion.samplers import (
    abar,
    consistency_sample,
    ddim_step,
    q_sample,
    start_latent,
    v_to_x0,
)
from training.losses import psnr
from training.models.denoiser import PREDICTION, Denoiser
from training.models.loading import load_frozen
from training.tasks.latent import LatentTask

VAL_STEPS = (1, 2, 4)


class StudentTask(LatentTask):
    def __init__(self, config: StudentRunConfig, manifest: Manifest):
        self.config = config
        torch.manual_seed(config.train.seed)
        self.model = Denoiser(config.model, PREDICTION["student"])
        self.target = copy.deepcopy(self.model).requires_grad_(False)
        self.teacher = load_frozen(config.teacher, "teacher")
        super().__init__(config.autoencoder, config.identity_encoder, config.model.latent_channels,
                         config.window, manifest, config.train.seed, config.items_per_clip,
                         config.sync_expert if config.loss.needs_sync_expert() else None,
                         chin=config.loss.chin_motion > 0)
        self.grid = torch.as_tensor(log_snr_grid(config.loss.discretization, config.loss.t_min),
                                    dtype=torch.float32)

    def to(self, device: torch.device) -> None:
        super().to(device)
        self.target.to(device)
        self.teacher.to(device)

    def x0(self, model: nn.Module, x, t, ref, ident, visemes) -> torch.Tensor:
        """Student/target consistency function f(x, t) -> x0, all frames [B, T, C, h, w]."""
        return student_x0(model, x, t, ref, ident, visemes)

    def loss(self, model: nn.Module, batch: dict, generator: torch.Generator):
        cfg = self.config.loss
        z0, ref, ident = self.condition(batch)
        visemes = batch["visemes"]
        index = torch.randint(0, len(self.grid) - 1, (len(z0),), generator=generator)
        t_lo, t_hi = self.grid[index].to(z0.device), self.grid[index + 1].to(z0.device)
        eps = torch.randn(z0[:, :1].shape, generator=generator).to(z0.device).expand_as(z0)
        x_hi = q_sample(z0, t_hi[:, None], eps)
        with torch.no_grad():
            eps_teacher = self.predict(self.teacher, x_hi, t_hi, ref, ident, visemes)
            x_lo, x0_teacher = ddim_step(x_hi, t_hi[:, None], t_lo[:, None], eps_teacher)
            target = self.x0(self.target, x_lo, t_lo, ref, ident, visemes)
        pred = self.x0(model, x_hi, t_hi, ref, ident, visemes)
        l_cd = F.mse_loss(pred, target)
        sharp = abar(t_hi, t_hi)
        l_match = (sharp * (pred - x0_teacher).pow(2).flatten(1).mean(1)).mean()
        reg = {k: v.mean() for k, v in self.regularisers(pred, batch, ident).items()}
        total = (l_cd + cfg.match * l_match + cfg.identity * reg["identity"]
                 + cfg.temporal * reg["temporal"] + cfg.mouth * reg["mouth"]
                 + cfg.sync * reg.get("sync", 0.0) + cfg.leak * reg["leak"]
                 + cfg.mouth_motion * reg["mouth_motion"]
                 + cfg.chin_motion * reg.get("chin_motion", 0.0)
                 + cfg.mouth_feature * reg.get("mouth_feature", 0.0))
        logs = {"consistency": l_cd, "match": l_match} | reg
        return total, {k: float(v.detach()) for k, v in logs.items()}

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        mu = self.config.loss.target_ema
        for target, online in zip(self.target.parameters(), model.parameters()):
            target.lerp_(online.detach(), 1 - mu)

    def state_dict(self) -> dict:
        return {"target": self.target.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.target.load_state_dict(state["target"])

    def start_from(self, model: nn.Module) -> None:
        """A run continued from finished weights: the target network starts from them too."""
        self.target.load_state_dict(model.state_dict())

    @torch.no_grad()
    def sample(self, model: nn.Module, batch: dict, schedule: StepSchedule,
               generator: torch.Generator) -> torch.Tensor:
        """Consistency sampling of the batch's windows, one noise set per clip shared by its
        frames -> x0 [B, T, C, h, w]."""
        return sample_windows(self, model, batch, schedule, generator)

    @torch.no_grad()
    def validate(self, model: nn.Module, batches: list[dict]) -> dict[str, float]:
        """Few-step samples vs the clip's latents and vs the AE reconstruction (Table 1)."""
        conds = [self.condition(batch) for batch in batches]  # encode once for all step counts
        recons = [self.autoencoder.decode(cond[0][:, 0]) for cond in conds]
        result = {}
        for steps in VAL_STEPS:
            generator = torch.Generator().manual_seed(99)
            mse, quality = [], []
            for batch, cond, recon in zip(batches, conds, recons):
                x0 = sample_windows(self, model, batch, uniform_schedule(steps), generator, cond)
                mse.append(float(F.mse_loss(x0, cond[0])))
                quality.append(float(psnr(self.autoencoder.decode(x0[:, 0]), recon)))
            result[f"latent_mse_{steps}step"] = float(np.mean(mse))
            result[f"psnr_vs_ae_{steps}step"] = float(np.mean(quality))
        result["val_loss"] = result["latent_mse_2step"]
        return result

    def finish(self, model: nn.Module) -> None:
        """Step schedules are searched afterwards on calibration clips (calibration/)."""


def student_x0(model: nn.Module, x, t, ref, ident, visemes):
    """The student's consistency function f(x, t) -> x0 (it predicts v), frames [B, T, ...]."""
    return v_to_x0(x, t[:, None], LatentTask.predict(model, x, t, ref, ident, visemes))


@torch.no_grad()
def sample_windows(latents: LatentTask, model: nn.Module, batch: dict, schedule: StepSchedule,
                   generator: torch.Generator, cond: tuple | None = None) -> torch.Tensor:
    """Few-step samples of a batch of windows -> x0 [B, T, C, h, w]; the noise (start and
    one per re-noising step) is drawn once per clip and shared by its frames. ``cond`` is
    latents.condition(batch) when the caller already has it. ``schedule.start`` says whether
    sampling starts from pure noise or from the noised reference latent."""
    z0, ref, ident = cond or latents.condition(batch)
    b, n = z0.shape[:2]
    shape = (b, 1, *z0.shape[2:])
    noise = torch.randn(shape, generator=generator).to(z0.device).expand_as(z0)
    start = start_latent(noise, schedule, ref[:, None])
    renoise = torch.randn((max(schedule.steps - 1, 1), *shape), generator=generator).to(z0.device)
    renoise = renoise.expand(-1, -1, n, -1, -1, -1)

    def f(x, t):
        return student_x0(model, x, t, ref, ident, batch["visemes"])

    return consistency_sample(f, start, schedule, renoise)
