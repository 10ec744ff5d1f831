"""``tsd train teacher``: eps-prediction latent diffusion with the eq 10 regularisers.

Per sample: T consecutive frames of one clip share one time t and one noise (as a stream
shares its noise at inference), a reference frame and its identity embedding condition the
denoiser, each frame gets its viseme window. The prediction is decoded (through the frozen
decoder) for the pixel-space terms, which are weighted by abar(t): at high noise the
one-step x0 estimate is a blur and should not be pushed towards details.

Cross-identity samples (eq 12, probability window.p_cross): the reference comes from another
identity. There is no ground truth for "that person saying this", so those samples skip the
reconstruction terms, train only at high noise (t >= cross_t_min) and are pulled to the
reference identity by L_id: identity must come from the reference, not from the latent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edge_runtime.render.schedule import T_MAX
from training.config import TeacherRunConfig
from training.data.manifest import Manifest
from training.diffusion.samplers import abar, eps_to_x0, q_sample
from training.losses import psnr
from training.models.denoiser import PREDICTION, Denoiser
from training.tasks.latent import LatentTask

VAL_TIMES = (0.1, 0.3, 0.5, 0.7, 0.9)


class TeacherTask(LatentTask):
    def __init__(self, config: TeacherRunConfig, manifest: Manifest):
        self.config = config
        torch.manual_seed(config.train.seed)
        self.model = Denoiser(config.model, PREDICTION["teacher"])
        super().__init__(config.autoencoder, config.identity_encoder, config.model.latent_channels,
                         config.window, manifest, config.train.seed, config.items_per_clip,
                         config.sync_expert if config.loss.needs_sync_expert() else None)

    def _times(self, cross: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        lo = torch.where(cross, torch.tensor(self.config.loss.cross_t_min),
                         torch.tensor(self.config.loss.t_min))
        # drawn on the CPU generator, so a run's noise is the same on every device
        return lo + (T_MAX - lo) * torch.rand(len(cross), generator=generator).to(cross.device)

    def loss(self, model: nn.Module, batch: dict, generator: torch.Generator):
        cfg = self.config.loss
        z0, ref, ident = self.condition(batch)
        cross = batch["ref_cross"]
        real = (~cross).float()
        t = self._times(cross, generator)
        # one noise per clip, shared by its frames
        eps = torch.randn(z0[:, :1].shape, generator=generator).to(z0.device).expand_as(z0)
        x = q_sample(z0, t, eps)
        eps_hat = self.predict(model, x, t, ref, ident, batch["visemes"])
        per_sample = (eps_hat - eps).pow(2).flatten(1).mean(1)
        l_noise = (per_sample * real).sum() / real.sum().clamp_min(1)
        x0_hat = eps_to_x0(x, t[:, None], eps_hat)
        weight = abar(t, t)  # [B]: pixel terms matter where the x0 estimate is informative
        reg = self.regularisers(x0_hat, batch, ident)
        l_id = (weight * reg["identity"]).mean()
        # cross-identity samples have no ground truth (and their audio belongs to the driving
        # clip): every other term counts real samples only. leak, mouth_motion and
        # mouth_feature are only watched: a teacher that moves the face with the visemes
        # passes that to its student (docs/decisions.md, "Gated visemes and the leak term")
        on_real = {key: (weight * real * term).mean() for key, term in reg.items()
                   if key != "identity"}
        total = (l_noise + cfg.identity * l_id + cfg.temporal * on_real["temporal"]
                 + cfg.mouth * on_real["mouth"] + cfg.sync * on_real.get("sync", 0.0))
        logs = {"noise": l_noise, "identity": l_id, "cross_share": cross.float().mean()} | on_real
        return total, {k: float(v.detach()) for k, v in logs.items()}

    @torch.no_grad()
    def validate(self, model: nn.Module, batches: list[dict]) -> dict[str, float]:
        """eps MSE at fixed times with fixed noise, and PSNR of the decoded one-step x0."""
        generator = torch.Generator().manual_seed(1234)
        mse, quality, count = 0.0, {t: 0.0 for t in VAL_TIMES}, 0
        for batch in batches:
            z0, ref, ident = self.condition(batch)
            eps = torch.randn(z0[:, :1].shape, generator=generator).to(z0.device).expand_as(z0)
            for t_value in VAL_TIMES:
                t = torch.full((len(z0),), t_value, device=z0.device)
                x = q_sample(z0, t, eps)
                eps_hat = self.predict(model, x, t, ref, ident, batch["visemes"])
                mse += float(F.mse_loss(eps_hat, eps))
                x0 = eps_to_x0(x[:, 0], t, eps_hat[:, 0])
                quality[t_value] += float(psnr(self.autoencoder.decode(x0),
                                               batch["frames"][:, 0]))
            count += 1
        count = max(count, 1)
        result = {"val_loss": mse / (count * len(VAL_TIMES))}
        result |= {f"psnr_t{t:.1f}": q / count for t, q in quality.items()}
        return result

    def finish(self, model: nn.Module) -> None:
        """Nothing to measure at the end; sampling quality is evaluated by tsd eval."""
