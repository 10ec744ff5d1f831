"""Synthetic data generation speed (clips per second). Run: make bench."""

from __future__ import annotations

import itertools

from training.config import SynthConfig
from training.data.synth import ClipJob, generate_clip


def test_synth_clip_generation(benchmark, tmp_path):
    config = SynthConfig(workers=1)
    counter = itertools.count()

    def one_clip():
        i = next(counter)
        return generate_clip(ClipJob(config, i % config.identities, i, "train", tmp_path))

    record = benchmark.pedantic(one_clip, rounds=8, iterations=1, warmup_rounds=1)
    benchmark.extra_info["frames_per_clip_last"] = record.frame_count
    benchmark.extra_info["clips_per_second_one_core"] = 1.0 / benchmark.stats.stats.mean
