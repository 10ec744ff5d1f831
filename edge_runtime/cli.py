"""``edge-run``: audio -> visemes -> talking-face frames on the device (torch-free).

Audio from a microphone, a wav file or stdin (offline or at real-time pace); E1 (full)
frames to an mp4 with the audio, PNG frames or nowhere; E2 (hybrid) latents to edge-receive.
Runs under systemd (sd_notify READY / watchdog, SIGHUP reload, SIGTERM stop); ``--autotune``
picks the fastest variant for this device.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.audio.features import SAMPLE_RATE
from edge_runtime.audio.files import AudioError, read_audio_file
from edge_runtime.audio.mic import MicrophoneSource
from edge_runtime.audio.stdin import stdin_source
from edge_runtime.autotune import autotune, write_choice
from edge_runtime.backends import BACKENDS, open_graph
from edge_runtime.bundle import BundleError, load_bundle
from edge_runtime.errors import one_line, report
from edge_runtime.face.reference import PhotoError, prepare_reference
from edge_runtime.hybrid.sender import LatentSender, session_hello, wire_line
from edge_runtime.hybrid.wire import read_key
from edge_runtime.marking.marker import C2PA_KEYS_HELP, LABEL_HELP, Marker
from edge_runtime.output.sinks import open_sink
from edge_runtime.pipeline import Pipeline
from edge_runtime.render.renderer import BACKEND_PREFIX, SAMPLERS, Renderer
from edge_runtime.service.sdnotify import Notifier
from edge_runtime.service.settings import (
    SYSTEM_CONFIG,
    EdgeSettings,
    default_bundle,
    default_reference,
    describe,
    load_layers,
    user_config,
)
from edge_runtime.visemes.emit import open_emitter
from edge_runtime.visemes.fusion import FusedRecognizer
from edge_runtime.visemes.sphinx import (
    DEFAULT_LOOKAHEAD,
    PocketsphinxRecognizer,
    RecognizerUnavailable,
)
from edge_runtime.visemes.stream import (
    FileRecognizer,
    LearnedRecognizer,
    SilentRecognizer,
    VisemeStream,
)

log = logging.getLogger("edge-run")


def build_parser() -> argparse.ArgumentParser:
    """Every setting has a flag; a flag not given leaves the config files' value (defaults
    in edge_runtime.service.settings.EdgeSettings)."""
    parser = argparse.ArgumentParser(
        prog="edge-run", description="Render a talking face from speech with a TempoSync "
        "bundle (numpy + onnxruntime/LiteRT). Output is synthetic media. Settings come from "
        "/etc/temposync/edge.yaml, then ~/.config/temposync/edge.yaml, then --config, then "
        "these flags.", argument_default=None)
    parser.add_argument("--config", help="a YAML settings file (above the system and user "
                        "files, below the flags)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the merged settings and where each came from, then exit")
    parser.add_argument("--bundle", help="bundle folder (tsd export; default: the demo bundle)")
    parser.add_argument("--mode", choices=["full", "hybrid"],
                        help="full (E1, default): everything on this device; hybrid (E2): "
                             "latents go to edge-receive (--sink latent://HOST:PORT)")
    parser.add_argument("--steps", type=int, choices=[1, 2, 4, 8],
                        help="student steps per frame (the bundle's fixed schedule; default 2)")
    parser.add_argument("--audio",
                        help="mic (default; see --device), FILE.wav (any rate, mono or "
                             "stereo, 16-bit) or - for raw 16 kHz mono 16-bit PCM on stdin")
    parser.add_argument("--device", help="microphone: sounddevice name or index (default: "
                        "the system default input)")
    parser.add_argument("--duration", type=float,
                        help="microphone: stop after this many seconds (default: until "
                             "Ctrl-C or SIGTERM)")
    parser.add_argument("--offline", action="store_const", const=True,
                        help="process a file as fast as possible instead of at real-time pace")
    parser.add_argument("--reference", help="reference photo (any size; the face is found "
                        "and aligned; default: the example face)")
    parser.add_argument("--face", type=int, metavar="N",
                        help="with several faces in the photo: use face N, counted from the "
                             "left (default: the largest)")
    parser.add_argument("--framing", choices=["photo", "face"],
                        help="photo (default): frames are the reference photo with the "
                             "rendered mouth and jaw pasted back; face: the model's aligned "
                             "face crop. In hybrid mode edge-receive does the paste-back")
    parser.add_argument("--output-size", type=int, metavar="PX",
                        help="cap on the long side of photo-framed frames (default 720; a "
                             "smaller photo keeps its own size)")
    parser.add_argument("--sink",
                        help="OUT.mp4 (with the audio), png:FOLDER or FOLDER/, "
                             "http://HOST:PORT (a live MJPEG page; use 127.0.0.1 unless other "
                             "machines must see it; the default, http://127.0.0.1:8090), or "
                             "null; in hybrid mode latent://HOST:PORT (default "
                             "latent://127.0.0.1:5599)")
    parser.add_argument("--key-file", help="hybrid: shared key file; frames carry an "
                        "HMAC-SHA256 the receiver checks")
    parser.add_argument("--no-label", dest="label", action="store_const", const=False,
                        help=LABEL_HELP)
    parser.add_argument("--c2pa-keys", metavar="DIR", help=C2PA_KEYS_HELP)
    parser.add_argument("--visemes",
                        help="viseme source: pocketsphinx (phone recognition; "
                             "pocketsphinx:N sets its look-ahead to N frames, default "
                             f"{DEFAULT_LOOKAHEAD}), model (the bundle's learned recogniser), "
                             "fused (both, pocketsphinx weighted as the bundle measured), "
                             "none (all sil), file:PATH (.npy ids or JSON lines), auto "
                             "(default: fused, the best on real and synthetic speech within "
                             "200 ms; pocketsphinx for a bundle without a measured fusion "
                             "weight; the bundle's model where pocketsphinx is not installed)")
    parser.add_argument("--emit-visemes", metavar="PATH",
                        help="write the viseme stream as JSON lines to PATH, - (stdout) or "
                             "udp://HOST:PORT (one datagram per frame)")
    parser.add_argument("--backend", choices=list(BACKENDS),
                        help="inference runtime (default onnxruntime)")
    parser.add_argument("--precision", choices=["fp32", "int8"],
                        help="graph precision (default fp32; int8 follows the bundle's plan)")
    parser.add_argument("--threads", type=int, help="inference threads per graph (default 2)")
    parser.add_argument("--sampler", choices=list(SAMPLERS),
                        help="unrolled (default): one generate_K call per frame; step: K "
                             "calls of the one-step graph")
    parser.add_argument("--autotune", action="store_true",
                        help="measure every backend, precision, thread count and sampler of "
                             "the bundle on this device for --mode and --steps, write the "
                             "fastest into the --config file (else the user config file), "
                             "then exit")
    parser.add_argument("--seed", type=int, help="seeds the stream's noise (default 0)")
    parser.add_argument("--stats", metavar="PATH", help="write the run's stats as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def _recognizer(spec: str, bundle, root, backend: str, precision: str, threads: int):
    """The viseme recogniser ``spec`` names; logs which one runs. ``auto``: the bundle's
    recogniser fused with pocketsphinx where the bundle measured their weight (the best
    measured on real and synthetic speech), else pocketsphinx. pocketsphinx missing: one
    warning naming the package and what runs instead."""
    if spec == "auto":
        learned = bundle.recognizer
        spec = ("fused" if learned is not None and learned.pocketsphinx_weight is not None
                else "pocketsphinx")
    if spec == "pocketsphinx" or spec.startswith("pocketsphinx:"):
        lookahead = spec.partition(":")[2] or str(DEFAULT_LOOKAHEAD)
        if not lookahead.isdigit():
            raise ValueError(f"--visemes {spec}: expected pocketsphinx or pocketsphinx:FRAMES")
        try:
            recognizer = PocketsphinxRecognizer(bundle.fps, int(lookahead))
        except RecognizerUnavailable as exc:
            spec = "model" if bundle.recognizer is not None else "none"
            log.warning("%s: visemes from %s instead", exc,
                        "the bundle's learned recogniser" if spec == "model"
                        else "nowhere; the mouth rests (sil)")
        else:
            log.info("visemes: pocketsphinx phone recognition, look-ahead %d frames (%.0f ms "
                     "from sound to viseme)", recognizer.lookahead_frames,
                     1000 * (1 + recognizer.lookahead_frames) / bundle.fps)
            return recognizer
    if spec == "none":
        log.info("visemes: none (the mouth rests)")
        return SilentRecognizer()
    if spec.startswith("file:"):
        log.info("visemes: from %s", spec[5:])
        return FileRecognizer(spec[5:])
    if spec in ("model", "fused"):
        if bundle.recognizer is None:
            raise BundleError(f"bundle {bundle.name!r} has no viseme recogniser (export it "
                              "with tsd export --visemes)")
        variant = bundle.precision_of(BACKEND_PREFIX[backend], precision, "visemes")
        session = open_graph(bundle, root, variant, "visemes", threads)
        learned = LearnedRecognizer(session, bundle.recognizer, bundle.audio)
        if spec == "fused":
            return _fused(learned, bundle)
        log.info("visemes: the bundle's learned recogniser (%s)", variant)
        return learned
    raise ValueError(f"unknown viseme source {spec!r} (auto, pocketsphinx[:FRAMES], model, "
                     "fused, none, file:PATH)")


def _fused(learned: LearnedRecognizer, bundle):
    """The learned recogniser fused with pocketsphinx at the bundle's measured weight."""
    weight = bundle.recognizer.pocketsphinx_weight
    if weight is None:
        raise BundleError(f"bundle {bundle.name!r}: its recogniser has no measured "
                          "pocketsphinx weight for --visemes fused (tsd bundle-visemes)")
    try:
        sphinx = PocketsphinxRecognizer(bundle.fps)
    except RecognizerUnavailable as exc:
        log.warning("%s: visemes from the bundle's learned recogniser alone instead", exc)
        return learned
    recognizer = FusedRecognizer(learned, sphinx, weight)
    log.info("visemes: the bundle's learned recogniser fused with pocketsphinx (weight %g), "
             "look-ahead %d frames (%.0f ms from sound to viseme)", weight,
             recognizer.lookahead_frames, 1000 * (1 + recognizer.lookahead_frames) / bundle.fps)
    return recognizer


