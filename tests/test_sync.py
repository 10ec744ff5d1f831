"""Sync expert mechanics: crops, audio windows per offset, LSE metrics, a training step."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from edge_runtime.audio.features import log_mel
from training.config import SyncExpertConfig
from training.models.sync import SyncExpert, mouth_crops, sync_distances
from training.tasks.sync import MEL, audio_windows, sync_feature_gap, sync_metrics


def test_mouth_crops_match_an_opencv_crop():
    rng = np.random.default_rng(0)
    image = cv2.resize(rng.uniform(-1, 1, (16, 16, 3)).astype(np.float32), (128, 128),
                       interpolation=cv2.INTER_CUBIC)
    box = np.array([40.0, 70.0, 88.0, 118.0])
    want = cv2.resize(image[70:118, 40:88], (48, 48), interpolation=cv2.INTER_LINEAR).mean(-1)
    got = mouth_crops(torch.from_numpy(image).permute(2, 0, 1)[None],
                      torch.from_numpy(box)[None].float(), 48)[0].numpy()
    assert np.abs(got - want)[2:-2, 2:-2].mean() < 0.02


def test_audio_windows_are_aligned_per_offset():
    frames, k, spf = 5, 3, 640
    audio = torch.from_numpy(np.random.default_rng(1).uniform(-0.5, 0.5, (2, 11 * spf))
                             .astype(np.float32))
    windows = audio_windows(audio, frames, k)
    assert windows.shape == (2, 7, 20, MEL.n_mels)
    for offset in (-3, 0, 2):
        start = (k + offset) * spf
        want = log_mel(audio[1, start:start + frames * spf + 240].numpy())
        np.testing.assert_allclose(windows[1, k + offset], want[:20], rtol=1e-4, atol=1e-4)


def test_sync_metrics():
    distances = torch.tensor([[1.0, 0.2, 1.0], [0.5, 0.9, 0.1]])
    metrics = sync_metrics(distances, max_offset=1)
    assert metrics["offset_accuracy"] == 0.5
    assert metrics["lse_d"] == pytest.approx(0.15)
    assert metrics["lse_c"] == pytest.approx(((1.0 - 0.2) + (0.5 - 0.1)) / 2)


def test_expert_embeds_both_streams():
    model = SyncExpert(SyncExpertConfig(crop=32, channels=(8, 16), dim=16))
    video = model.embed_video(torch.rand(3, 5, 32, 32))
    audio = model.embed_audio(torch.randn(3, 20, 80))
    assert video.shape == audio.shape == (3, 16)
    d = sync_distances(video, audio[:, None].expand(3, 4, 16))
    assert d.shape == (3, 4) and torch.all(d >= 0) and torch.all(d <= 2.0001)


def test_feature_gap_compares_only_the_mouth_windows():
    torch.manual_seed(0)
    model = SyncExpert(SyncExpertConfig(crop=32, channels=(8, 16), dim=16)).eval()
    truth = torch.rand(2, 5, 3, 64, 64) * 2 - 1
    boxes = torch.tensor([16.0, 32.0, 48.0, 60.0]).expand(2, 5, 4)
    outside = truth.clone()
    outside[..., :24, :] = 0.0  # above every box
    assert torch.allclose(sync_feature_gap(model, outside, truth, boxes), torch.zeros(2))
    images = truth.clone()
    images[1, :, :, 40:56, 20:44] = -1.0  # sample 1: a dark open mouth the truth lacks
    images.requires_grad_(True)
    gap = sync_feature_gap(model, images, truth, boxes)
    assert gap.shape == (2,) and gap[0] == 0 and gap[1] > 0.1
    gap.sum().backward()
    assert images.grad[1].abs().sum() > 0
