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
