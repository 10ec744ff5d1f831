"""Raw PCM on stdin as a live source (``--audio -``): 16 kHz mono 16-bit little-endian,
processed as it arrives, like the microphone (edge_runtime.audio.mic), not read to the end
first.

A reader thread moves what the pipe delivers into a bounded queue; the render loop takes it
from there without waiting. Paced (the default), it is handed over no faster than real time,
so a fast writer (``cat speech.raw |``) plays at real-time pace and a live one (``arecord |``)
as it speaks; unpaced (``--offline``), as fast as the renderer goes. The queue holds at most
QUEUE_S: a writer faster than that waits on the pipe instead of filling memory. The thread
outlives a run, so a reload (SIGHUP) carries on with the same stream.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import sys
import threading
import time

import numpy as np

from edge_runtime.audio.features import SAMPLE_RATE

log = logging.getLogger(__name__)

READ_BYTES = 4096
"""Most bytes one read of the pipe takes (128 ms of audio); a live writer's smaller blocks
come through as they are written."""
QUEUE_S = 2.0
"""Audio the queue holds at most (seconds)."""


class StdinSource:
    """start() -> read() repeatedly -> close(), ``ended`` once the writer closed the pipe and
    everything was read. ``stream``: a binary file object with a descriptor (default
    stdin)."""

    def __init__(self, stream=None, paced: bool = True, clock=time.monotonic):
        self._fd = (stream or sys.stdin.buffer).fileno()
        self.paced, self.clock = paced, clock
        self._queue: queue.Queue[bytes | None] = queue.Queue(
            maxsize=max(1, int(QUEUE_S * SAMPLE_RATE * 2 / READ_BYTES)))
        self._pending = np.zeros(0, np.float32)
        self._eof = False
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self._delivered = 0

    def _read_pipe(self) -> None:
        carry = b""
        while True:
            try:
                data = os.read(self._fd, READ_BYTES)
            except OSError as exc:
                log.warning("stdin: %s; treating it as the end of the audio", exc)
                data = b""
            if not data:
                self._queue.put(None)
                return
            data = carry + data
            whole = len(data) // 2 * 2  # a sample split across two reads waits for its half
            carry = data[whole:]
            if whole:
                self._queue.put(data[:whole])

    def start(self) -> None:
        """(Re)start the pacing clock; the reader thread starts on the first call."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._read_pipe, name="stdin-audio",
                                            daemon=True)
            self._thread.start()
        self._started, self._delivered = self.clock(), 0

    @property
    def ended(self) -> bool:
        return self._eof and not len(self._pending)

    def read(self) -> np.ndarray:
        """The audio that has arrived (float32 in [-1, 1]), paced: no more than the wall
        clock since ``start`` allows."""
        limit = None
        if self.paced:
            limit = max(0, int((self.clock() - self._started) * SAMPLE_RATE) - self._delivered)
        parts, have = [self._pending], len(self._pending)
        while not self._eof and (limit is None or have < limit):
            try:
                chunk = self._queue.get_nowait()
            except queue.Empty:
                break
            if chunk is None:
                self._eof = True
                break
            parts.append(np.frombuffer(chunk, "<i2").astype(np.float32) / 32768.0)
            have += len(parts[-1])
        audio = np.concatenate(parts)
        take = len(audio) if limit is None else min(limit, len(audio))
        self._pending = audio[take:]
        self._delivered += take
        return audio[:take]

    def close(self) -> None:
        """Nothing to release: the reader keeps the pipe for the next run (a reload)."""


@functools.cache
def stdin_source() -> StdinSource:
    """The process's one reader of stdin (a second would steal the first one's bytes)."""
    return StdinSource()
