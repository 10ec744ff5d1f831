"""The benchmarked bundle: ``--bundle DIR`` (an option of tests/conftest.py) measures any
bundle; the default is the committed demo bundle (bundles/demo), else the tiny bundle the
test session exports from its tiny models. ``--student CKPT`` picks the checkpoints of the
host-side teacher-vs-student benchmark (default: the tiny student; `make bench` passes the
demo run's when it exists) and ``--ae CKPT`` the decoder both of its frames use (`make bench`:
the demo's device decoder, the one the bundle ships)."""

from __future__ import annotations

from pathlib import Path

import pytest

DEMO_BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "demo"


@pytest.fixture(scope="session")
def bench_bundle(request) -> Path:
    given = request.config.getoption("--bundle")
    if given:
        return Path(given)
    if (DEMO_BUNDLE / "bundle.yaml").is_file():
        return DEMO_BUNDLE
    return request.getfixturevalue("tiny_bundle")


@pytest.fixture(scope="session")
def bench_student(request) -> Path:
    given = request.config.getoption("--student")
    if given:
        return Path(given)
    return request.getfixturevalue("tiny_student")


@pytest.fixture(scope="session")
def bench_autoencoder(request) -> str | None:
    return request.config.getoption("--ae")
