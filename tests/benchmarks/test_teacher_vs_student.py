"""Host side (torch): one frame by the teacher's 50-step DDIM vs by the student's 2 steps,
both decoded, in the same run (the models issue's speed-up; tsd bench-report divides them).
Measurements only."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from training.eval.generate import (  # noqa: E402
    StreamNoise,
    condition,
    student_sample,
    teacher_ddim,
)
from training.eval.report import load_models  # noqa: E402

METHODS = {"teacher_ddim_50": 50, "student_2": 2}
SIZE = 128
"""The deployment resolution (the networks are convolutional: any checkpoint runs at it)."""


@pytest.mark.parametrize("method", list(METHODS))
def test_frame_by_teacher_or_student(benchmark, bench_student, method):
    torch.set_num_threads(2)
    steps = METHODS[method]
    models = load_models(bench_student, None, None, (2,))
    frame = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    visemes = torch.zeros(1, 2 * models.viseme_context + 1, dtype=torch.long)
    cond = condition(models.autoencoder, models.identity, frame, frame[0], visemes)
    noise = StreamNoise.draw(tuple(cond.ref.shape[1:]), seed=0)

    @torch.no_grad()
    def one_frame():
        if method.startswith("teacher"):
            latent = teacher_ddim(models.teacher, cond, noise, steps)
        else:
            latent = student_sample(models.student, cond, noise, models.schedules[2])
        return models.autoencoder.decode(latent)

    benchmark.pedantic(one_frame, rounds=5 if steps > 2 else 30, warmup_rounds=1)
    benchmark.extra_info |= {"stage": f"host torch frame: {method} + decoder", "steps": steps,
                             "method": method, "threads": 2}
