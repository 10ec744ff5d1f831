"""Teacher training on the tiny set: conditioning wired, losses finite, it learns."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from training.cli import main
from training.config import TeacherRunConfig, load_config
from training.data.manifest import read_manifest
from training.tasks.teacher import TeacherTask
from training.trainer import read_metrics

TINY = Path(__file__).resolve().parent.parent / "configs" / "train" / "teacher-tiny.yaml"


def tiny_config(ae: Path, idenc: Path) -> TeacherRunConfig:
    config = load_config(TINY, TeacherRunConfig)
    return dataclasses.replace(config, autoencoder=str(ae), identity_encoder=str(idenc))


def test_teacher_learns_to_denoise(tiny_dataset, tiny_ae, tiny_idenc, tiny_teacher):
    """tiny_teacher (conftest) is a finished run of configs/train/teacher-tiny.yaml."""
    config = tiny_config(tiny_ae, tiny_idenc)
    task = TeacherTask(config, read_manifest(tiny_dataset))  # a fresh, untrained model
    batches = [next(iter(torch.utils.data.DataLoader(task.val_set, batch_size=2)))]
    with torch.no_grad():
        before = task.validate(task.model.eval(), batches)["val_loss"]
    rows = read_metrics(tiny_teacher.parent / "metrics.jsonl")
    train = [r for r in rows if r["split"] == "train"]
    assert all(torch.isfinite(torch.tensor([r["loss"], r["identity"], r["temporal"],
                                            r["mouth"], r["leak"], r["mouth_motion"]])).all()
               for r in train)
    assert any(r["cross_share"] > 0 for r in train)  # eq 12 samples were drawn
    task.model.load_state_dict(torch.load(tiny_teacher, weights_only=False)["model"])
    with torch.no_grad():
        after = task.validate(task.model.eval(), batches)["val_loss"]
    assert after < 0.9 * before, (before, after)


def test_missing_autoencoder_is_a_one_line_error(tiny_dataset, tmp_path, capsys):
    bad = tmp_path / "t.yaml"
    bad.write_text(TINY.read_text() + f"autoencoder: {tmp_path / 'none.pt'}\n")
    code = main(["train", "teacher", "--config", str(bad), "--data", str(tiny_dataset),
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "autoencoder checkpoint not found" in err and "Traceback" not in err


def test_latent_channels_must_match_the_autoencoder(tiny_dataset, tiny_ae, tiny_idenc):
    """A denoiser for another latent width than its autoencoder's is refused in one line."""
    import pytest

    from training.errors import UserError

    config = tiny_config(tiny_ae, tiny_idenc)
    channels = config.model.latent_channels
    wrong = dataclasses.replace(config, model=dataclasses.replace(config.model,
                                                                  latent_channels=channels + 4))
    with pytest.raises(UserError, match=f"model.latent_channels is {channels + 4}, but the "
                                        f"autoencoder .* has {channels} latent channels"):
        TeacherTask(wrong, read_manifest(tiny_dataset))


def test_sync_term_reaches_the_denoiser(tiny_dataset, tiny_ae, tiny_idenc, tiny_sync):
    """With loss.sync > 0 the frozen sync expert scores the decoded prediction and its
    gradient reaches the denoiser; a window shorter than the expert's is refused."""
    import pytest

    from training.errors import UserError
    from training.trainer import step_generator

    config = tiny_config(tiny_ae, tiny_idenc)
    config = dataclasses.replace(
        config, sync_expert=str(tiny_sync),
        loss=dataclasses.replace(config.loss, sync=1.0),
        window=dataclasses.replace(config.window, frames=5, p_cross=0.0))
    task = TeacherTask(config, read_manifest(tiny_dataset))
    for block in task.model.modules():  # open the zero-initialised residual branches
        if hasattr(block, "scale"):
            torch.nn.init.constant_(block.scale, 0.5)
    batch = next(iter(torch.utils.data.DataLoader(task.train_set, batch_size=2)))
    _, logs = task.loss(task.model, batch, step_generator(0, 0, 0))
    assert "sync" in logs and logs["sync"] > 0

    z0, ref, ident = task.condition(batch)
    t = torch.full((len(z0),), 0.3)
    x0 = task.predict(task.model, z0, t, ref, ident, batch["visemes"])
    sync = task.regularisers(x0, batch, ident)["sync"]
    assert sync.shape == (2,) and bool(((sync >= 0) & (sync <= 2)).all())
    sync.sum().backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0
               for p in task.model.parameters())

    short = dataclasses.replace(config, window=dataclasses.replace(config.window, frames=2))
    with pytest.raises(UserError, match="needs windows of >= 5 frames"):
        TeacherTask(short, read_manifest(tiny_dataset))
