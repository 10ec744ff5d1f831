"""``tsd train idenc``: identity encoder, supervised contrastive (SupCon) on identity labels.

Each item gives two views of one identity (a frame and the clip's reference frame); every
other sample of the same identity in the batch, from any clip, is a positive too.
"""

from __future__ import annotations

import torch
from torch import nn

from training.config import IdentityRunConfig, WindowConfig
from training.data.dataset import TalkingFaceDataset
from training.data.manifest import Manifest
from training.models.identity import IdentityEncoder

VIEWS = WindowConfig(frames=1, viseme_context=0, p_cross=0.0, with_flow=False)


def supcon_loss(emb: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020). emb: [N, D] unit rows; labels: [N]."""
    sim = emb @ emb.T / temperature
    self_mask = torch.eye(len(emb), dtype=torch.bool, device=emb.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    per_anchor = -(log_prob.masked_fill(~positives, 0).sum(1)) / positives.sum(1).clamp_min(1)
    return per_anchor[positives.any(1)].mean()


def jitter(images: torch.Tensor, amount: float, generator: torch.Generator) -> torch.Tensor:
    """Random brightness/contrast and a small translation per image ([B, 3, H, W])."""
    b = images.shape[0]
    # drawn on the CPU generator, so a run's jitter is the same on every device
    gain = 1 + amount * (2 * torch.rand(b, 1, 1, 1, generator=generator).to(images.device) - 1)
    bias = amount * (2 * torch.rand(b, 1, 1, 1, generator=generator).to(images.device) - 1)
    shift = (amount * 16 * (2 * torch.rand(b, 2, generator=generator) - 1)).round().long()
    out = (images * gain + bias).clamp(-1, 1)
    return torch.stack([torch.roll(img, (int(dy), int(dx)), dims=(1, 2))
                        for img, (dy, dx) in zip(out, shift)])


def identity_accuracy(emb: torch.Tensor, labels: torch.Tensor, clips: torch.Tensor) -> float:
    """Share of samples whose nearest embedding from a *different clip* has their identity."""
    sim = emb @ emb.T
    sim = sim.masked_fill(clips[:, None] == clips[None, :], float("-inf"))
    nearest = sim.argmax(1)
    valid = torch.isfinite(sim.max(1).values)
    return float((labels[nearest] == labels)[valid].float().mean()) if valid.any() else 0.0


class IdentityTask:
    def __init__(self, config: IdentityRunConfig, manifest: Manifest):
        self.config = config
        torch.manual_seed(config.train.seed)
        self.model = IdentityEncoder(config.model)
        self.train_set = TalkingFaceDataset(manifest, "train", VIEWS, config.train.seed,
                                            config.items_per_clip)
        self.val_set = TalkingFaceDataset(manifest, "val", VIEWS, config.train.seed + 1, 4)

    def _embed_views(self, model: nn.Module, batch: dict, generator: torch.Generator | None):
        views = torch.cat([batch["frames"][:, 0], batch["reference"]])
        if generator is not None:
            views = jitter(views, self.config.jitter, generator)
        labels = batch["identity"].repeat(2)
        return model(views), labels

    def loss(self, model: nn.Module, batch: dict, generator: torch.Generator):
        emb, labels = self._embed_views(model, batch, generator)
        loss = supcon_loss(emb, labels, self.config.temperature)
        return loss, {"supcon": float(loss.detach())}

    def validate(self, model: nn.Module, batches: list[dict]) -> dict[str, float]:
        embs, labels, clips = [], [], []
        for batch in batches:
            emb, lab = self._embed_views(model, batch, None)
            embs.append(emb)
            labels.append(lab)
            clips.append(batch["clip"].repeat(2))
        emb, lab, clip = torch.cat(embs), torch.cat(labels), torch.cat(clips)
        eye = torch.eye(len(lab), dtype=torch.bool, device=lab.device)
        same, other = (lab[:, None] == lab[None, :]) & ~eye, lab[:, None] != lab[None, :]
        cos = emb @ emb.T
        result = {"val_loss": float(supcon_loss(emb, lab, self.config.temperature)),
                  "cross_clip_accuracy": identity_accuracy(emb, lab, clip),
                  "cos_same": float(cos[same].mean())}
        if other.any():  # a split with one identity has no negatives
            result["cos_other"] = float(cos[other].mean())
        return result

    def finish(self, model: nn.Module) -> None:
        """Nothing to measure: the encoder is used frozen as trained."""
