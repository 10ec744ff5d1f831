"""Student: consistency distillation wiring, target network, exact resume, few-step sampling."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from edge_runtime.render.schedule import log_snr, log_snr_grid, times_at_log_snr, uniform_schedule
from training.config import StudentRunConfig, load_config
from training.data.manifest import read_manifest
from training.tasks.student import StudentTask
from training.trainer import Trainer, read_metrics

TINY = Path(__file__).resolve().parent.parent / "configs" / "train" / "student-tiny.yaml"


def make(tiny_dataset, tiny_ae, tiny_idenc, tiny_teacher) -> tuple[StudentRunConfig, StudentTask]:
    config = load_config(TINY, StudentRunConfig)
    config = dataclasses.replace(config, teacher=str(tiny_teacher), autoencoder=str(tiny_ae),
                                 identity_encoder=str(tiny_idenc))
    return config, StudentTask(config, read_manifest(tiny_dataset))


def test_log_snr_grid_is_even_in_log_snr():
    times = log_snr_grid(10, 0.02)
    lam = log_snr(times)
    assert times[0] == 0.02 and abs(times[-1] - 0.999) < 1e-9
    assert torch.allclose(torch.tensor(lam[1:] - lam[:-1]), torch.tensor(lam[1] - lam[0]),
                          atol=1e-3)
    assert abs(float(times_at_log_snr(log_snr(0.4))) - 0.4) < 1e-4


def test_distillation_runs_resumes_exactly_and_samples(tiny_dataset, tiny_ae, tiny_idenc,
                                                        tiny_teacher, tmp_path):
    torch.set_num_threads(2)
    config, task = make(tiny_dataset, tiny_ae, tiny_idenc, tiny_teacher)
    target_before = [p.clone() for p in task.target.parameters()]
    Trainer(task, config.train, tmp_path / "a", config).fit()
    assert any(not torch.equal(a, b) for a, b in zip(target_before, task.target.parameters()))
    rows = [r for r in read_metrics(tmp_path / "a" / "metrics.jsonl") if r["split"] == "train"]
    assert all(torch.isfinite(torch.tensor(r["consistency"])) for r in rows)
    val = [r for r in read_metrics(tmp_path / "a" / "metrics.jsonl") if r["split"] == "val"][-1]
    assert {"psnr_vs_ae_1step", "psnr_vs_ae_2step", "psnr_vs_ae_4step"} <= set(val)

    config_b, task_b = make(tiny_dataset, tiny_ae, tiny_idenc, tiny_teacher)
    Trainer(task_b, config_b.train, tmp_path / "b", config_b).fit(stop_at=8)
    config_c, task_c = make(tiny_dataset, tiny_ae, tiny_idenc, tiny_teacher)
    Trainer(task_c, config_c.train, tmp_path / "b", config_c).fit()
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["task"]["target"]:
        assert torch.equal(a["task"]["target"][key], b["task"]["target"][key]), key

    batch = next(iter(torch.utils.data.DataLoader(task.val_set, batch_size=2)))
    one = task.sample(task.model, batch, uniform_schedule(2), torch.Generator().manual_seed(0))
    again = task.sample(task.model, batch, uniform_schedule(2), torch.Generator().manual_seed(0))
    assert one.shape == batch["frames"].shape[:2] + (4, 16, 16) and torch.equal(one, again)
    from training.tasks.student import sample_windows

    from_ref = sample_windows(task, task.model, batch, uniform_schedule(2, 0.6, "reference"),
                              torch.Generator().manual_seed(0))
    assert from_ref.shape == one.shape and not torch.equal(from_ref, one)


def test_mouth_feature_term_loads_the_sync_expert_and_weighs_in(tiny_dataset, tiny_ae,
                                                                 tiny_idenc, tiny_teacher,
                                                                 tiny_sync):
    """loss.mouth_feature alone (sync 0) loads the sync expert; the total moves by exactly
    the weight times the logged term."""
    from training.trainer import step_generator

    config, _ = make(tiny_dataset, tiny_ae, tiny_idenc, tiny_teacher)
    config = dataclasses.replace(config, sync_expert=str(tiny_sync),
                                 window=dataclasses.replace(config.window, frames=5))
    totals = {}
    for weight in (0.0, 0.5):
        run = dataclasses.replace(config, loss=dataclasses.replace(config.loss, sync=0.0,
                                                                   mouth_feature=weight))
        task = StudentTask(run, read_manifest(tiny_dataset))
        assert (task.sync is not None) == (weight > 0)
        batch = next(iter(torch.utils.data.DataLoader(task.train_set, batch_size=2)))
        with torch.no_grad():
            totals[weight], logs = task.loss(task.model, batch, step_generator(0, 0, 0))
    assert logs["mouth_feature"] > 0
    assert abs(float(totals[0.5] - totals[0.0]) - 0.5 * logs["mouth_feature"]) < 1e-5


def test_to_moves_every_frozen_network_with_the_task(tiny_dataset, tiny_ae, tiny_idenc,
                                                     tiny_teacher):
    """The trainer moves the model; the networks the task holds beside it (teacher,
    consistency target, autoencoder, identity encoder) follow through task.to, or a GPU run
    fails at its first step."""
    _, task = make(tiny_dataset, tiny_ae, tiny_idenc, tiny_teacher)
    task.to(torch.device("meta"))
    for net in (task.teacher, task.target, task.autoencoder, task.identity):
        assert {p.device.type for p in net.parameters()} == {"meta"}
    assert {p.device.type for p in task.model.parameters()} == {"cpu"}


def _adversarial(config: StudentRunConfig, weight: float) -> StudentRunConfig:
    return dataclasses.replace(config, loss=dataclasses.replace(config.loss, adversarial=weight),
                               window=dataclasses.replace(config.window, frames=3))


def test_adversarial_term_trains_its_discriminator_and_resumes_exactly(
        tiny_dataset, tiny_ae, tiny_idenc, tiny_teacher, tmp_path):
    """With loss.adversarial the discriminator is updated at every step and logged, moves with
    the task, and lives in the checkpoint: a run stopped and resumed ends where an unbroken
    run ends, discriminator included; without the weight there is no discriminator."""
    torch.set_num_threads(2)
    config, plain = make(tiny_dataset, tiny_ae, tiny_idenc, tiny_teacher)
    assert plain.adversary is None
    config = _adversarial(config, 0.5)
    manifest = read_manifest(tiny_dataset)
    task = StudentTask(config, manifest)
    before = [p.clone() for p in task.adversary.net.parameters()]
    Trainer(task, config.train, tmp_path / "a", config).fit()
    assert any(not torch.equal(a, b) for a, b in zip(before, task.adversary.net.parameters()))
    rows = [r for r in read_metrics(tmp_path / "a" / "metrics.jsonl") if r["split"] == "train"]
    assert all({"adversarial", "d_loss", "d_real", "d_fake"} <= set(r) for r in rows)

    Trainer(StudentTask(config, manifest), config.train, tmp_path / "b", config).fit(stop_at=8)
    Trainer(StudentTask(config, manifest), config.train, tmp_path / "b", config).fit()
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)["task"]["adversary"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)["task"]["adversary"]
    for key in a["net"]:
        assert torch.equal(a["net"][key], b["net"][key]), key


def test_adversary_windows_follow_the_lip_readers_view(tiny_dataset):
    """Windows are the crops of frames t-1..t+1 in order for every frame with whole
    neighbours, labelled with frame t's own viseme (the centre of its viseme window)."""
    from training.config import AdversaryConfig, WindowConfig
    from training.data.dataset import TalkingFaceDataset
    from training.models.lipread import crop_windows
    from training.models.sync import mouth_crops
    from training.tasks.adversary import MouthAdversary

    adversary = MouthAdversary(AdversaryConfig(crop=32))
    window = WindowConfig(frames=5, viseme_context=2, p_cross=0.0, with_flow=False)
    data = TalkingFaceDataset(read_manifest(tiny_dataset), "train", window, 0, 2)
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=2)))
    frames, boxes, visemes = batch["frames"], batch["mouth_boxes"], batch["visemes"]
    windows, ids = adversary.windows(frames, boxes, visemes)
    assert windows.shape == (6, 3, 32, 32) and ids.shape == (6,)
    for sample in range(2):
        crops = mouth_crops(frames[sample], boxes[sample], 32)
        assert torch.allclose(windows[3 * sample:3 * sample + 3], crop_windows(crops, 3)[1:4])
        assert torch.equal(ids[3 * sample:3 * sample + 3], visemes[sample, 1:4, 2])


def test_discriminator_learns_to_tell_sharp_mouths_from_blurred_ones():
    """A few hinge updates separate sharp windows from blurred copies of them; the student's
    term then pushes its windows towards the sharp ones and leaves the discriminator alone."""
    import torch.nn.functional as F

    from training.config import AdversaryConfig
    from training.tasks.adversary import MouthAdversary

    torch.manual_seed(0)
    adversary = MouthAdversary(AdversaryConfig(crop=32, lr=1e-3))
    sharp = torch.rand(16, 3, 32, 32) * 2 - 1
    blurred = F.avg_pool2d(sharp, 5, stride=1, padding=2)
    ids = torch.randint(0, 15, (16,))
    for _ in range(60):
        logs = adversary.update(sharp, blurred, ids)
    assert logs["d_real"] > logs["d_fake"] + 0.5
    grads = [p.grad.clone() for p in adversary.net.parameters()]
    fake = blurred.clone().requires_grad_(True)
    adversary.generator_term(fake, ids, 4).sum().backward()
    assert fake.grad is not None and float(fake.grad.abs().sum()) > 0
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, adversary.net.parameters()))
