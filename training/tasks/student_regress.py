"""``tsd train student-regress``: the student regressed on the held truth over many faces.

The calibrated few-step schedules sample at the very top of the noise range (abar ~ 1e-5),
so the student's output there is its prediction of the frame from the reference, identity
and visemes alone. Distillation and the truth's latent MSE on the 20 demo faces left that
prediction averaged over faces: the mouth moved in step, but pressed and rounded lips were
not drawn, because where each face's mouth sits and how it draws a shape vary more between
faces than the shapes do (docs/decisions.md). Regressing on many more faces, frame by frame
from latents encoded once, teaches the mapping from a reference to its own mouth. The
stage continues a finished student and is followed by a ``tsd train student`` stage (its
motion terms, and the config the calibration and export read).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from edge_runtime.render.schedule import log_snr_grid
from training.config import StudentRegressRunConfig
from training.data.latents import HeldLatentFrames, held_latents
from training.data.manifest import Manifest
from training.diffusion.samplers import noise_level, q_sample, v_to_x0
from training.models.denoiser import PREDICTION, Denoiser
from training.models.loading import load_frozen
from training.tasks.latent import load_autoencoder


class StudentRegressTask:
    def __init__(self, config: StudentRegressRunConfig, manifest: Manifest):
        self.config = config
        torch.manual_seed(config.train.seed)
        self.model = Denoiser(config.model, PREDICTION["student"])
        autoencoder = load_autoencoder(config.autoencoder, config.model.latent_channels)
        identity = load_frozen(config.identity_encoder, "identity encoder")
        encoders = ((config.autoencoder, autoencoder), (config.identity_encoder, identity))
        context = config.model.viseme_window // 2

        def split(name: str):
            return held_latents(manifest, name, *[(Path(p), m) for p, m in encoders],
                                context, Path(config.latent_cache))

        train, val = split("train"), split("val")
        self.train_set = HeldLatentFrames(train, config.train.seed, config.real_share)
        self.val_set = HeldLatentFrames(val, config.train.seed + 1)
        self.sources = [f"{manifest.path}: {len(train.ref)} train clips ({len(train.z)} "
                        f"frames, {int(train.real.sum())} real-texture clips)"]
        grid = log_snr_grid(config.loss.discretization, config.loss.t_min)
        self.times = torch.as_tensor(grid[-config.loss.top_times:], dtype=torch.float32)

    def loss(self, model: nn.Module, batch: dict, generator: torch.Generator):
        """Mouth-weighted latent MSE of the student's x0 at one of ``times``."""
        z0 = batch["z0"]  # [B, C, h, w]
        pick = torch.randint(0, len(self.times), (len(z0),), generator=generator)
        t = self.times[pick].to(z0.device)
        x = q_sample(z0, t, torch.randn(z0.shape, generator=generator).to(z0.device))
        v = model(x, noise_level(t), batch["reference"], batch["identity"], batch["visemes"])
        error = (v_to_x0(x, t, v.float()) - z0).pow(2)  # [B, C, h, w]
        mouth = batch["mouth"][:, None]  # [B, 1, h, w]
        weight = 1 + self.config.loss.mouth_weight * mouth
        total = (error * weight).mean() / weight.mean()
        logs = {"latent_mse": error.mean(),
                "mouth_mse": (error * mouth).sum() / (mouth.sum() * z0.shape[1]).clamp(min=1)}
        return total, {k: float(v.detach()) for k, v in logs.items()}

    @torch.no_grad()
    def validate(self, model: nn.Module, batches: list[dict]) -> dict[str, float]:
        """The same losses on the val split's frames, at fixed noise."""
        generator = torch.Generator().manual_seed(99)
        rows = [self.loss(model, batch, generator) for batch in batches]
        result = {k: sum(r[1][k] for r in rows) / len(rows) for k in rows[0][1]}
        result["val_loss"] = sum(float(r[0]) for r in rows) / len(rows)
        return result

    def finish(self, model: nn.Module) -> None:
        """Step schedules are searched after the student stage that follows."""
