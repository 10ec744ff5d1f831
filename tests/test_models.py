"""Networks: shapes, conditioning that matters, and the MAC budgets of the per-frame graphs."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from edge_runtime.schedule import log_snr
from training.config import AutoencoderConfig, DenoiserConfig, IdentityEncoderConfig
from training.models.autoencoder import Autoencoder
from training.models.denoiser import Denoiser
from training.models.identity import IdentityEncoder

TEACHER = DenoiserConfig(channels=(128, 192, 256), blocks_per_level=2)
STUDENT = DenoiserConfig()


def inputs(b: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, 4, 16, 16, generator=g),
            torch.as_tensor(log_snr([0.3, 0.8][:b]), dtype=torch.float32),
            torch.randn(b, 4, 16, 16, generator=g), torch.randn(b, 128, generator=g),
            torch.randint(0, 15, (b, 5), generator=g))


def macs(model, *args) -> float:
    with FlopCounterMode(display=False) as counter:
        model(*args)
    return counter.get_total_flops() / 2


def test_denoiser_shapes_and_every_condition_changes_the_output():
    torch.manual_seed(0)
    model = Denoiser(STUDENT)
    for block in model.modules():  # residual scales start at 0; open them for this test
        if hasattr(block, "scale"):
            torch.nn.init.constant_(block.scale, 0.5)
    x, level, ref, ident, vis = inputs()
    out = model(x, level, ref, ident, vis)
    assert out.shape == x.shape
    for i, changed in enumerate([x + 1, level + 1, ref + 1, ident + 1, (vis + 1) % 15]):
        args = [x, level, ref, ident, vis]
        args[i] = changed
        assert not torch.allclose(model(*args), out), f"input {i} is ignored"


def test_student_is_at_most_a_quarter_of_the_teacher_and_fits_the_frame_budget():
    args = inputs(1)
    student, teacher = macs(Denoiser(STUDENT), *args), macs(Denoiser(TEACHER), *args)
    assert student <= teacher / 4, (student, teacher)
    decoder = macs(Autoencoder(AutoencoderConfig()).decode, torch.zeros(1, 4, 16, 16))
    # E1 at 2 steps: two student steps and one decode per frame, at most 0.6 GFLOP
    assert 2 * student + decoder <= 0.3e9, (student, decoder)


def test_identity_encoder_is_unit_length():
    model = IdentityEncoder(IdentityEncoderConfig())
    emb = model(torch.rand(3, 3, 128, 128) * 2 - 1)
    assert emb.shape == (3, 128)
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
