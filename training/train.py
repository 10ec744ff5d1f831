"""Build the task for a ``tsd train`` target and run the Trainer (single process or DDP)."""

from __future__ import annotations

from pathlib import Path

from training.config import (
    AERunConfig,
    IdentityRunConfig,
    LipReadRunConfig,
    StudentRegressRunConfig,
    StudentRunConfig,
    SyncRunConfig,
    TeacherRunConfig,
    VisemeRunConfig,
    load_config,
)
from training.data.manifest import Manifest
from training.trainer import Trainer, init_distributed

RUN_CONFIGS = {"ae": AERunConfig, "idenc": IdentityRunConfig, "teacher": TeacherRunConfig,
               "student": StudentRunConfig, "student-regress": StudentRegressRunConfig,
               "sync": SyncRunConfig,
               "lipread": LipReadRunConfig, "visemes": VisemeRunConfig}


def build_task(target: str, config, manifest: Manifest | None, speech: tuple[Path, ...] = ()):
    if target == "ae":
        from training.tasks.autoencoder import AutoencoderTask

        return AutoencoderTask(config, manifest)
    if target == "idenc":
        from training.tasks.identity import IdentityTask

        return IdentityTask(config, manifest)
    if target == "teacher":
        from training.tasks.teacher import TeacherTask

        return TeacherTask(config, manifest)
    if target == "student":
        from training.tasks.student import StudentTask

        return StudentTask(config, manifest)
    if target == "student-regress":
        from training.tasks.student_regress import StudentRegressTask

        return StudentRegressTask(config, manifest)
    if target == "sync":
        from training.tasks.sync import SyncTask

        return SyncTask(config, manifest)
    if target == "lipread":
        from training.tasks.lipread import LipReadTask

        return LipReadTask(config, manifest)
    if target == "visemes":
        from training.tasks.visemes import VisemeTask

        return VisemeTask(config, manifest, speech)
    raise ValueError(f"unknown training target {target!r}")


def run_training(target: str, config_path: str | Path, manifest: Manifest | None, out: Path,
                 stop_at: int | None = None, speech: tuple[Path, ...] = (),
                 init: Path | None = None) -> Path:
    """Train ``target``; ``manifest`` may be None only for ``visemes`` with speech sets;
    ``init``: a finished run to continue when ``out`` has no last.pt."""
    config = load_config(config_path, RUN_CONFIGS[target])
    info = init_distributed()
    task = build_task(target, config, manifest, speech)
    return Trainer(task, config.train, out, config, info).fit(stop_at, init)
