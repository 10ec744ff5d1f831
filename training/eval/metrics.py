"""Per-clip quality metrics. A clip is frames [N, 3, H, W] in [-1, 1]; flow [N-1, 2, H, W]
maps frame t to t+1 (pixels, from the ground truth); boxes [N, 4] are mouth boxes (pixels)."""

from __future__ import annotations

import torch
from pytorch_msssim import ssim

from training.losses import box_mask, psnr, temporal_loss


def psnr_db(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean per-frame PSNR (dB) of x against y."""
    return float(psnr(x, y))


def ssim_index(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean per-frame SSIM (11x11 Gaussian window) on [0, 1] images."""
    return float(ssim((x.clamp(-1, 1) + 1) / 2, (y + 1) / 2, data_range=1.0, size_average=True))


def mouth_psnr(x: torch.Tensor, y: torch.Tensor, boxes: torch.Tensor) -> float:
    """Mean per-frame PSNR (dB) inside each frame's mouth box."""
    mask = box_mask(boxes, *x.shape[-2:]).expand_as(x)
    err = (mask * (x.clamp(-1, 1) - y).pow(2)).flatten(1).sum(1) / mask.flatten(1).sum(1)
    return float((10 * torch.log10(4.0 / err.clamp_min(1e-10))).mean())


def temporal_l1(frames: torch.Tensor) -> float:
    """Mean |frame[t+1] - frame[t]| (Table 1's temporal L1; [0, 1] intensity units)."""
    return float((frames[1:] - frames[:-1]).abs().mean() / 2)


def flicker_std(frames: torch.Tensor) -> float:
    """Std over time of the per-frame mean intensity (Table 1's flicker; [0, 1] units)."""
    return float(frames.mean(dim=(1, 2, 3)).std() / 2)


def warp_error(frames: torch.Tensor, flow: torch.Tensor) -> float:
    """Mean |W(frame[t+1], flow[t]) - frame[t]| ([0, 1] units): motion the ground-truth flow
    does not explain, i.e. temporal inconsistency."""
    return float(temporal_loss(frames[None], flow[None]) / 2)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity of embeddings [N, D] and [N, D] (or [D]) -> [N]."""
    a = torch.nn.functional.normalize(a, dim=-1)
    b = torch.nn.functional.normalize(b, dim=-1)
    return (a * b).sum(-1)
