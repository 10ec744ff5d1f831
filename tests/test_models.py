"""Networks: shapes, conditioning that matters, and the MAC budgets of the per-frame graphs."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from edge_runtime.render.schedule import T_MAX, log_snr
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


def open_residuals(model: Denoiser) -> Denoiser:
    """Residual scales start at 0; open them so that every block acts."""
    for block in model.modules():
        if hasattr(block, "scale"):
            torch.nn.init.constant_(block.scale, 0.5)
    return model


@pytest.mark.parametrize("gate", [False, True])
def test_denoiser_shapes_and_every_condition_changes_the_output(gate):
    torch.manual_seed(0)
    model = open_residuals(Denoiser(DenoiserConfig(viseme_gate=gate), "v"))
    x, level, ref, ident, vis = inputs()
    out = model(x, level, ref, ident, vis)
    assert out.shape == x.shape
    for i, changed in enumerate([x + 1, level + 1, ref + 1, ident + 1, (vis + 1) % 15]):
        args = [x, level, ref, ident, vis]
        args[i] = changed
        assert not torch.allclose(model(*args), out), f"input {i} is ignored"


def test_the_viseme_gate_decides_where_visemes_act():
    """Gate shut (sigmoid ~ 0): the visemes change nothing; open: they change the output."""
    torch.manual_seed(0)
    model = open_residuals(Denoiser(DenoiserConfig(viseme_gate=True), "v"))
    x, level, ref, ident, vis = inputs()
    for bias, moves in ((-40.0, False), (40.0, True)):
        for block in model.modules():
            if getattr(block, "gate", None) is not None:
                torch.nn.init.zeros_(block.gate.weight)
                torch.nn.init.constant_(block.gate.bias, bias)
        with torch.no_grad():
            changed = not torch.allclose(model(x, level, ref, ident, vis),
                                         model(x, level, ref, ident, (vis + 1) % 15), atol=1e-6)
        assert changed == moves, bias


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_a_denoiser_with_zero_output_predicts_the_reference_plus_the_shrunk_residual(prediction):
    """F = 0 must mean x0 = ref + sqrt(abar) (x - sqrt(abar) ref), in either parameterisation:
    at high noise that is the reference itself, the sharp prior of a talking face."""
    model = Denoiser(STUDENT, prediction)
    torch.nn.init.zeros_(model.out.weight)
    torch.nn.init.zeros_(model.out.bias)
    x, _, ref, ident, vis = inputs(4)
    t = torch.tensor([0.1, 0.5, 0.9, T_MAX])
    level = torch.as_tensor(log_snr(t.numpy()), dtype=torch.float32)
    out = model(x, level, ref, ident, vis)
    a = torch.sigmoid(level)[:, None, None, None]
    x0 = (x - (1 - a).sqrt() * out) / a.sqrt() if prediction == "eps" else \
        a.sqrt() * x - (1 - a).sqrt() * out
    expected = ref + a.sqrt() * (x - a.sqrt() * ref)
    assert torch.allclose(x0, expected, atol=1e-3)
    assert torch.allclose(x0[-1], ref[-1], atol=0.05)


def test_student_is_at_most_a_quarter_of_the_teacher_and_fits_the_frame_budget():
    args = inputs(1)
    student = macs(Denoiser(STUDENT, "v"), *args)
    teacher = macs(Denoiser(TEACHER, "eps"), *args)
    assert student <= teacher / 4, (student, teacher)
    decoder = macs(Autoencoder(AutoencoderConfig()).decode, torch.zeros(1, 4, 16, 16))
    # E1 at 2 steps: two student steps and one decode per frame, at most 0.6 GFLOP
    assert 2 * student + decoder <= 0.3e9, (student, decoder)


def test_identity_encoder_is_unit_length():
    model = IdentityEncoder(IdentityEncoderConfig())
    emb = model(torch.rand(3, 3, 128, 128) * 2 - 1)
    assert emb.shape == (3, 128)
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
