"""``tsd train lipread``: the lip-reading viseme classifier used as an evaluation metric.

A sample is ``model.frames`` consecutive frames of one clip; their mouth crops (from the
ground-truth mouth boxes, jittered and optionally blurred while training) classify the centre
frame's viseme.
Metrics: frame accuracy and class-balanced accuracy (silence dominates the frames, so plain
accuracy alone would reward a reader that only sees open vs closed).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_runtime.visemes import VISEMES
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

    def _inputs(self, batch: dict, generator: torch.Generator | None, blur: float = 0.0
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> crops [B, frames, crop, crop], centre-frame viseme labels [B]. With a generator
        (training) the boxes are jittered and each window blurred by sigma in [0, config.blur];
        without, every window is blurred by ``blur``."""
        frames, boxes = batch["frames"], batch["mouth_boxes"]
        b, n = frames.shape[:2]
        if generator is not None:
            boxes = jitter_boxes(boxes, self.config.box_jitter, generator)
            if self.config.blur > 0:
                frames = blur_windows(frames, torch.rand(b, generator=generator) * self.config.blur)
        elif blur > 0:
            frames = blur_windows(frames, torch.full((b,), blur))
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
        if self.config.blur > 0:
            blurred = [model(self._inputs(batch, None, self.config.blur)[0]).argmax(1)
                       for batch in batches]
            scores["blurred_accuracy"] = viseme_accuracy(
                torch.cat(blurred).numpy(), torch.cat(truth).numpy())["accuracy"]
        return {"val_loss": float(np.mean(losses))} | scores

    def finish(self, model: nn.Module) -> None:
        """Nothing to measure: the reader is used frozen as trained."""


def jitter_boxes(boxes: torch.Tensor, amount: float, generator: torch.Generator
                 ) -> torch.Tensor:
    """Move and scale each sample's boxes [B, T, 4] by up to ``amount`` of the box size (one
    draw per sample, so a window's crops stay aligned with each other)."""
    b = boxes.shape[0]
    size = (boxes[..., 2:] - boxes[..., :2])  # [B, T, 2]
    shift = (torch.rand(b, 1, 2, generator=generator) * 2 - 1) * amount * size
    scale = 1 + (torch.rand(b, 1, 1, generator=generator) * 2 - 1) * amount
    centre = (boxes[..., 2:] + boxes[..., :2]) / 2 + shift
    half = size * scale / 2
    return torch.cat([centre - half, centre + half], dim=-1)


def blur_windows(frames: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Gaussian blur of every frame of window b by sigmas[b] pixels (0 = unchanged), borders
    replicated. frames: [B, T, C, H, W]; sigmas: [B]. One grouped separable convolution for
    the whole batch: a per-window cv2 loop cost 0.5 s per training batch of 64."""
    b, t, c, h, w = frames.shape
    radius = max(1, math.ceil(3 * float(sigmas.max())))
    offsets = torch.arange(-radius, radius + 1, dtype=frames.dtype)
    safe = sigmas.clamp_min(1e-6)[:, None].to(frames.dtype)
    kernel = torch.exp(-0.5 * (offsets[None] / safe) ** 2)  # [B, K]; sigma 0 -> a delta
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(t * c, 0)
    x = F.pad(frames.reshape(1, b * t * c, h, w), (radius,) * 4, mode="replicate")
    x = F.conv2d(x, kernel[:, None, None, :], groups=b * t * c)
    x = F.conv2d(x, kernel[:, None, :, None], groups=b * t * c)
    return x.reshape(b, t, c, h, w)


def viseme_recalls(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Viseme name -> share of its frames read as it, for the visemes present in ``truth``."""
    return {VISEMES[c]: float(np.mean(predicted[truth == c] == c)) for c in range(len(VISEMES))
            if np.any(truth == c)}


def viseme_accuracy(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Frame accuracy and balanced accuracy (mean per-class recall over the classes present)."""
    return {"accuracy": float(np.mean(predicted == truth)),
            "balanced_accuracy": float(np.mean(list(viseme_recalls(predicted, truth).values())))}
