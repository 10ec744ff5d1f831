"""The student's regression stage: held latents cached once, frames drawn with the real
share, mouth-weighted regression at the sampler's noise levels, exact resume, and the
student stage that continues from it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from training.config import StudentRegressRunConfig, StudentRunConfig, load_config
from training.data.latents import HeldLatentFrames, HeldLatents, mouth_cells
from training.data.manifest import read_manifest
from training.models.loading import load_frozen
from training.tasks.student_regress import StudentRegressTask
from training.trainer import Trainer, read_metrics

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "configs" / "train" / "student-regress-tiny.yaml"


def make(tiny_dataset, tiny_ae, tiny_idenc, cache: Path):
    config = load_config(TINY, StudentRegressRunConfig)
    config = dataclasses.replace(config, autoencoder=str(tiny_ae),
                                 identity_encoder=str(tiny_idenc), latent_cache=str(cache))
    return config, StudentRegressTask(config, read_manifest(tiny_dataset))


def test_mouth_cells_cover_the_box_and_one_cell_around_it():
    cells = mouth_cells(np.array([[40.0, 80.0, 72.0, 96.0]]), 8.0, 16)[0]
    rows, cols = np.nonzero(cells)
    # centres 4, 12, ...: x in [32, 80] -> columns 4..9, y in [72, 104] -> rows 9..12
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (4, 9, 9, 12)
    assert cells.sum() == 6 * 4


def synthetic_and_real(frames_per_clip: int = 50) -> HeldLatents:
    """Two synthetic clips and one real-texture clip of constant latents (value = clip)."""
    k = 3
    clip = np.repeat(np.arange(k), frames_per_clip)
    z = np.broadcast_to(clip[:, None, None, None], (len(clip), 2, 4, 4)).astype(np.float16)
    return HeldLatents(z=z, mouth=np.zeros((len(clip), 4, 4), bool),
                       visemes=np.zeros((len(clip), 5), np.int64), clip=clip,
                       ref=np.zeros((k, 2, 4, 4), np.float16),
                       identity=np.zeros((k, 8), np.float32),
                       real=np.array([False, False, True]), ids=np.array(["a", "b", "r"]))


def test_frames_are_drawn_with_the_real_share_and_depend_only_on_the_index():
    latents = synthetic_and_real()
    frames = HeldLatentFrames(latents, seed=3, real_share=0.2)
    draws = np.array([int(frames[i]["z0"][0, 0, 0]) for i in range(2000)])
    assert abs((draws == 2).mean() - 0.2) < 0.03
    assert abs((draws == 0).mean() - 0.4) < 0.04
    assert all(torch.equal(frames[i]["z0"], HeldLatentFrames(latents, 3, 0.2)[i]["z0"])
               for i in (0, 7, 1999))
    alike = HeldLatentFrames(latents, seed=3, real_share=None)
    assert abs(np.mean([int(alike[i]["z0"][0, 0, 0]) == 2 for i in range(2000)]) - 1 / 3) < 0.04


def test_regression_caches_latents_trains_resumes_exactly_and_feeds_a_student_stage(
        tiny_dataset, tiny_ae, tiny_idenc, tiny_teacher, tmp_path):
    torch.set_num_threads(2)
    cache = tmp_path / "cache"
    config, task = make(tiny_dataset, tiny_ae, tiny_idenc, cache)
    cached = sorted(cache.glob("held-latents-*.npz"))
    assert [p.name.split("-")[2] for p in cached] == ["train", "val"]
    manifest = read_manifest(tiny_dataset)
    train = HeldLatents.load(next(p for p in cached if "-train-" in p.name))
    assert len(train.ref) == len(manifest.split("train"))
    assert len(train.z) == sum(c.frame_count for c in manifest.split("train"))
    autoencoder = load_frozen(tiny_ae, "autoencoder")
    first = manifest.split("train")[0]
    from training.data.dataset import to_tensor_image
    from training.data.media import read_frames

    with torch.no_grad():
        z = autoencoder.encode(to_tensor_image(read_frames(
            manifest.resolve(first.held_frames), 0, 2)))
    assert torch.allclose(torch.from_numpy(train.z[:2].astype(np.float32)), z, atol=2e-2)
    assert train.mouth[:first.frame_count].any(axis=(1, 2)).all()

    stamps = [p.stat().st_mtime_ns for p in cached]
    Trainer(task, config.train, tmp_path / "a", config).fit()
    _, again = make(tiny_dataset, tiny_ae, tiny_idenc, cache)  # read back, not encoded again
    assert [p.stat().st_mtime_ns for p in cached] == stamps
    Trainer(again, config.train, tmp_path / "b", config).fit(stop_at=6)
    _, resumed = make(tiny_dataset, tiny_ae, tiny_idenc, cache)
    Trainer(resumed, config.train, tmp_path / "b", config).fit()
    a = torch.load(tmp_path / "a" / "final.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "final.pt", weights_only=False)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    rows = read_metrics(tmp_path / "a" / "metrics.jsonl")
    train_rows = [r for r in rows if r["split"] == "train"]
    assert all(np.isfinite(r["mouth_mse"]) and r["mouth_mse"] > 0 for r in train_rows)
    assert {"val_loss", "latent_mse", "mouth_mse"} <= set(rows[-1])

    student = load_config(REPO / "configs" / "train" / "student-tiny.yaml", StudentRunConfig)
    student = dataclasses.replace(
        student, teacher=str(tiny_teacher), autoencoder=str(tiny_ae),
        identity_encoder=str(tiny_idenc),
        train=dataclasses.replace(student.train, steps=a["step"] + 4,
                                  schedule_start=a["step"], val_every=100))
    from training.tasks.student import StudentTask

    out = tmp_path / "student"
    earlier = dataclasses.replace(student, train=dataclasses.replace(
        student.train, steps=3, schedule_start=0))
    Trainer(StudentTask(earlier, manifest), earlier.train, out, earlier).fit()  # a last.pt
    trainer = Trainer(StudentTask(student, manifest), student.train, out, student)
    trainer.fit(init=tmp_path / "a" / "final.pt")  # further along than out/last.pt
    final = torch.load(out / "final.pt", weights_only=False)
    assert final["step"] == a["step"] + 4


def test_a_regression_on_the_wrong_latent_width_is_refused(tiny_dataset, tiny_ae, tiny_idenc,
                                                           tmp_path):
    from training.errors import UserError

    config = load_config(TINY, StudentRegressRunConfig)
    config = dataclasses.replace(config, autoencoder=str(tiny_ae),
                                 identity_encoder=str(tiny_idenc),
                                 model=dataclasses.replace(config.model, latent_channels=3))
    with pytest.raises(UserError, match="latent channels"):
        StudentRegressTask(config, read_manifest(tiny_dataset))
