"""The student's adversarial mouth term: a discriminator trained beside the student, one
update per student step, on windows of mouth crops.

Real windows are the autoencoder's reconstructions of the truth, not the truth itself: the
student can only choose latents, so reconstructions are the sharpest mouths it can reach,
and the discriminator must not win on the decoder's own artefacts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.config import AdversaryConfig
from training.models.discriminator import MouthDiscriminator
from training.models.sync import mouth_crops


class MouthAdversary:
    def __init__(self, config: AdversaryConfig):
        self.config = config
        self.net = MouthDiscriminator(config)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.lr, betas=(0.5, 0.999))

    def to(self, device: torch.device) -> None:
        """Moves the discriminator (its parameters stay the optimiser's own objects)."""
        self.net.to(device)

    def windows(self, images: torch.Tensor, boxes: torch.Tensor, visemes: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """images [B, T, 3, H, W], boxes [B, T, 4], viseme windows [B, T, K] -> the mouth
        windows of every frame with whole neighbours [B * W, frames, crop, crop] and their
        centre frames' visemes [B * W] (W = T - frames + 1)."""
        b, n = images.shape[:2]
        half = self.config.frames // 2
        crops = mouth_crops(images.flatten(0, 1), boxes.flatten(0, 1),
                            self.config.crop).unflatten(0, (b, n))
        stacked = torch.stack([crops[:, c - half:c + half + 1] for c in range(half, n - half)], 1)
        centre = visemes[:, half:n - half, visemes.shape[2] // 2]
        return stacked.flatten(0, 1), centre.flatten(0, 1).to(images.device)

    def update(self, real: torch.Tensor, fake: torch.Tensor, visemes: torch.Tensor
               ) -> dict[str, float]:
        """One hinge-loss step of the discriminator on real and (detached) fake windows."""
        self.net.requires_grad_(True)
        score_real = self.net(real, visemes)
        score_fake = self.net(fake.detach(), visemes)
        loss = F.relu(1 - score_real).mean() + F.relu(1 + score_fake).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"d_loss": float(loss.detach()), "d_real": float(score_real.detach().mean()),
                "d_fake": float(score_fake.detach().mean())}

    def generator_term(self, fake: torch.Tensor, visemes: torch.Tensor, batch: int
                       ) -> torch.Tensor:
        """The student's hinge term per sample [batch]: minus the discriminator's score of its
        windows (the discriminator frozen for this pass)."""
        self.net.requires_grad_(False)
        return -self.net(fake, visemes).view(batch, -1).mean(1)

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
