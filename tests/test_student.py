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


def test_chin_term_counts_only_the_real_texture_windows(tiny_dataset, tiny_ae, tiny_idenc,
                                                        tiny_teacher):
    """loss.chin_motion on: a synthetic window scores 0 and keeps its leak; the same window
    marked real-texture scores the truth's moving pixels outside the mouth box (the tiny
    set's head sway), leaves them out of leak, and the total moves by the weight times the
    term. Off, the term is not computed."""
    from training.trainer import step_generator

    config, off = make(tiny_dataset, tiny_ae, tiny_idenc, tiny_teacher)
    run = dataclasses.replace(config, loss=dataclasses.replace(config.loss, chin_motion=2.0))
    task = StudentTask(run, read_manifest(tiny_dataset))
    task.model.load_state_dict(off.model.state_dict())
    task.target.load_state_dict(off.target.state_dict())
    batch = next(iter(torch.utils.data.DataLoader(task.train_set, batch_size=2)))
    assert not batch["real_texture"].any()
    results = {}
    for name, one in (("off", off), ("synthetic", task)):
        with torch.no_grad():
            results[name] = one.loss(one.model, batch, step_generator(0, 0, 0))
    real = {**batch, "real_texture": torch.ones(2, dtype=torch.bool)}
    with torch.no_grad():
        results["real"] = task.loss(task.model, real, step_generator(0, 0, 0))
    assert "chin_motion" not in results["off"][1]
    assert results["synthetic"][1]["chin_motion"] == 0
    assert results["synthetic"][1]["leak"] == results["off"][1]["leak"]
    assert abs(float(results["synthetic"][0] - results["off"][0])) < 1e-6
    logs = results["real"][1]
    assert logs["chin_motion"] > 0 and logs["leak"] < results["off"][1]["leak"]
    others = {k: v for k, v in logs.items() if k not in ("chin_motion", "leak")}
    assert others == {k: v for k, v in results["off"][1].items() if k in others}
    expected = (float(results["off"][0]) + run.loss.leak * (logs["leak"]
                - results["off"][1]["leak"]) + 2.0 * logs["chin_motion"])
    assert abs(float(results["real"][0]) - expected) < 1e-5


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
