"""``tsd train ae``: the f=8 autoencoder on single frames (L1 + SSIM + mouth-box L1).

With ``encoder_from`` only the decoder trains, behind the frozen encoder of a trained
autoencoder (a cheaper decoder for the device that decodes the latents the denoisers know)."""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.utils.data import DataLoader

from training.config import AERunConfig, WindowConfig
from training.data.dataset import TalkingFaceDataset
from training.data.manifest import Manifest
from training.errors import UserError
from training.losses import box_mask, masked_l1, psnr, ssim_loss
from training.models.autoencoder import Autoencoder
from training.models.loading import load_frozen

log = logging.getLogger(__name__)

FRAME_WINDOW = WindowConfig(frames=1, viseme_context=0, p_cross=0.0, with_flow=False)
SCALE_BATCHES = 16
"""Batches of training frames used to measure the latent scale."""


class AutoencoderTask:
    def __init__(self, config: AERunConfig, manifest: Manifest):
        self.config = config
        seed = config.train.seed
        torch.manual_seed(seed)
        self.model = Autoencoder(config.model)
        if config.encoder_from:
            self._freeze_encoder(config.encoder_from)
        self.train_set = TalkingFaceDataset(manifest, "train", FRAME_WINDOW, seed,
                                            config.items_per_clip)
        self.val_set = TalkingFaceDataset(manifest, "val", FRAME_WINDOW, seed + 1, 2)

    def _freeze_encoder(self, path: str) -> None:
        source = load_frozen(path, "autoencoder")
        if source.config.enc_channels != self.config.model.enc_channels or \
                source.config.latent_channels != self.config.model.latent_channels:
            raise UserError(f"encoder_from {path}: its encoder ({source.config.enc_channels}, "
                            f"{source.config.latent_channels} latent channels) differs from "
                            f"model.enc_channels {self.config.model.enc_channels}")
        self.model.encoder.load_state_dict(source.encoder.state_dict())
        self.model.latent_scale.copy_(source.latent_scale)
        self.model.encoder.requires_grad_(False)
        log.info("decoder only: encoder and latent scale %.4f frozen from %s",
                 float(source.latent_scale), path)

    def _losses(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        x = batch["frames"][:, 0]  # [B, 3, H, W]
        recon, z = model(x)
        mask = box_mask(batch["mouth_boxes"][:, 0], x.shape[-2], x.shape[-1])
        return {"l1": (recon - x).abs().mean(), "ssim": ssim_loss(recon, x),
                "mouth_l1": masked_l1(recon, x, mask), "latent_l2": z.pow(2).mean(),
                "psnr": psnr(recon.detach(), x)}

    def loss(self, model: nn.Module, batch: dict, generator: torch.Generator):
        terms = self._losses(model, batch)
        w = self.config.loss
        total = (w.l1 * terms["l1"] + w.ssim * terms["ssim"] + w.mouth * terms["mouth_l1"]
                 + w.latent_l2 * terms["latent_l2"])
        return total, {k: float(v.detach()) for k, v in terms.items()}

    def validate(self, model: nn.Module, batches: list[dict]) -> dict[str, float]:
        sums: dict[str, float] = {}
        for batch in batches:
            terms = self._losses(model, batch)
            w = self.config.loss
            terms["val_loss"] = (w.l1 * terms["l1"] + w.ssim * terms["ssim"]
                                 + w.mouth * terms["mouth_l1"])
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v)
        return {k: v / max(1, len(batches)) for k, v in sums.items()}

    @torch.no_grad()
    def finish(self, model: nn.Module) -> None:
        """Set ``latent_scale`` = 1 / std of the training latents (unit variance for diffusion);
        a frozen encoder keeps the scale it came with."""
        if self.config.encoder_from:
            return
        model.eval()
        loader = DataLoader(self.train_set, batch_size=16, shuffle=False, num_workers=0)
        device = next(model.parameters()).device
        latents = []
        for i, batch in enumerate(loader):
            if i >= SCALE_BATCHES:
                break
            latents.append(model.encoder(batch["frames"][:, 0].to(device)))
        std = torch.cat(latents).std()
        model.latent_scale.fill_(1.0 / float(std))
        log.info("latent std %.4f -> latent_scale %.4f", float(std), float(model.latent_scale))
