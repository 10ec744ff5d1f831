"""The whole training pipeline on the tiny set: autoencoder -> teacher -> student -> eval.

A few hundred steps per stage (configs/train/e2e/). The trivial baseline is the same student
untrained (one step of training): the reference-centred denoiser then returns the reference
itself, a still picture of the right person. The distilled student must move with the
visemes (every frame shares the reference and the noise, so any change over time comes from
the viseme conditioning) without losing the picture or the identity, and the teacher must
denoise; a pipeline that trains but passes nothing useful along fails CI.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from training.config import AERunConfig, StudentRunConfig, TeacherRunConfig, load_config
from training.data.manifest import read_manifest
from training.trainer import Trainer

E2E = Path(__file__).resolve().parent.parent / "configs" / "train" / "e2e"


def _fit(task_cls, config, data: Path, out: Path) -> Path:
    return Trainer(task_cls(config, read_manifest(data)), config.train, out, config).fit()


@pytest.fixture(scope="module")
def pipeline(tiny_dataset, tiny_idenc, tmp_path_factory) -> dict[str, Path]:
    from training.tasks.autoencoder import AutoencoderTask
    from training.tasks.student import StudentTask
    from training.tasks.teacher import TeacherTask

    root = tmp_path_factory.mktemp("e2e")
    ae = _fit(AutoencoderTask, load_config(E2E / "ae.yaml", AERunConfig), tiny_dataset,
              root / "ae")
    teacher_config = dataclasses.replace(load_config(E2E / "teacher.yaml", TeacherRunConfig),
                                         autoencoder=str(ae), identity_encoder=str(tiny_idenc))
    teacher = _fit(TeacherTask, teacher_config, tiny_dataset, root / "teacher")
    student_config = dataclasses.replace(load_config(E2E / "student.yaml", StudentRunConfig),
                                         teacher=str(teacher), autoencoder=str(ae),
                                         identity_encoder=str(tiny_idenc))
    student = _fit(StudentTask, student_config, tiny_dataset, root / "student")
    untrained_config = dataclasses.replace(
        student_config, train=dataclasses.replace(student_config.train, steps=1, val_every=1,
                                                  checkpoint_every=1))
    untrained = _fit(StudentTask, untrained_config, tiny_dataset, root / "untrained")
    return {"student": student, "untrained": untrained, "root": root}


def _report(student: Path, data: Path, out: Path) -> dict:
    from training.config import EvalConfig
    from training.eval.report import run_eval

    config = EvalConfig(max_clips=2, max_frames=15, teacher_steps=(10,), reference_starts=(0.7,))
    return run_eval(student, read_manifest(data), out, config)


def test_distilled_student_moves_with_the_visemes_where_the_untrained_one_stands_still(
        pipeline, tiny_dataset):
    root = pipeline["root"]
    report = _report(pipeline["student"], tiny_dataset, root / "eval-trained")
    trained = report["methods"]
    baseline = _report(pipeline["untrained"], tiny_dataset, root / "eval-untrained")["methods"]
    for steps in (1, 2):
        ours, base = trained[f"student_{steps}"], baseline[f"student_{steps}"]
        assert ours["temporal_l1"] > 100 * base["temporal_l1"] + 1e-5, (steps, ours, base)
        assert ours["psnr_vs_ae"] > base["psnr_vs_ae"] - 1.5, (steps, ours, base)
        assert ours["mouth_psnr"] > base["mouth_psnr"] - 0.5, (steps, ours, base)
        assert ours["identity_cosine"] > 0.9, (steps, ours)
    table1 = {(row["t"], row["method"]): row["psnr_vs_ae"] for row in report["table1"]}
    assert table1[(0.5, "teacher")] > table1[(0.5, "noisy")] + 5.0, table1
    # the autoencoder is no longer degenerate: reconstructions change over time
    assert trained["reconstruction"]["temporal_l1"] > 1e-4
