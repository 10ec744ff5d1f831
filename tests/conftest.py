"""Shared fixtures: one tiny synthetic dataset per test session (real generator, real files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import SynthConfig, load_config

REPO = Path(__file__).resolve().parent.parent
TINY_CONFIG = REPO / "configs" / "data" / "synth-tiny.yaml"


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
