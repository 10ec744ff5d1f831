"""Frames from viseme windows: the reference graph once per stream, then per frame the
K-step sampler and, in full (E1) mode, the decoder.

The sampler is either the unrolled graph generate_K (the bundle's fixed schedule baked in;
one call) or K calls of the one-step graph ``step`` with the schedule applied here. Which is
faster depends on the device (``edge-run --autotune`` measures it); both give the same frame.

One stream = one reference and one fixed set of noises (start and re-noising), shared by
every frame: frames differ only through their visemes, so noise cannot flicker. Inputs are
allocated once; per frame only the viseme window is written.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edge_runtime.backends import open_graph
from edge_runtime.bundle import Bundle, BundleError, generate_graph
from edge_runtime.render.schedule import StepSchedule, log_snr

log = logging.getLogger(__name__)

BACKEND_PREFIX = {"onnxruntime": "onnx", "tflite": "tflite"}
SAMPLERS = ("unrolled", "step")
"""unrolled: one generate_K call per frame; step: K calls of the one-step graph."""


class Renderer:
    def __init__(self, bundle: Bundle, root: Path, steps: int, backend: str = "onnxruntime",
                 precision: str = "fp32", threads: int = 2, mode: str = "full", seed: int = 0,
                 variants: dict[str, str] | None = None, sampler: str = "unrolled"):
        """``variants`` (graph kind -> variant) overrides the backend/precision choice, e.g.
        to measure one int8 graph among fp32 ones."""
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        if steps not in bundle.schedules:
            raise BundleError(f"bundle {bundle.name!r} has no {steps}-step schedule (it has "
                              f"{sorted(bundle.schedules)})")
        prefix = BACKEND_PREFIX[backend]

        def variant_of(kind: str) -> str:
            return (variants or {}).get(kind) or bundle.precision_of(prefix, precision, kind)

        def graph(kind: str, name: str):
            return open_graph(bundle, root, variant_of(kind), name, threads)

        self.bundle, self.steps, self.mode = bundle, steps, mode
        self.reference = graph("reference", "reference")
        if sampler == "unrolled" and not bundle.has_unrolled(variant_of("generate"), steps):
            log.info("bundle %r has no %s graph; running %d calls of the step graph",
                     bundle.name, generate_graph(steps), steps)
            sampler = "step"
        if sampler == "unrolled":
            self.generate = graph("generate", generate_graph(steps))
        else:
            self.generate = StepLoop(graph("generate", "step"), bundle.schedules[steps])
        self.sampler = sampler
        self.decoder = graph("decoder", "decoder") if mode == "full" else None
        self.feeds: dict[str, np.ndarray] = {
            "visemes": np.zeros((1, 2 * bundle.viseme_context + 1), np.int32)}
        self.new_stream(seed)

    def new_stream(self, seed: int) -> None:
        """Draw the stream's noises (start, and one per re-noising step) from ``seed``."""
        rng = np.random.default_rng(seed)
        latent = (1, self.bundle.latent.channels, self.bundle.latent.size,
                  self.bundle.latent.size)
        self.feeds["noise"] = rng.standard_normal(latent).astype(np.float32)
        if self.steps > 1:
            self.feeds["renoise"] = rng.standard_normal(
                (self.steps - 1, *latent[1:])).astype(np.float32)

    def set_reference(self, image: np.ndarray) -> None:
        """uint8 RGB [res, res, 3] -> the stream's reference latent and identity."""
        ref_latent, identity = self.reference.run({"image": image})
        self.feeds["ref_latent"], self.feeds["identity"] = ref_latent, identity

    def latent(self, window: np.ndarray) -> np.ndarray:
        """Viseme tokens t-c..t+c [2c+1] -> the frame's latent [1, C, h, w]."""
        self.feeds["visemes"][0] = window
        return self.generate.run(self.feeds)[0]

    def decode(self, latent: np.ndarray) -> np.ndarray:
        return self.decoder.run({"latent": latent})[0]


class StepLoop:
    """The K-step consistency sampler over the one-step graph, with the same interface and
    result as generate_K (export/graphs.py GenerateGraph is the same loop in torch)."""

    def __init__(self, step, schedule: StepSchedule):
        self.step, self.schedule = step, schedule
        levels = log_snr(np.asarray(schedule.timesteps)).astype(np.float32)
        self.levels = [levels[k:k + 1] for k in range(schedule.steps)]  # [1] each
        abar = 1.0 / (1.0 + np.exp(-levels.astype(np.float64)))
        self.keep = np.sqrt(abar).astype(np.float32)
        self.mix = np.sqrt(1.0 - abar).astype(np.float32)
        self.feeds: dict[str, np.ndarray] = {}

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        noise = feeds["noise"]  # [1, C, h, w]
        x = noise if self.schedule.start == "noise" else \
            self.keep[0] * feeds["ref_latent"] + self.mix[0] * noise
        step_feeds = self.feeds
        for name in ("ref_latent", "identity", "visemes"):
            step_feeds[name] = feeds[name]
        x0 = x
        for k in range(self.schedule.steps):
            step_feeds["x"], step_feeds["noise_level"] = x, self.levels[k]
            x0 = self.step.run(step_feeds)[0]
            if k + 1 < self.schedule.steps:
                x = self.keep[k + 1] * x0 + self.mix[k + 1] * feeds["renoise"][k:k + 1]
        return [x0]


def sampler_macs(bundle: Bundle, steps: int, sampler: str = "unrolled") -> int:
    """MACs of one frame's K-step sampler (every variant declares its fp32 graph's count)."""
    variant = next(iter(bundle.variants))
    if sampler == "unrolled" and bundle.has_unrolled(variant, steps):
        return bundle.graph(variant, generate_graph(steps)).macs
    return steps * bundle.graph(variant, "step").macs
