"""Microphone capture on its own thread: a sounddevice callback writes 16 kHz mono float32
blocks into a ring buffer that the render loop drains; the loop never waits on the device.

The ring is single-producer/single-consumer with monotonically increasing sample counters
(no lock on the audio path: the callback only advances ``written``, the reader only
``read``). When the reader falls more than the ring's length behind, the oldest audio is
skipped and counted as an overrun, as are the device's own input overflows.

A missing device at start-up, or one that vanishes mid-stream (a USB microphone unplugged,
"Device or resource busy" at boot), does not end the run: the source reports it, delivers
silence (which the viseme stream turns into ``sil``) and reopens the device with back-off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edge_runtime.audio.features import SAMPLE_RATE

log = logging.getLogger(__name__)

BLOCK = 320
"""Samples per callback (20 ms)."""


@dataclass
class MicStats:
    overruns: int = 0
    """Blocks lost: device input overflows plus reader lag beyond the ring."""
    reopen_attempts: int = 0
    device_errors: int = 0
    silence_samples: int = 0
    """Silence delivered while no device was open."""


def _default_stream_factory(**kwargs):
    import sounddevice

    return sounddevice.InputStream(**kwargs)


class MicrophoneSource:
    """start() -> read() repeatedly -> close(). ``stream_factory`` builds an object with
    sounddevice.InputStream's interface (start, stop, close, active); tests pass a fake."""

    def __init__(self, device: str | int | None = None, ring_seconds: float = 2.0,
                 stream_factory: Callable[..., object] = _default_stream_factory,
                 backoff: tuple[float, float] = (0.5, 8.0), clock=time.monotonic):
        self.device, self.stream_factory, self.backoff, self.clock = (device, stream_factory,
                                                                      backoff, clock)
        self._ring = np.zeros(int(ring_seconds * SAMPLE_RATE), np.float32)
        self._written = 0
        self._read = 0
        self._stream = None
        self._retry_at = 0.0
        self._delay = backoff[0]
        self._last_read_time: float | None = None
        self.stats = MicStats()
        self._lock = threading.Lock()  # guards open/close only, never the audio path

    # --- producer side (the audio thread) -----------------------------------------------
    def _callback(self, indata: np.ndarray, frames: int, time_info, status) -> None:
        if status and getattr(status, "input_overflow", False):
            self.stats.overruns += 1
        block = indata[:, 0] if indata.ndim == 2 else indata
        n, size = len(block), len(self._ring)
        start = self._written % size
        first = min(n, size - start)
        self._ring[start:start + first] = block[:first]
        self._ring[:n - first] = block[first:]
        self._written += n

    # --- device management ----------------------------------------------------------------
    def _open(self) -> None:
        self.stats.reopen_attempts += 1
        self._read = self._written  # start fresh: no stale audio from before a gap
        try:
            stream = self.stream_factory(device=self.device, channels=1, samplerate=SAMPLE_RATE,
                                         dtype="float32", blocksize=BLOCK,
                                         callback=self._callback)
            stream.start()
        except Exception as exc:  # PortAudioError, OSError, ValueError: all mean "not now"
            self.stats.device_errors += 1
            log.warning("microphone %s unavailable (%s); retrying in %.1f s",
                        self.device if self.device is not None else "(default)",
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                        self._delay)
            self._retry_at = self.clock() + self._delay
            self._delay = min(self._delay * 2, self.backoff[1])
            return
        self._stream, self._delay = stream, self.backoff[0]
        log.info("microphone %s open", self.device if self.device is not None else "(default)")

    def _check_device(self) -> None:
        with self._lock:
            if self._stream is not None and not getattr(self._stream, "active", True):
                self.stats.device_errors += 1
                log.warning("microphone stream stopped (device gone?); reopening")
                self._close_stream()
                self._retry_at = self.clock()
            if self._stream is None and self.clock() >= self._retry_at:
                self._open()

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop()
                stream.close()
            except Exception:  # noqa: BLE001 - a vanished device may fail to close
                log.debug("closing the microphone stream failed", exc_info=True)

    # --- consumer side (the render loop) ----------------------------------------------------
    def start(self) -> None:
        self._last_read_time = self.clock()
        self._check_device()

    @property
    def ended(self) -> bool:
        """A microphone never runs out (pipeline.run_live also reads ``StdinSource``s)."""
        return False

    @property
    def is_open(self) -> bool:
        return self._stream is not None

    def read(self) -> np.ndarray:
        """All audio captured since the last read; silence for the elapsed time while no
        device is open, so the stream's clock keeps running."""
        self._check_device()
        now = self.clock()
        elapsed = now - (self._last_read_time or now)
        self._last_read_time = now
        if self._stream is None:
            count = int(elapsed * SAMPLE_RATE)
            self.stats.silence_samples += count
            return np.zeros(count, np.float32)
        written, size = self._written, len(self._ring)
        if written - self._read > size:  # the reader lagged past the ring: drop the oldest
            lost = written - self._read - size
            self.stats.overruns += -(-lost // BLOCK)
            self._read = written - size
        count = written - self._read
        start = self._read % size
        first = min(count, size - start)
        out = np.concatenate([self._ring[start:start + first], self._ring[:count - first]])
        self._read = written
        return out

    def close(self) -> None:
        with self._lock:
            self._close_stream()
