"""``tsd train lipread``: the lip-reading viseme classifier used as an evaluation metric.

A sample is ``model.frames`` consecutive frames of one clip; their mouth crops (from the
ground-truth mouth boxes, jittered while training) classify the centre frame's viseme.
Metrics: frame accuracy and class-balanced accuracy (silence dominates the frames, so plain
accuracy alone would reward a reader that only sees open vs closed).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_runtime.visemes.vocabulary import VISEMES
from training.config import LipReadRunConfig, WindowConfig
from training.data.dataset import TalkingFaceDataset
from training.data.manifest import Manifest
from training.models.lipread import LipReader
from training.models.sync import mouth_crops


class LipReadTask:
    def __init__(self, config: LipReadRunConfig, manifest: Manifest):
        self.config = config
        torch.manual_seed(config.train.seed)
        self.model = LipReader(config.model)
        window = WindowConfig(frames=config.model.frames, viseme_context=0, p_cross=0.0,
                              with_flow=False)
        seed = config.train.seed
        self.train_set = TalkingFaceDataset(manifest, "train", window, seed,
                                            config.items_per_clip)
        self.val_set = TalkingFaceDataset(manifest, "val", window, seed + 1, 4)

    def _inputs(self, batch: dict, generator: torch.Generator | None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> crops [B, frames, crop, crop], centre-frame viseme labels [B]."""
        frames, boxes = batch["frames"], batch["mouth_boxes"]
        b, n = frames.shape[:2]
        if generator is not None:
            boxes = jitter_boxes(boxes, self.config.box_jitter, generator)
        crops = mouth_crops(frames.flatten(0, 1), boxes.flatten(0, 1), self.config.model.crop)
        return crops.unflatten(0, (b, n)), batch["visemes"][:, n // 2, 0]

    def loss(self, model: nn.Module, batch: dict, generator: torch.Generator):
        crops, labels = self._inputs(batch, generator)
        logits = model(crops)
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.argmax(1) == labels).float().mean()
        return loss, {"ce": float(loss.detach()), "accuracy": float(accuracy)}

    @torch.no_grad()
    def validate(self, model: nn.Module, batches: list[dict]) -> dict[str, float]:
        losses, predicted, truth = [], [], []
        for batch in batches:
            crops, labels = self._inputs(batch, None)
            logits = model(crops)
            losses.append(float(F.cross_entropy(logits, labels)))
            predicted.append(logits.argmax(1))
            truth.append(labels)
        scores = viseme_accuracy(torch.cat(predicted).numpy(), torch.cat(truth).numpy())
        return {"val_loss": float(np.mean(losses))} | scores

    def finish(self, model: nn.Module) -> None:
        """Nothing to measure: the reader is used frozen as trained."""


def jitter_boxes(boxes: torch.Tensor, amount: float, generator: torch.Generator
                 ) -> torch.Tensor:
    """Move and scale each sample's boxes [B, T, 4] by up to ``amount`` of the box size (one
    draw per sample, so a window's crops stay aligned with each other)."""
    b = boxes.shape[0]
    size = (boxes[..., 2:] - boxes[..., :2])  # [B, T, 2]
    # drawn on the CPU generator, so a run's jitter is the same on every device
    shift = (torch.rand(b, 1, 2, generator=generator).to(size.device) * 2 - 1) * amount * size
    scale = 1 + (torch.rand(b, 1, 1, generator=generator).to(size.device) * 2 - 1) * amount
    centre = (boxes[..., 2:] + boxes[..., :2]) / 2 + shift
    half = size * scale / 2
    return torch.cat([centre - half, centre + half], dim=-1)


def viseme_recalls(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Viseme name -> share of its frames read as it, for the visemes present in ``truth``."""
    return {VISEMES[c]: float(np.mean(predicted[truth == c] == c)) for c in range(len(VISEMES))
            if np.any(truth == c)}


def viseme_accuracy(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Frame accuracy and balanced accuracy (mean per-class recall over the classes present)."""
    return {"accuracy": float(np.mean(predicted == truth)),
            "balanced_accuracy": float(np.mean(list(viseme_recalls(predicted, truth).values())))}
