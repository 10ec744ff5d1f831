"""Loss terms shared by the trainers. Images are [B, 3, H, W] in [-1, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim


def ssim_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """1 - SSIM (11x11 Gaussian window), images mapped to [0, 1]."""
    return 1.0 - ssim((x + 1) / 2, (y + 1) / 2, data_range=1.0, size_average=True)


def box_mask(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """boxes: [B, 4] (x0, y0, x1, y1 pixels) -> [B, 1, H, W] float mask (1 inside)."""
    ys = torch.arange(height, device=boxes.device, dtype=boxes.dtype).view(1, height, 1) + 0.5
    xs = torch.arange(width, device=boxes.device, dtype=boxes.dtype).view(1, 1, width) + 0.5
    x0, y0, x1, y1 = (boxes[:, i].view(-1, 1, 1) for i in range(4))
    inside = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
    return inside.unsqueeze(1).to(boxes.dtype)


def masked_l1(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sample mean |x - y| over the masked pixels, averaged over the batch (a sample with
    an empty mask counts 0). Per-sample first, so a batch split over DDP ranks averages to
    the same value."""
    weight = mask.expand_as(x)
    per_sample = (weight * (x - y).abs()).flatten(1).sum(1) / weight.flatten(1).sum(1).clamp_min(1)
    return per_sample.mean()


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean PSNR in dB of images in [-1, 1] (peak-to-peak 2)."""
    mse = F.mse_loss(x.clamp(-1, 1), y, reduction="none").flatten(1).mean(1)
    return (10 * torch.log10(4.0 / mse.clamp_min(1e-10))).mean()