class Control:
    """What the signals ask for: SIGTERM/SIGINT stop, SIGHUP reloads settings and bundle."""

    def __init__(self):
        self.stop = threading.Event()
        self.reload = False

    def request_stop(self, *_) -> None:
        self.stop.set()

    def request_reload(self, *_) -> None:
        self.reload = True
        self.stop.set()

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():  # signals reach only it
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
            signal.signal(signal.SIGHUP, self.request_reload)


@dataclass
class Prepared:
    """A run ready to start: everything that bad settings or input can break is done."""

    settings: EdgeSettings
    pipeline: Pipeline
    audio: np.ndarray | None
    """A file's samples; None for the live sources (microphone, stdin)."""
    sink: object
    close_emit: Callable[[], None]
    load_s: float
    status: str
    """What systemd shows once it runs."""


def prepare(args: EdgeSettings, notifier: Notifier) -> Prepared:
    """Load the bundle, the audio file, the reference and the recogniser, warm up and open
    the sink. Raises (one line) on bad settings or input; opens the sink last, so a failure
    leaves no output behind."""
    started = time.perf_counter()
    bundle, root = _load_bundle(args)
    audio = None
    if args.audio not in ("mic", "-"):
        audio = read_audio_file(args.audio)
    renderer = compose = None
    sink_spec = args.resolved_sink
    if sink_spec != "null" or args.reference or args.mode == "hybrid":
        reference = args.reference or default_reference()
        if reference is None:
            raise ValueError("--reference PHOTO is needed to render frames")
        renderer = Renderer(bundle, root, args.steps, args.backend, args.precision,
                            args.threads, args.mode, args.seed, sampler=args.sampler)
        photo = prepare_reference(reference, bundle, root, args.face, args.output_size,
                                  paste_back=args.framing == "photo",
                                  threads=args.threads)
        renderer.set_reference(photo.crop)
        resting = renderer.latent(np.zeros(2 * bundle.viseme_context + 1, np.int32))  # warm-up
        compose = photo.paste if args.mode == "full" else None  # hybrid: the receiver pastes
        if compose is not None:
            compose.calibrate(renderer.decode(resting))
    recognizer = _recognizer(args.visemes, bundle, root, args.backend, args.precision,
                             args.threads)
    stream = VisemeStream(recognizer, bundle.fps)
    emit, close_emit = open_emitter(args.emit_visemes)
    if args.mode == "hybrid":
        if not sink_spec.startswith("latent://"):
            raise ValueError(f"hybrid mode sends latents: --sink latent://HOST:PORT, got "
                             f"{sink_spec!r}")
        sink = LatentSender(sink_spec, session_hello(bundle, root, photo.paste),
                            read_key(args.key_file), queue_frames=bundle.fps)
    else:
        sink = open_sink(sink_spec, bundle.fps,
                         marker=Marker.of_bundle(bundle, root, args.label, args.c2pa_keys))
    pipeline = Pipeline(stream, renderer, sink, emit, heartbeat=notifier.heartbeat,
                        on_stats=_log_stats, compose=compose)
    return Prepared(args, pipeline, audio, sink, close_emit, time.perf_counter() - started,
                    f"{bundle.name}: {args.mode} mode, {args.steps} steps, audio {args.audio}")


