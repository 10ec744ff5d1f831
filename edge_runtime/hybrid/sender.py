"""E2 (hybrid) sender: the device's latents go to a receiver over TCP (edge_runtime.hybrid.wire).

The render loop never blocks on the network: ``write`` puts the latent in a bounded queue
(the oldest is dropped and counted when the network is slower than rendering) and a sender
thread sends. When the receiver is down or restarts, the thread reconnects with back-off
and sends the frame that failed first, so no frame rendered after the reconnection is lost.
"""

from __future__ import annotations

import collections
import logging
import socket
import threading
import time

import numpy as np

from edge_runtime.hybrid.wire import LatentMessage, encode

log = logging.getLogger(__name__)


def parse_address(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``latent://HOST:PORT`` -> (host, port); port 0 lets a
    listener take any free port."""
    text = text.removeprefix("latent://")
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{text!r}: expected HOST:PORT")
    return host or default_host, int(port)


class LatentSender:
    """A sink for latents [1, C, h, w] (``latent://HOST:PORT``)."""

    def __init__(self, address: str, key: bytes | None = None, queue_frames: int = 8,
                 backoff: tuple[float, float] = (0.2, 5.0), timeout_s: float = 2.0):
        self.host, self.port = parse_address(address)
        if self.port == 0:
            raise ValueError(f"{address!r}: the receiver's port is needed")
        self.key, self.backoff, self.timeout_s = key, backoff, timeout_s
        self._queue: collections.deque[bytes] = collections.deque()
        self._limit = queue_frames
        self._ready = threading.Condition()
        self._closing = False
        self.sent = self.dropped = self.reconnects = 0
        self._socket: socket.socket | None = None
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="latent-sender", daemon=True)
        self._thread.start()

    def write(self, index: int, latent: np.ndarray) -> None:
        capture_us = int((time.monotonic() - self._start) * 1e6)
        data = encode(LatentMessage(index, capture_us, latent[0].astype(np.float16)), self.key)
        with self._ready:
            if len(self._queue) >= self._limit:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(data)
            self._ready.notify()

    def close(self, audio: np.ndarray | None = None, wait_s: float = 0.5) -> None:
        """Send what is queued (for at most ``wait_s``: a stop must stay fast when the
        receiver is down), then stop."""
        deadline = time.monotonic() + wait_s
        while self._queue and time.monotonic() < deadline:
            time.sleep(0.01)
        with self._ready:
            self._closing = True
            self._ready.notify()
        self._thread.join(timeout=wait_s)
        self._disconnect()

    def _connect(self) -> bool:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        except OSError:
            return False
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socket = sock
        log.info("connected to receiver %s:%d", self.host, self.port)
        return True

    def _disconnect(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _run(self) -> None:
        delay = self.backoff[0]
        while True:
            with self._ready:
                while not self._queue and not self._closing:
                    self._ready.wait()
                if self._closing and not self._queue:
                    return
                data = self._queue.popleft()
            if self._socket is None and not self._connect():
                self._requeue(data)
                if self._closing:
                    return
                time.sleep(delay)
                delay = min(delay * 2, self.backoff[1])
                continue
            try:
                self._socket.sendall(data)
            except OSError:
                log.warning("receiver %s:%d gone; reconnecting", self.host, self.port)
                self._disconnect()
                self.reconnects += 1
                self._requeue(data)  # the same frame goes first once reconnected
                continue
            delay = self.backoff[0]
            self.sent += 1

    def _requeue(self, data: bytes) -> None:
        with self._ready:
            self._queue.appendleft(data)
            while len(self._queue) > self._limit:
                self._queue.popleft()  # the oldest frames go when the queue is full
                self.dropped += 1
