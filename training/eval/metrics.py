"""Per-clip quality metrics. A clip is frames [N, 3, H, W] in [-1, 1]; flow [N-1, 2, H, W]
maps frame t to t+1 (pixels, from the ground truth); boxes [N, 4] are mouth boxes (pixels)."""

from __future__ import annotations

import numpy as np
import torch
from pytorch_msssim import ssim

from training.losses import box_mask, outside_mouth_change, psnr, temporal_loss


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


def temporal_l1_outside_mouth(frames: torch.Tensor, boxes: torch.Tensor) -> float:
    """The part of temporal_l1 that lies outside the mouth (pixels in neither frame's mouth
    box, averaged over the whole frame, so inside + outside = temporal_l1): change that the
    visemes should not cause. frames [N, 3, H, W], boxes [N, 4]."""
    mouth = box_mask(boxes, *frames.shape[-2:])
    still = torch.zeros_like(frames)
    return float(outside_mouth_change(frames[None], still[None], mouth[None])[0] / 2)


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


def mouth_opening(frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """How open the mouth looks per frame: the fraction of the central 60% (in width) of the
    mouth box darker than 0.7 x the box's median luminance (the cavity; lips, teeth and skin
    are brighter). On the demo set's ground-truth test frames it correlates 0.71 on average
    with the generator's jaw opening (the variants tried are in docs/decisions.md).
    frames uint8 [N, H, W, 3], boxes [N, 4] (x0, y0, x1, y1) pixels -> [N]."""
    out = np.zeros(len(frames), np.float32)
    for i, (frame, box) in enumerate(zip(frames, boxes)):
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        patch = frame[max(y0, 0):y1, max(x0, 0):x1].astype(np.float32)
        if patch.size == 0:
            continue
        luma = patch @ np.array([0.299, 0.587, 0.114], np.float32)
        side = luma.shape[1] // 5
        centre = luma[:, side:luma.shape[1] - side]
        out[i] = float(np.mean(centre < 0.7 * np.median(luma)))
    return out


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; 0 when either side is constant."""
    if np.std(a) < 1e-9 or np.std(b) < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])
