"""Microphone path with the hardware faked at the lowest layer: a stand-in for
sounddevice.InputStream that calls the real callback from its own thread."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from edge_runtime.audio.features import SAMPLE_RATE
from edge_runtime.audio.mic import BLOCK, MicrophoneSource


class FakeInputStream:
    """Feeds ``signal`` in BLOCK-sized callbacks at ``speed`` x real time; can flag an input
    overflow at one block and vanish (stop, inactive) after another."""

    def __init__(self, signal: np.ndarray, callback, speed: float = 4.0,
                 overflow_at: int | None = None, vanish_after: int | None = None):
        self.signal, self.callback, self.speed = signal, callback, speed
        self.overflow_at, self.vanish_after = overflow_at, vanish_after
        self.active = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.active = True
        self._thread.start()

    def _run(self) -> None:
        for k, start in enumerate(range(0, len(self.signal) - BLOCK + 1, BLOCK)):
            if not self.active:
                return
            if self.vanish_after is not None and k >= self.vanish_after:
                self.active = False
                return
            status = SimpleNamespace(input_overflow=k == self.overflow_at)
            self.callback(self.signal[start:start + BLOCK, None], BLOCK, None, status)
            time.sleep(BLOCK / SAMPLE_RATE / self.speed)

    def stop(self) -> None:
        self.active = False

    def close(self) -> None:
        self.active = False


def ramp(seconds: float) -> np.ndarray:
    return (np.arange(int(seconds * SAMPLE_RATE)) % 1000 / 1000).astype(np.float32)


def drain(source: MicrophoneSource, seconds: float) -> np.ndarray:
    parts, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        parts.append(source.read())
        time.sleep(0.01)
    return np.concatenate(parts)


def test_reads_return_the_captured_audio_in_order():
    signal = ramp(1.0)
    source = MicrophoneSource(stream_factory=lambda **kw: FakeInputStream(
        signal, kw["callback"], speed=8.0))
    source.start()
    got = drain(source, 0.5)
    source.close()
    whole = len(signal) // BLOCK * BLOCK
    assert len(got) == whole and np.array_equal(got, signal[:whole])
    assert source.stats.overruns == 0


def test_overflows_and_a_lagging_reader_are_counted_not_fatal():
    signal = ramp(1.0)
    source = MicrophoneSource(ring_seconds=0.1, stream_factory=lambda **kw: FakeInputStream(
        signal, kw["callback"], speed=8.0, overflow_at=3))
    source.start()
    time.sleep(0.4)  # the fake delivers ~1 s of audio; the ring holds 0.1 s
    late = source.read()
    source.close()
    assert len(late) == int(0.1 * SAMPLE_RATE)
    assert np.array_equal(late, signal[len(signal) // BLOCK * BLOCK - len(late):
                                       len(signal) // BLOCK * BLOCK])
    assert source.stats.overruns >= 1 + 1  # the device's overflow + the reader's lag


def test_a_busy_device_at_start_is_retried_with_backoff_and_silence_meanwhile():
    attempts = []

    def factory(**kw):
        attempts.append(time.monotonic())
        if len(attempts) <= 2:
            raise OSError("Error opening InputStream: Device or resource busy")
        return FakeInputStream(ramp(2.0), kw["callback"], speed=8.0)

    source = MicrophoneSource(stream_factory=factory, backoff=(0.05, 0.2))
    source.start()
    got = drain(source, 0.6)
    source.close()
    assert len(attempts) == 3 and source.stats.device_errors == 2
    assert attempts[2] - attempts[1] >= 0.09  # the back-off doubled
    assert source.stats.silence_samples > 0 and np.any(got != 0)


def test_a_device_that_vanishes_mid_stream_is_reopened():
    opened = []

    def factory(**kw):
        opened.append(1)
        vanish = 5 if len(opened) == 1 else None
        return FakeInputStream(ramp(2.0), kw["callback"], speed=8.0, vanish_after=vanish)

    source = MicrophoneSource(stream_factory=factory, backoff=(0.02, 0.1))
    source.start()
    drain(source, 0.5)
    source.close()
    assert len(opened) >= 2 and source.stats.device_errors >= 1
    assert source.is_open is False  # closed at the end


def test_live_pipeline_renders_from_the_fake_microphone(tiny_bundle, tiny_dataset, tmp_path):
    import json

    from edge_runtime.bundle import load_bundle
    from edge_runtime.face.reference import prepare_reference
    from edge_runtime.output.sinks import open_sink
    from edge_runtime.pipeline import Pipeline
    from edge_runtime.render.renderer import Renderer
    from edge_runtime.visemes.stream import SilentRecognizer, VisemeStream
    from training.data.media import read_wav

    bundle, root = load_bundle(tiny_bundle)
    speech, _ = read_wav(sorted((tiny_dataset / "clips").glob("*/audio.wav"))[0])
    renderer = Renderer(bundle, root, steps=2, threads=1)
    frame = sorted((tiny_dataset / "clips").glob("*/frames/*.png"))[0]
    renderer.set_reference(prepare_reference(frame, bundle, root, paste_back=False).crop)
    events = []
    out = tmp_path / "live.mp4"
    pipeline = Pipeline(VisemeStream(SilentRecognizer()), renderer, open_sink(str(out), 25),
                        events.append)
    source = MicrophoneSource(stream_factory=lambda **kw: FakeInputStream(
        speech, kw["callback"], speed=1.0))
    stats = pipeline.run_live(source, threading.Event(), duration_s=1.0)
    assert 20 <= stats.frames + stats.dropped <= 30  # about 1 s at 25 fps
    assert len(events) >= stats.frames and out.stat().st_size > 0
    assert json.loads(events[0].to_json())["name"] == "sil"


@pytest.mark.parametrize("missing", [True])
def test_no_audio_hardware_at_all_gives_silence_not_a_crash(missing):
    def factory(**kw):
        raise OSError("Error querying device -1")

    source = MicrophoneSource(stream_factory=factory, backoff=(0.05, 0.1))
    source.start()
    got = drain(source, 0.2)
    source.close()
    assert missing and len(got) > 0 and not np.any(got)
    assert source.stats.device_errors >= 2
