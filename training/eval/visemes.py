"""Frame accuracy of the device's viseme recognisers, streaming vs whole utterance, through
the runtime's own code (``tsd eval-visemes``), on the synthetic test split and on speech
manifests (training.data.realspeech: the real-speech set, Festival voices).

- whole utterance: the recogniser decides every frame from the complete audio, no voice
  activity gating (what an offline decoder of the utterance gives);
- streaming: edge_runtime.visemes.stream.VisemeStream fed 20 ms chunks (the device's path,
  with gating and pause rules), deciding each frame as soon as its look-ahead has arrived;
  also within +-1 frame of the truth, the recall of each viseme, and the shift of the
  streamed visemes against the truth that scores best (0 when the stream is in time);
- ``none``: every frame ``sil`` (the trivial baseline);
- non-speech: the share of ``sil`` frames the stream gives on silence and noise without
  speech (bar: 95%).
The sound-to-viseme delay is the stream's: the frame itself plus the recogniser's look-ahead.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.audio.features import SAMPLE_RATE, log_mel
from edge_runtime.backends import open_graph
from edge_runtime.bundle import BundleError, load_bundle
from edge_runtime.pipeline import CHUNK_S
from edge_runtime.visemes.fusion import FusedRecognizer, fuse
from edge_runtime.visemes.sphinx import DEFAULT_LOOKAHEAD, PocketsphinxRecognizer
from edge_runtime.visemes.stream import LearnedRecognizer, VisemeEvent, VisemeStream
from edge_runtime.visemes.vocabulary import SIL, VISEMES
from training.atomic import write_text
from training.data.manifest import Manifest
from training.data.media import read_wav
from training.errors import UserError

BAR_RATIO = 0.95
BAR_LATENCY_S = 0.2
BAR_NONSPEECH_SIL = 0.95
RECOGNIZERS = ("model", "pocketsphinx", "fused")
FUSION_WEIGHTS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 1000.0)
"""Weights of pocketsphinx's viseme tried when fusing (1000: pocketsphinx decides)."""
MAX_SHIFT = 4
"""Frames either way searched for the best-scoring shift of the stream against the truth."""
NONSPEECH_S = 10.0


@dataclass(frozen=True)
class EvalSet:
    name: str
    clips: tuple[tuple[str, np.ndarray, np.ndarray], ...]
    """(id, audio [N] float32 16 kHz, truth visemes [frames])."""


def synthetic_set(manifest: Manifest, split: str, count: int) -> EvalSet:
    clips = manifest.split(split)
    if not clips:
        raise UserError(f"{manifest.path}: no {split} clips")
    return EvalSet(f"synthetic {split}", tuple(
        (c.id, read_wav(manifest.resolve(c.audio))[0],
         np.load(manifest.resolve(c.visemes)).astype(int)) for c in clips[:count]))


def speech_set(path: Path) -> EvalSet:
    from training.data.realspeech import read_speech_manifest

    speech = read_speech_manifest(path)
    sources = sorted({c.source for c in speech.clips})
    return EvalSet(f"{'+'.join(sources)} ({path})",
                   tuple((c.id, *speech.load(c)) for c in speech.clips))


