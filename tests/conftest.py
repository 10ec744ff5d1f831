"""Shared fixtures: one tiny synthetic dataset per test session (real generator, real files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import SynthConfig, load_config

REPO = Path(__file__).resolve().parent.parent
TINY_CONFIG = REPO / "configs" / "data" / "synth-tiny.yaml"


def pytest_addoption(parser):
    parser.addoption("--bundle", default=None,
                     help="bundle folder for tests/benchmarks (default: the tiny bundle)")
    parser.addoption("--student", default=None,
                     help="student final.pt (it names its teacher) for the teacher-vs-student "
                          "benchmark (default: the tiny student)")
    parser.addoption("--ae", default=None,
                     help="autoencoder final.pt whose decoder both frames of the "
                          "teacher-vs-student benchmark use, e.g. the device decoder (default: "
                          "the student's own autoencoder)")


@pytest.fixture(scope="session", autouse=True)
def _c2pa_keys_in_a_temporary_state_folder(tmp_path_factory):
    """mp4 sinks make a C2PA device key on first use (edge_runtime.marking.credentials): in
    the session's temporary folder, not the user's state folder."""
    import os

    saved = {k: os.environ.get(k) for k in ("XDG_STATE_HOME", "STATE_DIRECTORY")}
    os.environ.pop("STATE_DIRECTORY", None)
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def tiny_config() -> SynthConfig:
    return load_config(TINY_CONFIG, SynthConfig)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, tiny_config) -> Path:
    from training.data.synth import generate

    out = tmp_path_factory.mktemp("tiny")
    generate(tiny_config, out)
    return out


def _train(target: str, config_name: str, data: Path, out: Path) -> Path:
    from training.data.manifest import read_manifest
    from training.train import run_training

    return run_training(target, REPO / "configs" / "train" / config_name, read_manifest(data),
                        out)


@pytest.fixture(scope="session")
def tiny_ae(tiny_dataset, tmp_path_factory) -> Path:
    """final.pt of a tiny autoencoder run on the tiny dataset."""
    return _train("ae", "ae-tiny.yaml", tiny_dataset, tmp_path_factory.mktemp("ae"))


@pytest.fixture(scope="session")
def tiny_idenc(tiny_dataset, tmp_path_factory) -> Path:
    """final.pt of a tiny identity-encoder run on the tiny dataset."""
    return _train("idenc", "idenc-tiny.yaml", tiny_dataset, tmp_path_factory.mktemp("idenc"))


@pytest.fixture(scope="session")
def tiny_teacher(tiny_dataset, tiny_ae, tiny_idenc, tmp_path_factory) -> Path:
    """final.pt of a tiny teacher run (on the tiny ae and identity encoder)."""
    import dataclasses

    from training.config import TeacherRunConfig
    from training.data.manifest import read_manifest
    from training.tasks.teacher import TeacherTask
    from training.trainer import Trainer

    config = load_config(REPO / "configs" / "train" / "teacher-tiny.yaml", TeacherRunConfig)
    config = dataclasses.replace(config, autoencoder=str(tiny_ae), identity_encoder=str(tiny_idenc))
    out = tmp_path_factory.mktemp("teacher")
    return Trainer(TeacherTask(config, read_manifest(tiny_dataset)), config.train, out,
                   config).fit()


@pytest.fixture(scope="session")
def tiny_student(tiny_dataset, tiny_ae, tiny_idenc, tiny_teacher, tmp_path_factory) -> Path:
    """final.pt of a tiny student distilled from the tiny teacher."""
    import dataclasses

    from training.config import StudentRunConfig
    from training.data.manifest import read_manifest
    from training.tasks.student import StudentTask
    from training.trainer import Trainer

    config = load_config(REPO / "configs" / "train" / "student-tiny.yaml", StudentRunConfig)
    config = dataclasses.replace(config, teacher=str(tiny_teacher), autoencoder=str(tiny_ae),
                                 identity_encoder=str(tiny_idenc))
    out = tmp_path_factory.mktemp("student")
    return Trainer(StudentTask(config, read_manifest(tiny_dataset)), config.train, out,
                   config).fit()


@pytest.fixture(scope="session")
def tiny_sync(tiny_dataset, tmp_path_factory) -> Path:
    """final.pt of a tiny sync-expert run on the tiny dataset."""
    return _train("sync", "sync-tiny.yaml", tiny_dataset, tmp_path_factory.mktemp("sync"))


@pytest.fixture(scope="session")
def tiny_lipread(tiny_dataset, tmp_path_factory) -> Path:
    """final.pt of a tiny lip-reader run on the tiny dataset."""
    return _train("lipread", "lipread-tiny.yaml", tiny_dataset,
                  tmp_path_factory.mktemp("lipread"))


@pytest.fixture(scope="session")
def tiny_visemes(tiny_dataset, tmp_path_factory) -> Path:
    """final.pt of a tiny audio viseme recogniser run on the tiny dataset."""
    return _train("visemes", "visemes-tiny.yaml", tiny_dataset,
                  tmp_path_factory.mktemp("visemes"))


@pytest.fixture(scope="session")
def tiny_bundle(tiny_dataset, tiny_student, tiny_visemes, tmp_path_factory) -> Path:
    """A bundle (all four variants, with the viseme recogniser) from the tiny models."""
    from export.bundle import export_bundle
    from training.data.manifest import read_manifest

    out = tmp_path_factory.mktemp("bundles") / "tiny"
    export_bundle(tiny_student, read_manifest(tiny_dataset), out, calibration_clips=2,
                  frames_per_clip=3, visemes_path=tiny_visemes)
    return out