def execute(prepared: Prepared, stop: threading.Event) -> dict:
    """Run until the audio ends, --duration, or ``stop`` -> the summary (also written to
    --stats)."""
    args, pipeline = prepared.settings, prepared.pipeline
    try:
        if args.audio == "mic":
            _run_mic(pipeline, args, stop)
        elif args.audio == "-":
            source = stdin_source()
            source.paced = not args.offline
            pipeline.run_live(source, stop, args.duration, realtime=not args.offline)
        else:
            pipeline.run(prepared.audio, realtime=not args.offline, stop=stop)
    finally:
        prepared.close_emit()
    summary = pipeline.summary() | {"load_s": prepared.load_s, "peak_rss_mb": peak_rss_mb()}
    if isinstance(prepared.sink, LatentSender):
        summary["wire"] = prepared.sink.stats.summary()
    if args.stats:
        _write_atomically(Path(args.stats), json.dumps(summary, indent=2))
    return summary


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text)
    os.replace(tmp, path)


def _run_mic(pipeline: Pipeline, args: EdgeSettings, stop: threading.Event):
    """Capture until --duration, Ctrl-C, SIGTERM or SIGHUP (a clean stop: the sink is
    finished)."""
    device = args.device
    if isinstance(device, str) and device.isdigit():
        device = int(device)
    source = MicrophoneSource(device)
    stats = pipeline.run_live(source, stop, args.duration)
    mic = source.stats
    if mic.overruns or mic.device_errors:
        log.warning("microphone: %d overruns, %d device errors, %.1f s of silence while "
                    "no device was open", mic.overruns, mic.device_errors,
                    mic.silence_samples / SAMPLE_RATE)
    return stats


