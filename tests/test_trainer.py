"""Training machinery: exact resume, DDP equivalence, checkpoints, metrics, the AE budget."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.flop_counter import FlopCounterMode

from training.config import AERunConfig, AutoencoderConfig, load_config
from training.data.manifest import read_manifest
from training.errors import UserError
from training.losses import box_mask, masked_l1, psnr, ssim_loss
from training.models.autoencoder import Autoencoder
from training.tasks.autoencoder import AutoencoderTask
from training.trainer import DistInfo, StepBatchSampler, Trainer, lr_lambda, read_metrics

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "configs" / "train" / "ae-tiny.yaml"


def make_trainer(tiny_dataset, out: Path) -> Trainer:
    config = load_config(TINY, AERunConfig)
    task = AutoencoderTask(config, read_manifest(tiny_dataset))
    return Trainer(task, config.train, out, config)


def test_interrupted_run_resumes_exactly(tiny_dataset, tmp_path):
    torch.set_num_threads(1)
    straight = make_trainer(tiny_dataset, tmp_path / "a")
    straight.fit()
    first = make_trainer(tiny_dataset, tmp_path / "b")
    first.fit(stop_at=5)  # as if killed after step 5
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=False)["step"] == 5
    assert not (tmp_path / "b" / "final.pt").exists()
    resumed = make_trainer(tiny_dataset, tmp_path / "b")
    resumed.fit()
    a = torch.load(tmp_path / "a" / "final.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "b" / "final.pt", weights_only=False)["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert read_metrics(tmp_path / "a" / "metrics.jsonl") == \
        read_metrics(tmp_path / "b" / "metrics.jsonl")
    for name in ("best.pt", "last.pt", "final.pt", "metrics.png"):
        assert (tmp_path / "b" / name).is_file()
    assert float(b["latent_scale"]) != 1.0  # measured at the end of the run


def test_a_later_stage_trains_with_its_own_lr(tiny_dataset, tmp_path):
    torch.set_num_threads(1)
    make_trainer(tiny_dataset, tmp_path).fit(stop_at=5)
    config = load_config(TINY, AERunConfig)
    stage = dataclasses.replace(config.train, lr=config.train.lr * 3)
    resumed = Trainer(AutoencoderTask(config, read_manifest(tiny_dataset)), stage, tmp_path,
                      config)
    assert resumed.resume() and resumed.step == 5
    want = stage.lr * lr_lambda(stage)(5)
    assert [g["lr"] for g in resumed.optimizer.param_groups] == pytest.approx([want])
    resumed.scheduler.step()
    assert resumed.scheduler.get_last_lr() == pytest.approx([stage.lr * lr_lambda(stage)(6)])


def test_a_stage_with_its_own_schedule_starts_at_its_peak(tiny_dataset, tmp_path):
    torch.set_num_threads(1)
    make_trainer(tiny_dataset, tmp_path).fit(stop_at=5)
    config = load_config(TINY, AERunConfig)
    run_long = dataclasses.replace(config.train, steps=12, warmup_steps=2)
    own = dataclasses.replace(run_long, schedule_start=5)
    assert lr_lambda(run_long)(5) < 0.8  # resumed where the run-long cosine has fallen
    assert [lr_lambda(own)(s) for s in (5, 6)] == [0.5, 1.0]  # its own warm-up, then its peak
    assert lr_lambda(own)(11) < 0.1 and lr_lambda(own)(12) == pytest.approx(0.0)
    resumed = Trainer(AutoencoderTask(config, read_manifest(tiny_dataset)), own, tmp_path,
                      config)
    assert resumed.resume() and resumed.step == 5
    assert [g["lr"] for g in resumed.optimizer.param_groups] == pytest.approx([own.lr * 0.5])
    early = dataclasses.replace(own, schedule_start=8)
    with pytest.raises(UserError, match="schedule starts at step 8"):
        Trainer(AutoencoderTask(config, read_manifest(tiny_dataset)), early, tmp_path,
                config).fit()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_processes_match_one_process(tiny_dataset, tmp_path):
    from tests.ddp_worker import train_rank

    torch.set_num_threads(1)
    single = make_trainer(tiny_dataset, tmp_path / "single")
    single.fit()
    mp.spawn(train_rank, args=(2, free_port(), str(TINY), str(tiny_dataset),
                               str(tmp_path / "ddp")), nprocs=2, join=True)
    one = [r for r in read_metrics(tmp_path / "single" / "metrics.jsonl") if r["split"] == "train"]
    two = [r for r in read_metrics(tmp_path / "ddp" / "metrics.jsonl") if r["split"] == "train"]
    assert [r["step"] for r in one] == [r["step"] for r in two]
    for a, b in zip(one, two):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-5), a["step"]
    wa = torch.load(tmp_path / "single" / "final.pt", weights_only=False)["model"]
    wb = torch.load(tmp_path / "ddp" / "final.pt", weights_only=False)["model"]
    for key in wa:
        assert torch.allclose(wa[key], wb[key], rtol=1e-3, atol=1e-5), key


def test_batches_split_over_ranks_cover_the_global_batch():
    one = StepBatchSampler(50, 8, seed=3, start=0, stop=20, info=DistInfo())
    ranks = [StepBatchSampler(50, 8, seed=3, start=0, stop=20, info=DistInfo(r, 2))
             for r in range(2)]
    for step in range(20):
        merged = sorted(ranks[0].indices(step) + ranks[1].indices(step))
        assert merged == sorted(one.indices(step))
    late = StepBatchSampler(50, 8, seed=3, start=7, stop=9, info=DistInfo())
    assert list(late) == [one.indices(7), one.indices(8)]
    epoch0 = {i for s in range(6) for i in one.indices(s)}
    assert len(epoch0) == 48 and max(epoch0) < 50  # one epoch: distinct items
    assert min(one.indices(6)) >= 50  # next epoch: virtual indices for fresh windows


def test_losses_are_zero_where_they_must_be():
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert float(ssim_loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(ssim_loss(x, -x)) > 0.5
    boxes = torch.tensor([[4.0, 4.0, 12.0, 12.0], [0.0, 0.0, 32.0, 32.0]])
    mask = box_mask(boxes, 32, 32)
    assert mask[0].sum() == 64 and mask[1].sum() == 1024
    y = x.clone()
    y[:, :, 20:, 20:] += 1.0  # outside box 0, inside box 1
    per = masked_l1(y, x, mask)
    assert float(per) == pytest.approx((0 + 3 * 144 / (3 * 1024)) / 2, rel=1e-5)
    assert float(psnr(x, x)) > 90


def test_decoder_fits_the_pi_budget():
    """The decoder runs every frame on the Pi: at most 0.15 GMAC at 128 px."""
    model = Autoencoder(AutoencoderConfig())
    z = torch.zeros(1, 4, 16, 16)
    with FlopCounterMode(display=False) as counter:
        image = model.decode(z)
    macs = counter.get_total_flops() / 2
    assert image.shape == (1, 3, 128, 128)
    assert macs < 0.15e9, macs
    assert model.encode(torch.zeros(1, 3, 128, 128)).shape == (1, 4, 16, 16)


def test_ema_warms_up_then_holds_its_decay():
    from training.trainer import ema_avg_fn, ema_decay_at

    assert ema_decay_at(0.999, 0) == pytest.approx(0.1)
    assert ema_decay_at(0.999, 1750) == pytest.approx(1751 / 1760)
    assert ema_decay_at(0.999, 100000) == 0.999
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = torch.optim.swa_utils.AveragedModel(model, avg_fn=ema_avg_fn(0.999))
    for step in range(1, 201):  # the weight walks linearly to 200
        model.weight.data.fill_(float(step))
        ema.update_parameters(model)
    lag = 200 - float(ema.module.weight.detach())
    assert 0 < lag < 30  # a fixed 0.999 would lag by about 180


def test_decoder_only_run_keeps_the_encoder_and_its_latent_scale(tiny_dataset, tiny_ae, tmp_path):
    """encoder_from: a narrower decoder learns to decode the latents of a trained encoder."""
    import dataclasses

    from training.errors import UserError
    from training.models.loading import load_autoencoder, load_frozen

    config = load_config(TINY, AERunConfig)
    narrow = dataclasses.replace(config.model, dec_channels=(8, 8, 8, 4), dec_res_blocks=0)
    config = dataclasses.replace(config, model=narrow, encoder_from=str(tiny_ae),
                                 train=dataclasses.replace(config.train, steps=80))
    task = AutoencoderTask(config, read_manifest(tiny_dataset))
    final = Trainer(task, config.train, tmp_path / "dec", config).fit()
    source, trained = load_frozen(tiny_ae, "autoencoder"), load_frozen(final, "autoencoder")
    assert float(trained.latent_scale) == float(source.latent_scale) != 1.0
    for name, value in source.encoder.state_dict().items():
        assert torch.equal(trained.encoder.state_dict()[name], value), name
    untrained = Autoencoder(narrow)
    frames = torch.stack([task.val_set[i]["frames"][0] for i in range(4)])
    z = source.encode(frames)
    assert psnr(trained.decode(z), frames) > psnr(untrained.decode(z), frames) + 0.2

    assert load_autoencoder(str(tiny_ae), str(final)).config.dec_channels == (8, 8, 8, 4)
    state = torch.load(final, weights_only=False)
    state["model"]["encoder.net.0.weight"] += 0.01
    torch.save(state, tmp_path / "other.pt")
    with pytest.raises(UserError, match="its encoder is not the one"):
        load_autoencoder(str(tiny_ae), str(tmp_path / "other.pt"))

    wide = dataclasses.replace(narrow, enc_channels=(8, 8, 16, 32))
    with pytest.raises(UserError, match="encoder_from"):
        AutoencoderTask(dataclasses.replace(config, model=wide), read_manifest(tiny_dataset))
