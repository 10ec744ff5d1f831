"""Each loss is zero where it must be and grows where it must."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.data.flow import warp as warp_numpy
from training.losses import (
    identity_loss,
    motion_gap,
    mouth_motion_gap,
    moving_outside_mouth,
    outside_mouth_change,
    temporal_loss,
    warp,
)


def textured(seed: int = 0, size: int = 64, border: int = 8) -> np.ndarray:
    """Smooth texture inside a constant frame, so shifts by less than ``border`` px lose
    nothing at the edges."""
    noise = np.random.default_rng(seed).uniform(0, 1, (16, 16, 3)).astype(np.float32)
    image = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    image[:border], image[-border:], image[:, :border], image[:, -border:] = 0.5, 0.5, 0.5, 0.5
    return image


def test_torch_warp_matches_the_numpy_warp():
    image = textured()
    flow = np.random.default_rng(1).uniform(-3, 3, (64, 64, 2)).astype(np.float32)
    want = warp_numpy(image, flow)
    got = warp(torch.from_numpy(image).permute(2, 0, 1)[None],
               torch.from_numpy(flow).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    # cv2.remap interpolates with 5 fractional bits; torch in float
    diff = np.abs(got - want)[4:-4, 4:-4]
    assert diff.max() < 0.01 and diff.mean() < 1e-3


def test_temporal_loss_is_zero_for_frames_related_by_the_flow():
    image = torch.from_numpy(textured()).permute(2, 0, 1)
    moved = torch.roll(image, shifts=(1, 2), dims=(1, 2))  # content moves +2 px x, +1 px y
    frames = torch.stack([image, moved])[None]  # [1, 2, 3, H, W]
    flow = torch.zeros(1, 1, 2, 64, 64)
    flow[:, :, 0], flow[:, :, 1] = 2.0, 1.0
    assert float(temporal_loss(frames, flow)) < 1e-5
    assert float(temporal_loss(frames, torch.zeros_like(flow))) > 0.01
    flicker = frames.clone()
    flicker[:, 1] += 0.1
    assert float(temporal_loss(flicker, flow)) == pytest.approx(0.1, abs=1e-4)


def test_identity_loss():
    a = F.normalize(torch.randn(4, 8), dim=1)
    assert torch.allclose(identity_loss(a, a), torch.zeros(4), atol=1e-6)
    assert torch.allclose(identity_loss(a, -a), torch.full((4,), 2.0), atol=1e-6)


def test_outside_mouth_change_is_zero_for_the_truths_motion_and_counts_only_a_leak():
    g = torch.Generator().manual_seed(0)
    truth = torch.rand(2, 4, 3, 16, 16, generator=g)  # every pixel changes every frame
    mouth = torch.zeros(2, 4, 1, 16, 16)
    mouth[..., 8:12, 4:12] = 1
    assert torch.all(outside_mouth_change(truth, truth, mouth) == 0)
    talking = truth.clone()
    talking[:, 1::2, :, 8:12, 4:12] += 0.5  # a different mouth: not this term's business
    assert torch.all(outside_mouth_change(talking, truth, mouth) == 0)
    leak = talking.clone()
    leak[:, 1::2, :, :2] += 0.3  # two rows of the forehead move with the mouth
    assert outside_mouth_change(leak, truth, mouth) == pytest.approx(
        torch.full((2,), 0.3 * 2 / 16), rel=1e-4)


def test_mouth_motion_gap_counts_how_much_the_mouth_moves_not_when():
    g = torch.Generator().manual_seed(0)
    still = torch.rand(2, 1, 3, 16, 16, generator=g).expand(2, 5, 3, 16, 16).clone()
    mouth = torch.zeros(2, 5, 1, 16, 16)
    mouth[..., 8:12, 4:12] = 1
    talking = still.clone()
    talking[:, 1::2, :, 8:12, 4:12] += 0.4  # opens on frames 1 and 3: 0.4 of change per pair
    assert torch.all(mouth_motion_gap(talking, talking, mouth) == 0)
    assert mouth_motion_gap(still, talking, mouth) == pytest.approx(torch.full((2,), 0.4))
    early = still.clone()
    early[:, 0::2, :, 8:12, 4:12] += 0.4  # as much motion, a frame early: not this term's business
    assert torch.all(mouth_motion_gap(early, talking, mouth) == 0)
    wild = still.clone()
    wild[:, 1::2, :, 8:12, 4:12] += 0.6  # moves more than the truth
    assert mouth_motion_gap(wild, talking, mouth) == pytest.approx(torch.full((2,), 0.2))
    nodding = talking.clone()
    nodding[:, 1::2, :, :2] += 0.3  # the forehead: the leak term's business
    assert torch.all(mouth_motion_gap(nodding, talking, mouth) == 0)


def test_a_real_texture_jaw_is_matched_in_amount_and_left_out_of_the_leak():
    """On a real-texture window the truth's jaw, below the mouth box, moves: its amount of
    motion is matched (not its timing) and leak no longer asks it to be still; a synthetic
    window's same pixels stay leak's business, and the still forehead stays leak's in both."""
    g = torch.Generator().manual_seed(0)
    still = torch.rand(2, 1, 3, 16, 16, generator=g).expand(2, 5, 3, 16, 16).clone()
    mouth = torch.zeros(2, 5, 1, 16, 16)
    mouth[..., 4:10, 4:12] = 1
    truth = still.clone()
    truth[:, 1::2, :, 12:14, 4:12] += 0.4  # the jaw, below the box
    real = torch.tensor([True, False])
    moving = moving_outside_mouth(truth, mouth, real)
    assert moving.shape == (2, 1, 1, 16, 16)
    assert torch.all(moving[0, 0, 0, 12:14, 4:12] == 1) and moving[0].sum() == 16
    assert torch.all(moving[1] == 0)
    early = still.clone()
    early[:, 0::2, :, 12:14, 4:12] += 0.4  # as much jaw motion, a frame early
    assert torch.all(motion_gap(early, truth, moving) == 0)
    assert motion_gap(still, truth, moving) == pytest.approx(torch.tensor([0.4, 0.0]))
    leak = outside_mouth_change(early, truth, mouth, moving)
    assert leak[0] == 0 and leak[1] > 0
    assert torch.equal(leak[1], outside_mouth_change(early, truth, mouth)[1])
    nodding = truth.clone()
    nodding[:, 1::2, :, :2] += 0.3  # the forehead moves, not in the truth
    assert torch.all(outside_mouth_change(nodding, truth, mouth, moving) > 0)
    faint = still.clone()
    faint[:, 1::2, :, 12:14, 4:12] += 0.01  # under the threshold: still
    assert moving_outside_mouth(faint, mouth, real).sum() == 0
