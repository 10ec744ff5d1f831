"""Device latency per stage and per whole frame (pytest-benchmark; measurements only, no
timing assertions). On the device: pytest tests/benchmarks --benchmark-only [--bundle DIR].

Stages: audio front end + viseme recogniser (one 40 ms frame of audio), one student step,
generate_K (K steps unrolled), decoder, hybrid message encoding; whole frames: E1 (visemes +
generate_K + decoder + the pipeline's glue) and E2 (visemes + generate_K + wire encoding).
"""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.audio_features import SAMPLE_RATE
from edge_runtime.backends import open_graph
from edge_runtime.bundle import load_bundle
from edge_runtime.pipeline import Pipeline
from edge_runtime.renderer import BACKEND_PREFIX, Renderer
from edge_runtime.sinks import NullSink
from edge_runtime.viseme_stream import LearnedRecognizer, SilentRecognizer, VisemeStream
from edge_runtime.wire import LatentMessage, encode

VARIANTS = [("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("tflite", "fp32"),
            ("tflite", "int8")]
THREADS = [1, 2]
STEPS = [1, 2, 4, 8]


def _require(bundle, backend: str, precision: str) -> None:
    if f"{BACKEND_PREFIX[backend]}-{precision}" not in bundle.variants:
        pytest.skip(f"the bundle has no {BACKEND_PREFIX[backend]}-{precision} variant")


def _renderer(bundle_dir, steps, backend, precision, threads, mode="full") -> Renderer:
    bundle, root = load_bundle(bundle_dir)
    _require(bundle, backend, precision)
    renderer = Renderer(bundle, root, steps, backend, precision, threads, mode)
    renderer.set_reference(np.full((bundle.resolution, bundle.resolution, 3), 128, np.uint8))
    return renderer


def _speech(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.2 * np.sin(2 * np.pi * 180 * t) * (1 + rng.standard_normal(len(t)) * 0.1)
            ).astype(np.float32)


def _info(benchmark, bundle_dir, graph: str | None = None, **extra) -> None:
    bundle, _ = load_bundle(bundle_dir)
    benchmark.extra_info |= {"bundle": bundle.name, "resolution": bundle.resolution} | extra
    if graph:
        benchmark.extra_info["macs"] = bundle.graph("onnx-fp32", graph).macs


@pytest.mark.parametrize("backend, precision", VARIANTS)
@pytest.mark.parametrize("threads", THREADS)
def test_visemes_per_frame(benchmark, bench_bundle, backend, precision, threads):
    bundle, root = load_bundle(bench_bundle)
    if bundle.recognizer is None:
        pytest.skip("the bundle has no viseme recogniser")
    _require(bundle, backend, precision)
    variant = bundle.precision_of(BACKEND_PREFIX[backend], precision, "visemes")
    session = open_graph(bundle, root, variant, "visemes", threads)
    stream = VisemeStream(LearnedRecognizer(session, bundle.recognizer, bundle.audio.floor))
    stream.push(_speech(1.0))
    chunk = _speech(0.04)
    benchmark(stream.push, chunk)
    _info(benchmark, bench_bundle, "visemes", stage="log-mel + recogniser, 40 ms of audio",
          backend=backend, precision=precision, threads=threads)


@pytest.mark.parametrize("backend, precision", VARIANTS)
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("steps", STEPS)
def test_generate(benchmark, bench_bundle, backend, precision, threads, steps):
    renderer = _renderer(bench_bundle, steps, backend, precision, threads)
    window = np.array([0, 3, 10, 10, 0], np.int32)[:2 * renderer.bundle.viseme_context + 1]
    benchmark(renderer.latent, window)
    _info(benchmark, bench_bundle, f"generate_{steps}", stage=f"generate_{steps}",
          backend=backend, precision=precision, threads=threads, steps=steps)


@pytest.mark.parametrize("backend, precision", VARIANTS)
@pytest.mark.parametrize("threads", THREADS)
def test_decoder(benchmark, bench_bundle, backend, precision, threads):
    renderer = _renderer(bench_bundle, 2, backend, precision, threads)
    latent = np.zeros((1, 4, 16, 16), np.float32)
    benchmark(renderer.decode, latent)
    _info(benchmark, bench_bundle, "decoder", stage="decoder", backend=backend,
          precision=precision, threads=threads)


def test_wire_encoding(benchmark):
    latent = np.random.default_rng(0).standard_normal((4, 16, 16)).astype(np.float16)
    benchmark(lambda: encode(LatentMessage(1, 0, latent), b"0123456789abcdef"))
    benchmark.extra_info["stage"] = "hybrid message (fp16 + HMAC)"


@pytest.mark.parametrize("mode", ["full", "hybrid"])
@pytest.mark.parametrize("backend, precision", VARIANTS)
@pytest.mark.parametrize("steps", STEPS)
def test_whole_frame(benchmark, bench_bundle, mode, backend, precision, steps):
    """Everything a frame costs: 40 ms of audio through the front end and recogniser, the
    pipeline's glue, generate_K, then the decoder (full) or the wire encoding (hybrid)."""
    bundle, root = load_bundle(bench_bundle)
    renderer = _renderer(bench_bundle, steps, backend, precision, 2, mode)
    if bundle.recognizer is None:
        recognizer = SilentRecognizer()  # the frame then lacks the recogniser's cost
        benchmark.extra_info["recogniser"] = "none (the bundle has none)"
    else:
        variant = bundle.precision_of(BACKEND_PREFIX[backend], precision, "visemes")
        recognizer = LearnedRecognizer(open_graph(bundle, root, variant, "visemes", 2),
                                       bundle.recognizer, bundle.audio.floor)

    class WireSink(NullSink):
        def write(self, index, latent):
            encode(LatentMessage(index, 0, latent[0].astype(np.float16)))

    pipeline = Pipeline(VisemeStream(recognizer), renderer,
                        NullSink() if mode == "full" else WireSink())
    pipeline.feed(_speech(0.5))
    chunk = _speech(0.04)
    benchmark(pipeline.feed, chunk)
    _info(benchmark, bench_bundle, f"generate_{steps}", stage=f"whole {mode} frame",
          backend=backend, precision=precision, steps=steps, threads=2)
