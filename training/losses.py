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


def masked_l1(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
              per_sample: bool = False) -> torch.Tensor:
    """Mean |x - y| over each sample's masked pixels ([B] with per_sample, else the batch
    mean; a sample with an empty mask counts 0). Per-sample first, so a batch split over DDP
    ranks averages to the same value."""
    weight = mask.expand_as(x)
    value = (weight * (x - y).abs()).flatten(1).sum(1) / weight.flatten(1).sum(1).clamp_min(1)
    return value if per_sample else value.mean()


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean PSNR in dB of images in [-1, 1] (peak-to-peak 2)."""
    mse = F.mse_loss(x.clamp(-1, 1), y, reduction="none").flatten(1).mean(1)
    return (10 * torch.log10(4.0 / mse.clamp_min(1e-10))).mean()


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp, torch twin of training.data.flow.warp: warp(frames[t+1], flow[t]) ~=
    frames[t]. image: [B, C, H, W]; flow: [B, 2, H, W] in pixels (x, y)."""
    _, _, h, w = image.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype, device=flow.device),
                            torch.arange(w, dtype=flow.dtype, device=flow.device), indexing="ij")
    gx = (xs + flow[:, 0]) * 2 / (w - 1) - 1
    gy = (ys + flow[:, 1]) * 2 / (h - 1) - 1
    return F.grid_sample(image, torch.stack([gx, gy], dim=-1), mode="bilinear",
                         padding_mode="border", align_corners=True)


def temporal_loss(frames: torch.Tensor, flow: torch.Tensor,
                  per_sample: bool = False) -> torch.Tensor:
    """Eq 9: mean |W(x_{t+1}, flow_t) - x_t| over consecutive pairs ([B] with per_sample).
    frames: [B, T, C, H, W]; flow: [B, T-1, 2, H, W] (from the ground-truth frames)."""
    b, pairs = flow.shape[:2]
    warped = warp(frames[:, 1:].flatten(0, 1), flow.flatten(0, 1))
    diff = (warped - frames[:, :-1].flatten(0, 1)).abs().flatten(1).mean(1)
    value = diff.view(b, pairs).mean(1)
    return value if per_sample else value.mean()


def outside_mouth_change(frames: torch.Tensor, truth: torch.Tensor, mouth: torch.Tensor,
                         moving: torch.Tensor | None = None) -> torch.Tensor:
    """Mean |(x_{t+1} - x_t) - (y_{t+1} - y_t)| outside the mouth boxes of both frames (and
    outside ``moving`` [B, 1, 1, H, W] when given), averaged over whole frames, per sample
    [B]. frames, truth: [B, T, C, H, W]; mouth: [B, T, 1, H, W] masks (1 inside)."""
    outside = 1 - mouth_of_either_frame(mouth)
    if moving is not None:
        outside = outside * (1 - moving)
    change = (frames[:, 1:] - frames[:, :-1]) - (truth[:, 1:] - truth[:, :-1])
    return (change.abs().mean(2, keepdim=True) * outside).flatten(1).mean(1)


def mouth_motion_gap(frames: torch.Tensor, truth: torch.Tensor, mouth: torch.Tensor
                     ) -> torch.Tensor:
    """|mean |x_{t+1} - x_t| - mean |y_{t+1} - y_t||, means over the mouth boxes of either
    frame, per sample [B]: how much more or less the mouth moves than the truth's. Matching
    the changes themselves (L1 of the difference of changes) shrinks the motion wherever the
    timing is uncertain (a still mouth is its median; measured in docs/decisions.md, "Mouth-
    motion term matches the amount of change"), so only the amount is matched. Shapes as
    outside_mouth_change."""
    return motion_gap(frames, truth, mouth_of_either_frame(mouth))


def motion_gap(frames: torch.Tensor, truth: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """|mean |x_{t+1} - x_t| - mean |y_{t+1} - y_t||, means over ``region`` [B, T-1 or 1, 1,
    H, W] (1 inside; one mask for every pair when its second dimension is 1), per sample [B];
    0 where the region is empty. frames, truth: [B, T, C, H, W]."""
    region = region.expand(-1, frames.shape[1] - 1, -1, -1, -1)
    area = region.flatten(1).sum(1).clamp_min(1)

    def motion(x: torch.Tensor) -> torch.Tensor:
        change = (x[:, 1:] - x[:, :-1]).abs().mean(2, keepdim=True)
        return (change * region).flatten(1).sum(1) / area

    return (motion(frames) - motion(truth)).abs()


CHIN_THRESHOLD = 0.02
"""Change between frames (channel mean, in the [-1, 1] range: about 2.5 grey levels) above
which a truth pixel outside the mouth boxes counts as moving."""


def moving_outside_mouth(truth: torch.Tensor, mouth: torch.Tensor, real: torch.Tensor
                         ) -> torch.Tensor:
    """[B, 1, 1, H, W]: 1 where the truth [B, T, C, H, W] changes by more than CHIN_THRESHOLD
    outside the mouth boxes (``mouth`` [B, T, 1, H, W]) in any pair of the window, on the
    windows where ``real`` [B] (bool) is set, else 0. On the real-texture clips that is the
    jaw the mouth model's warp moves below the box; the synthetic faces' jaw stays inside it,
    and their few moving pixels outside are better held still."""
    change = (truth[:, 1:] - truth[:, :-1]).abs().mean(2, keepdim=True)
    moving = (change > CHIN_THRESHOLD).float() * (1 - mouth_of_either_frame(mouth))
    return moving.amax(1, keepdim=True) * real.float().view(-1, 1, 1, 1, 1)


def mouth_of_either_frame(mouth: torch.Tensor) -> torch.Tensor:
    """Per consecutive pair, the union of the two frames' mouth masks: [B, T, 1, H, W] ->
    [B, T-1, 1, H, W]."""
    return torch.maximum(mouth[:, 1:], mouth[:, :-1])


def identity_loss(embedding: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Eq 8: 1 - cosine similarity of unit identity embeddings, per sample [B]."""
    return 1.0 - (embedding * reference).sum(dim=1)
