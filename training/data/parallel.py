"""Run independent jobs on worker processes with a progress bar."""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

A = TypeVar("A")
R = TypeVar("R")


def worker_count(requested: int) -> int:
    """0 means one worker per available CPU core."""
    return requested if requested > 0 else max(1, len(os.sched_getaffinity(0)))


def run_parallel(fn: Callable[[A], R], jobs: Iterable[A], workers: int, desc: str,
                 total: int | None = None) -> Iterator[R]:
    """Yield fn(job) for every job, in completion order. workers == 1 runs in-process."""
    jobs = list(jobs)
    bar = tqdm(total=total or len(jobs), desc=desc, unit="clip", dynamic_ncols=True)
    try:
        if workers == 1 or len(jobs) <= 1:
            for job in jobs:
                yield fn(job)
                bar.update()
            return
        # spawn: espeak-ng and pocketsphinx hold C state that must not be forked mid-use
        with mp.get_context("spawn").Pool(workers) as pool:
            for result in pool.imap_unordered(fn, jobs):
                yield result
                bar.update()
    finally:
        bar.close()