def _reload(args: argparse.Namespace, running: EdgeSettings,
            notifier: Notifier) -> Prepared:
    """The next run after SIGHUP: the settings files and the bundle read again. When they
    are broken, one error line and the running settings again (systemd's reload contract:
    the service keeps running)."""
    try:
        settings, _ = load_layers(args.config, vars(args))
        return prepare(settings, notifier)
    except RUN_ERRORS as exc:
        log.error("reload: %s; keeping the running settings", one_line(exc))
    return prepare(running, notifier)


class NothingRendered(RuntimeError):
    """A run that should have rendered frames ended before the first one."""


def _serve(args: argparse.Namespace, settings: EdgeSettings, control: Control,
           notifier: Notifier) -> None:
    """Run, and run again after each SIGHUP, until a stop or the end of the audio."""
    prepared = prepare(settings, notifier)
    frames = 0
    while True:
        notifier.ready(prepared.status)
        summary = execute(prepared, control.stop)
        frames += summary["frames"]
        if summary["frames"] or prepared.pipeline.renderer is None:
            _print_summary(summary)
        if not control.reload:
            break
        log.info("SIGHUP: reloading settings and bundle")
        notifier.reloading()
        control = Control()
        control.install()
        prepared = _reload(args, prepared.settings, notifier)
    notifier.stopping()
    if prepared.pipeline.renderer is not None and not frames:
        sink = prepared.settings.resolved_sink
        kept = f"; {sink} was left as it was" if sink.endswith(".mp4") else ""
        raise NothingRendered("no frame was rendered (the audio ended or the run was "
                              f"stopped before the first frame){kept}")