def nonspeech_signals(seconds: float = NONSPEECH_S, seed: int = 0) -> dict[str, np.ndarray]:
    """Silence and noise without speech, as a quiet room and a cheap microphone give them."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    white = rng.normal(0, 1, n).astype(np.float32)
    brown = np.cumsum(white)
    brown = (brown - np.convolve(brown, np.ones(801) / 801, "same")).astype(np.float32)
    hum = np.sin(2 * np.pi * 50 * np.arange(n) / SAMPLE_RATE).astype(np.float32)

    def at(signal: np.ndarray, dbfs: float) -> np.ndarray:
        rms = float(np.sqrt(np.mean(signal ** 2)))
        return (signal * (10 ** (dbfs / 20) / rms)).astype(np.float32)

    return {"digital silence": np.zeros(n, np.float32), "white noise -60 dBFS": at(white, -60),
            "white noise -40 dBFS": at(white, -40), "fan (brown noise) -35 dBFS": at(brown, -35),
            "mains hum -40 dBFS": at(hum, -40)}


def _whole_utterance(make, audio: np.ndarray, frames: int, mel_config) -> np.ndarray:
    """Every frame decided from the complete audio (one second of silence appended so the
    last frames have their look-ahead), without gating."""
    recognizer = make()
    padded = np.concatenate([audio, np.zeros(SAMPLE_RATE, np.float32)])
    if hasattr(recognizer, "feed"):  # pocketsphinx: decode the utterance offline
        recognizer.feed(padded)
        recognizer.finish()
    mel = log_mel(padded, mel_config)
    return np.array([recognizer.decide(mel, f)[0] for f in range(frames)])


def _stream_events(recognizer, audio: np.ndarray, fps: int, push_ms: list[float]
                   ) -> tuple[list[VisemeEvent], float]:
    """The device's path: ``audio`` pushed in CHUNK_S chunks -> (every frame's event, the
    stream's sound-to-viseme latency); each push's time is appended to ``push_ms``."""
    stream = VisemeStream(recognizer, fps)
    events, chunk = [], int(CHUNK_S * SAMPLE_RATE)
    for start in range(0, len(audio), chunk):
        began = time.perf_counter()
        events += stream.push(audio[start:start + chunk])
        push_ms.append(1000 * (time.perf_counter() - began))
    events += stream.finish()
    return events, stream.latency_s


def _stream(make, audio: np.ndarray, fps: int, push_ms: list[float]) -> tuple[np.ndarray, float]:
    events, latency = _stream_events(make(), audio, fps, push_ms)
    return np.array([e.token for e in events]), latency


def _within_one(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    near = pred == truth
    near[1:] |= pred[1:] == truth[:-1]
    near[:-1] |= pred[:-1] == truth[1:]
    return near


def score_set(make, eval_set: EvalSet, fps: int, mel_config) -> dict:
    """Whole-utterance and streaming scores of one recogniser on one set."""
    whole_all, stream_all, truth_all = [], [], []
    shifted = np.zeros(2 * MAX_SHIFT + 1)
    push_ms: list[float] = []
    latency = 0.0
    for _, audio, truth in eval_set.clips:
        whole = _whole_utterance(make, audio, len(truth), mel_config)
        streamed, latency = _stream(make, audio, fps, push_ms)
        n = min(len(truth), len(streamed))
        whole_all.append(whole[:n])
        stream_all.append(streamed[:n])
        truth_all.append(truth[:n])
        for k, shift in enumerate(range(-MAX_SHIFT, MAX_SHIFT + 1)):
            # shift > 0: the stream's viseme of frame t is compared with the truth of t - shift
            a = streamed[max(shift, 0):n + min(shift, 0)]
            shifted[k] += int((a == truth[max(-shift, 0):n - max(shift, 0)]).sum())
    whole, streamed, truth = (np.concatenate(x) for x in (whole_all, stream_all, truth_all))
    total = len(truth)
    whole_acc, stream_acc = float((whole == truth).mean()), float((streamed == truth).mean())
    recall = {VISEMES[v]: round(float((streamed[truth == v] == v).mean()), 3)
              for v in range(len(VISEMES)) if (truth == v).any()}
    return {"clips": len(eval_set.clips), "frames": total,
            "whole_utterance_accuracy": whole_acc, "streaming_accuracy": stream_acc,
            "streaming_accuracy_1frame": float(_within_one(streamed, truth).mean()),
            "whole_utterance_accuracy_1frame": float(_within_one(whole, truth).mean()),
            "none_accuracy": float((truth == SIL).mean()),
            "streaming_over_whole": stream_acc / whole_acc if whole_acc else 0.0,
            "best_shift_frames": int(np.argmax(shifted)) - MAX_SHIFT,
            "streaming_recall": recall, "sound_to_viseme_latency_ms": 1000 * latency,
            "push_ms_mean": float(np.mean(push_ms)),
            "push_ms_p95": float(np.percentile(push_ms, 95))}


def score_nonspeech(make, fps: int) -> dict:
    """Share of ``sil`` frames the stream gives on each non-speech signal, and the least."""
    shares = {}
    for name, signal in nonspeech_signals().items():
        tokens, _ = _stream(make, signal, fps, [])
        shares[name] = float((tokens == SIL).mean())
    return {"sil_share": shares, "min_sil_share": min(shares.values())}


def recognizer_factory(bundle, root, recognizer: str, backend_variant: str = "onnx-fp32",
                       lookahead: int | None = None, weight: float | None = None):
    """-> a function that makes a fresh recogniser of that kind (``fused``: with ``weight``,
    else the bundle's measured one)."""
    frames = DEFAULT_LOOKAHEAD if lookahead is None else lookahead
    if recognizer == "pocketsphinx":
        return lambda: PocketsphinxRecognizer(bundle.fps, frames)
    if recognizer not in ("model", "fused"):
        raise UserError(f"unknown recogniser {recognizer!r} (one of {RECOGNIZERS})")
    if bundle.recognizer is None:
        raise BundleError(f"bundle {bundle.name!r} has no viseme recogniser (tsd export "
                          "--visemes)")
    session = open_graph(bundle, root, backend_variant, "visemes", threads=1)
    if recognizer == "model":
        return lambda: LearnedRecognizer(session, bundle.recognizer, bundle.audio)
    weight = bundle.recognizer.pocketsphinx_weight if weight is None else weight
    if weight is None:
        raise UserError(f"bundle {bundle.name!r}: its recogniser has no measured pocketsphinx "
                        "weight (tsd bundle-visemes measures it)")
    return lambda: FusedRecognizer(LearnedRecognizer(session, bundle.recognizer, bundle.audio),
                                   PocketsphinxRecognizer(bundle.fps, frames), weight)


class _Recording(FusedRecognizer):
    """Fused, remembering each decided frame's (log-probabilities, pocketsphinx viseme)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.frames: dict[int, tuple[np.ndarray, int]] = {}

    def decide(self, mel: np.ndarray, frame: int, mel_start: int = 0) -> tuple[int, float]:
        self.frames[frame] = self.evidence(mel, frame, mel_start)
        return self.frames[frame][1], 1.0


def fusion_curve(bundle, root, sets: list[EvalSet], weights: tuple[float, ...] = FUSION_WEIGHTS
                 ) -> dict[float, float]:
    """Streaming frame accuracy of the fused recogniser for each weight, over all ``sets``.
    One streaming pass per utterance: gating and pause rules do not depend on what the
    recogniser says, so every weight is scored on the same frames."""
    session = open_graph(bundle, root, "onnx-fp32", "visemes", threads=1)
    correct, total = np.zeros(len(weights)), 0
    for eval_set in sets:
        for _, audio, truth in eval_set.clips:
            probe = _Recording(LearnedRecognizer(session, bundle.recognizer, bundle.audio),
                               PocketsphinxRecognizer(bundle.fps), 0.0)
            events, _ = _stream_events(probe, audio, bundle.fps, [])
            for event in events[:len(truth)]:
                if event.frame not in probe.frames or event.state not in ("speech", "lead", "hold"):
                    correct += int(event.token == truth[event.frame])
                    continue
                log_probs, heard = probe.frames[event.frame]
                correct += [fuse(log_probs, heard, w) == truth[event.frame] for w in weights]
            total += min(len(events), len(truth))
    return {w: float(c / max(total, 1)) for w, c in zip(weights, correct)}


def eval_recognizers(bundle_dir: Path, manifest: Manifest | None, out: Path,
                     split: str = "test", clips: int = 12, backend_variant: str = "onnx-fp32",
                     recognizer: str = "model", speech: tuple[Path, ...] = (),
                     lookahead: int | None = None, weight: float | None = None) -> dict:
    """Scores of ``recognizer`` (``model``: the bundle's learned graph; ``pocketsphinx``:
    phone recognition, ``lookahead`` frames; ``fused``: both, pocketsphinx weighted by
    ``weight`` or the bundle's measured weight) on the synthetic ``split`` of ``manifest`` (its
    scores also at the top level of the report), each speech manifest of ``speech`` and the
    non-speech signals -> the report (also OUT/visemes.json, or
    OUT/visemes-pocketsphinx[-N].json)."""
    bundle, root = load_bundle(bundle_dir)
    make = recognizer_factory(bundle, root, recognizer, backend_variant, lookahead, weight)
    sets = ([synthetic_set(manifest, split, clips)] if manifest is not None else []) \
        + [speech_set(path) for path in speech]
    if not sets:
        raise UserError("nothing to evaluate: give a dataset (--data) or a speech manifest "
                        "(--speech)")
    scored = {s.name: score_set(make, s, bundle.fps, bundle.audio) for s in sets}
    first = scored[sets[0].name] if manifest is not None else {}
    latency = next(iter(scored.values()))["sound_to_viseme_latency_ms"]
    report = {"bundle": str(bundle_dir), "split": split, "recognizer": recognizer,
              "variant": backend_variant if recognizer == "model" else None,
              "lookahead_frames": make().lookahead_frames, **first,
              "sound_to_viseme_latency_ms": latency, "sets": scored,
              "nonspeech": score_nonspeech(make, bundle.fps)}
    if manifest is not None:
        report["bar_passed"] = bool(first["streaming_accuracy"] >= BAR_RATIO
                                    * first["whole_utterance_accuracy"]
                                    and latency <= 1000 * BAR_LATENCY_S)
    out.mkdir(parents=True, exist_ok=True)
    name = "visemes" if recognizer == "model" else f"visemes-{recognizer}"
    if recognizer != "model" and lookahead is not None:
        name += f"-{lookahead}"
    if recognizer == "fused" and weight is not None:
        name += f"-w{weight:g}"
    write_text(out / f"{name}.json", json.dumps(report, indent=2))
    return report
