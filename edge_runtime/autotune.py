"""``edge-run --autotune``: measure the bundle's variants on this device and keep the fastest.

Which variant is fastest is a property of the device, not of the model: int8 can be slower
than fp32 on a Cortex-A72 (no dot-product instructions), the unrolled K-step graph can lose
to K calls of the one-step graph when its constants thrash a small cache, and more threads
stop paying once the graphs are this small. So every combination of backend, precision,
thread count and sampler that the bundle offers is timed on whole frames (viseme recogniser
on 40 ms of audio + the K-step sampler + the decoder in full mode), and the winner's
settings are written into a config file.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from edge_runtime.audio.features import SAMPLE_RATE
from edge_runtime.backends import BACKENDS, open_graph
from edge_runtime.bundle import Bundle, BundleError
from edge_runtime.render.renderer import BACKEND_PREFIX, SAMPLERS, Renderer

log = logging.getLogger(__name__)

TUNED_KEYS = ("backend", "precision", "threads", "sampler")
"""The settings autotune chooses; it leaves every other key of the config file alone."""


@dataclass(frozen=True)
class Candidate:
    backend: str
    precision: str
    threads: int
    sampler: str

    def settings(self) -> dict:
        return {k: getattr(self, k) for k in TUNED_KEYS}


@dataclass(frozen=True)
class Measurement:
    candidate: Candidate
    frame_ms: list[float]

    @property
    def median_ms(self) -> float:
        return float(np.median(self.frame_ms))

    @property
    def p95_ms(self) -> float:
        return float(np.percentile(self.frame_ms, 95))


def thread_counts(cpus: int | None = None) -> list[int]:
    """1, 2, 4, ... up to the number of CPUs (a Pi 4 has 4)."""
    cpus = cpus or os.cpu_count() or 1
    counts = [1]
    while counts[-1] * 2 <= cpus:
        counts.append(counts[-1] * 2)
    return counts


def candidates(bundle: Bundle, threads: list[int], steps: int) -> list[Candidate]:
    """Every runnable combination (unrolled only where the bundle has generate_K)."""
    found = []
    for backend, precision, n, sampler in itertools.product(BACKENDS, ("fp32", "int8"),
                                                            threads, SAMPLERS):
        if f"{BACKEND_PREFIX[backend]}-{precision}" not in bundle.variants:
            continue
        variant = bundle.precision_of(BACKEND_PREFIX[backend], precision, "generate")
        if sampler == "unrolled" and not bundle.has_unrolled(variant, steps):
            continue
        found.append(Candidate(backend, precision, n, sampler))
    return found


def _speech_like(seconds: float) -> np.ndarray:
    """A voiced buzz: it keeps the viseme recogniser on its speech path."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.2 * np.sign(np.sin(2 * np.pi * 140 * t)) * np.sin(2 * np.pi * 3 * t)
            ).astype(np.float32)


def measure(bundle: Bundle, root: Path, candidate: Candidate, steps: int, mode: str,
            frames: int = 30, warmup: int = 5) -> Measurement:
    """Whole-frame wall time of ``candidate``; ``frames`` timed after ``warmup``."""
    from edge_runtime.visemes.stream import LearnedRecognizer, VisemeStream

    renderer = Renderer(bundle, root, steps, candidate.backend, candidate.precision,
                        candidate.threads, mode, sampler=candidate.sampler)
    renderer.set_reference(np.full((bundle.resolution, bundle.resolution, 3), 128, np.uint8))
    stream = None
    if bundle.recognizer is not None:
        variant = bundle.precision_of(BACKEND_PREFIX[candidate.backend], candidate.precision,
                                      "visemes")
        session = open_graph(bundle, root, variant, "visemes", candidate.threads)
        stream = VisemeStream(LearnedRecognizer(session, bundle.recognizer, bundle.audio))
        stream.push(_speech_like(1.0))
    chunk = _speech_like(1.0 / bundle.fps)
    window = np.zeros(2 * bundle.viseme_context + 1, np.int32)
    times = []
    for i in range(warmup + frames):
        start = time.perf_counter()
        if stream is not None:
            stream.push(chunk)
        latent = renderer.latent(window)
        if mode == "full":
            renderer.decode(latent)
        if i >= warmup:
            times.append(1000 * (time.perf_counter() - start))
    return Measurement(candidate, times)


def autotune(bundle: Bundle, root: Path, steps: int, mode: str,
             threads: list[int] | None = None, frames: int = 30) -> list[Measurement]:
    """Every candidate measured, fastest (median frame time) first."""
    found = candidates(bundle, threads or thread_counts(), steps)
    if not found:
        raise BundleError(f"bundle {bundle.name!r} has no variant this runtime can run")
    results = []
    for candidate in found:
        result = measure(bundle, root, candidate, steps, mode, frames)
        log.info("autotune: %-11s %-4s threads %d %-8s median %.2f ms, p95 %.2f ms",
                 candidate.backend, candidate.precision, candidate.threads, candidate.sampler,
                 result.median_ms, result.p95_ms)
        results.append(result)
    return sorted(results, key=lambda r: r.median_ms)


def write_choice(path: Path, best: Candidate) -> None:
    """Merge the chosen settings into the YAML config at ``path`` (created if missing),
    atomically; other keys are kept."""
    data = {}
    if path.is_file():
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of settings")
    data |= best.settings()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.replace(tmp, path)
