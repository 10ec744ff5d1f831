"""The benchmarked bundle: ``--bundle DIR`` (an option of tests/conftest.py) measures any
bundle; the default is the tiny bundle the test session exports from its tiny models, until
a committed demo bundle replaces it. ``--student CKPT`` likewise picks the checkpoints of the
host-side teacher-vs-student benchmark."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def bench_bundle(request) -> Path:
    given = request.config.getoption("--bundle")
    if given:
        return Path(given)
    return request.getfixturevalue("tiny_bundle")


@pytest.fixture(scope="session")
def bench_student(request) -> Path:
    given = request.config.getoption("--student")
    if given:
        return Path(given)
    return request.getfixturevalue("tiny_student")
