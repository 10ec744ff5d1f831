"""Frame accuracy of the device's viseme recognisers on held-out clips, streaming vs whole
utterance, through the runtime's own code (``tsd eval-visemes``).

- whole utterance: the recogniser decides every frame from the complete audio, no voice
  activity gating (what an offline decoder of the utterance gives);
- streaming: edge_runtime.visemes.stream.VisemeStream fed 20 ms chunks (the device's path,
  with gating and pause rules), deciding each frame as soon as its look-ahead has arrived;
- ``none``: every frame ``sil`` (the trivial baseline).
The issue's bar: streaming keeps at least 95% of the whole-utterance accuracy with at most
200 ms between a sound and its viseme (the stream's stated latency).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from edge_runtime.audio.features import SAMPLE_RATE, log_mel
from edge_runtime.backends import open_graph
from edge_runtime.bundle import BundleError, load_bundle
from edge_runtime.pipeline import CHUNK_S
from edge_runtime.visemes.sphinx import PocketsphinxRecognizer
from edge_runtime.visemes.stream import LearnedRecognizer, VisemeStream
from edge_runtime.visemes.vocabulary import SIL
from training.atomic import write_text
from training.data.manifest import Manifest
from training.data.media import read_wav
from training.errors import UserError

BAR_RATIO = 0.95
BAR_LATENCY_S = 0.2


def _clips(manifest: Manifest, split: str, count: int):
    clips = manifest.split(split)
    if not clips:
        raise UserError(f"{manifest.path}: no {split} clips")
    return clips[:count]


RECOGNIZERS = ("model", "pocketsphinx")


def _whole_utterance(make, audio: np.ndarray, frames: int, bundle) -> np.ndarray:
    """Every frame decided from the complete audio (one second of silence appended so the
    last frames have their look-ahead), without gating."""
    recognizer = make()
    padded = np.concatenate([audio, np.zeros(SAMPLE_RATE, np.float32)])
    if hasattr(recognizer, "feed"):  # pocketsphinx: decode the utterance offline
        recognizer.feed(padded)
        recognizer.finish()
    mel = log_mel(padded, bundle.audio)
    return np.array([recognizer.decide(mel, f)[0] for f in range(frames)])


def eval_recognizers(bundle_dir: Path, manifest: Manifest, out: Path, split: str = "test",
                     clips: int = 12, backend_variant: str = "onnx-fp32",
                     recognizer: str = "model") -> dict:
    """Whole-utterance vs streaming accuracy of ``recognizer`` (``model``: the bundle's
    learned graph; ``pocketsphinx``: phone recognition) -> the report (also OUT/visemes.json,
    or OUT/visemes-pocketsphinx.json)."""
    bundle, root = load_bundle(bundle_dir)
    if recognizer == "model":
        if bundle.recognizer is None:
            raise BundleError(f"bundle {bundle.name!r} has no viseme recogniser (tsd export "
                              "--visemes)")
        session = open_graph(bundle, root, backend_variant, "visemes", threads=1)

        def make():
            return LearnedRecognizer(session, bundle.recognizer, bundle.audio.floor)
    elif recognizer == "pocketsphinx":
        def make():
            return PocketsphinxRecognizer(bundle.fps)
    else:
        raise UserError(f"unknown recogniser {recognizer!r} (one of {RECOGNIZERS})")
    whole_hits, stream_hits, none_hits, total = 0, 0, 0, 0
    push_ms: list[float] = []
    latency = 0.0
    for clip in _clips(manifest, split, clips):
        truth = np.load(manifest.resolve(clip.visemes)).astype(int)
        audio, _ = read_wav(manifest.resolve(clip.audio))
        whole = _whole_utterance(make, audio, len(truth), bundle)
        stream = VisemeStream(make(), bundle.fps)
        events, chunk = [], int(CHUNK_S * SAMPLE_RATE)
        for start in range(0, len(audio), chunk):
            began = time.perf_counter()
            events += stream.push(audio[start:start + chunk])
            push_ms.append(1000 * (time.perf_counter() - began))
        events += stream.finish()
        streamed = np.array([e.token for e in events][:len(truth)])
        latency = stream.latency_s
        n = min(len(truth), len(streamed))
        whole_hits += int((whole[:n] == truth[:n]).sum())
        stream_hits += int((streamed[:n] == truth[:n]).sum())
        none_hits += int((truth[:n] == SIL).sum())
        total += n
    whole_acc, stream_acc = whole_hits / total, stream_hits / total
    report = {
        "bundle": str(bundle_dir), "split": split, "frames": total, "recognizer": recognizer,
        "variant": backend_variant if recognizer == "model" else None,
        "whole_utterance_accuracy": whole_acc, "streaming_accuracy": stream_acc,
        "none_accuracy": none_hits / total, "streaming_over_whole": stream_acc / whole_acc,
        "sound_to_viseme_latency_ms": 1000 * latency,
        "push_ms_mean": float(np.mean(push_ms)), "push_ms_p95": float(np.percentile(push_ms, 95)),
        "bar_passed": bool(stream_acc >= BAR_RATIO * whole_acc and latency <= BAR_LATENCY_S)}
    out.mkdir(parents=True, exist_ok=True)
    name = "visemes.json" if recognizer == "model" else f"visemes-{recognizer}.json"
    write_text(out / name, json.dumps(report, indent=2))
    return report