def _load_bundle(settings: EdgeSettings):
    """The settings' bundle, else the built-in demo bundle -> (bundle, folder)."""
    folder = settings.bundle or default_bundle()
    if folder is None:
        raise ValueError("no bundle: pass --bundle DIR or set bundle in a config file "
                         f"({SYSTEM_CONFIG} or {user_config()})")
    return load_bundle(folder)


def _autotune(settings: EdgeSettings, target: Path) -> None:
    bundle, root = _load_bundle(settings)
    results = autotune(bundle, root, settings.steps, settings.mode)
    print(f"{'backend':<12}{'precision':<10}{'threads':>7}  {'sampler':<9}{'median ms':>10}"
          f"{'p95 ms':>8}")
    for r in results:
        c = r.candidate
        print(f"{c.backend:<12}{c.precision:<10}{c.threads:>7}  {c.sampler:<9}"
              f"{r.median_ms:>10.2f}{r.p95_ms:>8.2f}")
    write_choice(target, results[0].candidate)
    print(f"edge-run: wrote {results[0].candidate.settings()} to {target}")


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM (Linux) first: ru_maxrss survives exec, so
    a process started from a big one (pytest with torch) would report its parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _stats_line(summary: dict) -> str:
    stages = ", ".join(f"{k} p50 {v['p50']:.1f} / p95 {v['p95']:.1f} ms"
                       for k, v in summary["stages_ms"].items())
    return (f"{summary['frames']} frames, {summary['dropped']} dropped, "
            f"{summary['fps']:.1f} fps; {stages}; sound to frame "
            f"{summary['audio_to_frame_ms']:.0f} ms (viseme delay "
            f"{summary['viseme_latency_ms']:.0f} + render context "
            f"{summary['render_context_ms']:.0f} + render)")


def _log_stats(summary: dict) -> None:
    log.info("live: %s; RSS %.0f MB", _stats_line(summary), peak_rss_mb())


def _print_summary(summary: dict) -> None:
    wire = f"; {wire_line(summary['wire'])}" if "wire" in summary else ""
    print(f"edge-run: {_stats_line(summary)}{wire}; load {summary['load_s']:.2f} s, peak RSS "
          f"{summary['peak_rss_mb']:.0f} MB", file=sys.stderr)


RUN_ERRORS = (BundleError, AudioError, PhotoError, ValueError, OSError)
"""What bad settings or input raise: one line, never a traceback."""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    control, notifier = Control(), Notifier()
    control.install()
    try:
        settings, sources = load_layers(args.config, vars(args))
        if args.print_config:
            print(describe(settings, sources), end="")
            return 0
        if args.autotune:
            _autotune(settings, Path(args.config) if args.config else user_config())
            return 0
        _serve(args, settings, control, notifier)
    except NothingRendered as exc:
        report("edge-run", exc)
        return 1
    except RUN_ERRORS as exc:
        return report("edge-run", exc)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
