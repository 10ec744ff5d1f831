"""E2 (hybrid) sender: the device's latents go to edge-receive over TCP in sessions of wire
version 2 (edge_runtime.hybrid.wire, docs/wire-format.md).

The render loop never blocks on the network: ``write`` puts the encoded frame in a bounded
queue (the oldest is dropped and counted as unsent when the network is slower than
rendering or no receiver takes the session) and a sender thread sends. The thread opens a
session with HELLO, reconnects with back-off when the receiver goes away (the frame that
failed goes first), backs off for longer when the receiver refuses the session (one error
line per reason, e.g. a key mismatch), and reads the receiver's ACKs to count the frames
lost on the wire (``Delivery``).
"""

from __future__ import annotations

import collections
import logging
import os
import select
import socket
import threading
import time
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from edge_runtime.bundle import BUNDLE_FILE, Bundle, sha256_file
from edge_runtime.face.paste import PasteBack
from edge_runtime.hybrid.wire import (
    REFUSALS,
    REFUSE_BUSY,
    WELCOME,
    Ack,
    Bye,
    Frame,
    Framing,
    Hello,
    MessageReader,
    Refuse,
    WireError,
    decode,
    encode,
    kind_of,
)
from edge_runtime.pipeline import STATS_EVERY_S

log = logging.getLogger(__name__)

SLOW_LINK_BYTES_S = 125_000
"""1 Mbit/s: the HELLO, which may carry the photo, is given the time it takes at this rate."""
STREAM = os.urandom(16)
"""This process's stream id: a reload's new sender continues the same stream, so the
receiver hands it the output at once."""


def parse_address(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``latent://HOST:PORT`` -> (host, port); port 0 lets a
    listener take any free port."""
    text = text.removeprefix("latent://")
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{text!r}: expected HOST:PORT")
    return host or default_host, int(port)


def framing_of(paste: PasteBack) -> Framing:
    """The device's paste-back as the session carries it."""
    ok, png = cv2.imencode(".png", cv2.cvtColor(paste.photo, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("cannot encode the reference photo for the receiver")
    return Framing(png.tobytes(), paste.inverse, paste.box, paste.mask, paste.lut)


def session_hello(bundle: Bundle, root, paste: PasteBack | None = None) -> Hello:
    """A new session of this process's stream for ``bundle`` (and the photo framing)."""
    shape = (bundle.latent.channels, bundle.latent.size, bundle.latent.size)
    return Hello(STREAM, int.from_bytes(os.urandom(4), "big"),
                 bytes.fromhex(sha256_file(root / BUNDLE_FILE)), shape,
                 framing_of(paste) if paste is not None else None)


@dataclass
class SenderStats:
    sent: int = 0
    """Frames written to a connection."""
    delivered: int = 0
    """Frames the receiver confirmed."""
    lost: int = 0
    """Frames sent that the receiver did not get (or, once closed, never confirmed)."""
    unsent: int = 0
    """Frames never sent: the queue was full (no receiver, or the network slower than
    rendering)."""
    reconnects: int = 0
    """Sessions re-opened after a connection broke."""
    refusals: int = 0
    """Sessions the receiver refused."""

    def summary(self) -> dict:
        return asdict(self)


def wire_line(summary: dict) -> str:
    """SenderStats.summary() in a few words (edge-run's summary line)."""
    return (f"wire {summary['sent']} sent, {summary['delivered']} delivered, "
            f"{summary['lost']} lost, {summary['unsent']} unsent, {summary['reconnects']} "
            "reconnects")


class Delivery:
    """What the receiver confirmed of the session. Frames go out in sequence order, so an
    ACK (received count, newest seq) settles every frame sent up to that seq; frames a
    receiver never confirmed before it was replaced (a restart) count as lost."""

    def __init__(self, stats: SenderStats):
        self.stats = stats
        self.instance: int | None = None
        self._waiting: collections.deque[int] = collections.deque()  # seqs not yet settled
        self._settled = self._received = 0  # of the current receiver instance
        self._lost_before = self._delivered_before = 0  # of earlier instances

    def sent(self, seq: int) -> None:
        self._waiting.append(seq)
        self.stats.sent += 1

    def ack(self, ack: Ack) -> None:
        if ack.instance != self.instance:
            self._lost_before += len(self._waiting) + self._settled - self._received
            self._delivered_before += self._received
            self._waiting.clear()
            self._settled = self._received = 0
            self.instance = ack.instance
        while self._waiting and self._waiting[0] <= ack.last_seq:
            self._waiting.popleft()
            self._settled += 1
        self._received = ack.received
        self._update()

    def close(self) -> None:
        """Frames still unconfirmed count as lost."""
        self._lost_before += len(self._waiting)
        self._waiting.clear()
        self._update()

    @property
    def unsettled(self) -> int:
        return len(self._waiting)

    def _update(self) -> None:
        self.stats.delivered = self._delivered_before + self._received
        self.stats.lost = self._lost_before + self._settled - self._received


class Refused(Exception):
    """The receiver refused the session (REFUSE)."""

    def __init__(self, refuse: Refuse):
        super().__init__(f"{REFUSALS.get(refuse.reason, refuse.reason)}: {refuse.text}")
        self.reason = refuse.reason


class LatentSender:
    """A sink for latents [1, C, h, w] (``latent://HOST:PORT``)."""

    def __init__(self, address: str, hello: Hello, key: bytes | None = None,
                 queue_frames: int = 8, backoff: tuple[float, float] = (0.2, 5.0),
                 timeout_s: float = 2.0):
        """``queue_frames``: frames held while the network or the receiver lags (edge-run
        holds a second's worth: a receiver that stalls that long loses nothing);
        ``backoff``: first and longest wait between connection attempts (a refused session
        waits the longest); ``timeout_s``: bound of a connect, a send and the handshake."""
        self.host, self.port = parse_address(address)
        if self.port == 0:
            raise ValueError(f"{address!r}: the receiver's port is needed")
        self.hello, self.key, self.backoff, self.timeout_s = hello, key, backoff, timeout_s
        self._hello_bytes = encode(hello, key)
        self.stats = SenderStats()
        self.delivery = Delivery(self.stats)
        self._queue: collections.deque[tuple[int, bytes]] = collections.deque()
        self._limit = queue_frames
        self._ready = threading.Condition()
        self._closing = False
        self._closed = threading.Event()  # wakes a back-off wait (frames must not)
        self._deadline = float("inf")  # when closing gives up on queued frames
        self._socket: socket.socket | None = None
        self._reader = MessageReader()
        self._complaint = ""  # the last problem logged: repeats are not logged again
        self._sessions = 0
        self._start = self._logged = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="latent-sender", daemon=True)
        self._thread.start()

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def write(self, index: int, latent: np.ndarray) -> None:
        capture_us = int((time.monotonic() - self._start) * 1e6)
        frame = Frame(self.hello.session, index, capture_us, latent[0].astype(np.float16))
        data = encode(frame, self.key)
        with self._ready:
            if len(self._queue) >= self._limit:
                self._queue.popleft()
                self.stats.unsent += 1
            self._queue.append((index, data))
            self._ready.notify()

    def close(self, audio: np.ndarray | None = None, wait_s: float = 0.5) -> None:
        """Send what is queued and collect the last ACK (for at most about ``wait_s`` each:
        a stop must stay fast when the receiver is down), then stop."""
        with self._ready:
            self._closing = True
            self._deadline = time.monotonic() + wait_s
            self._ready.notify()
        self._closed.set()
        self._thread.join(timeout=2 * wait_s + self.timeout_s)
        with self._ready:
            self.stats.unsent += len(self._queue)
            self._queue.clear()
        self.delivery.close()

    def _complain(self, level: int, text: str) -> None:
        """Log a problem once until another one (or a success) replaces it."""
        if text != self._complaint:
            log.log(level, "%s", text)
            self._complaint = text

    def _run(self) -> None:
        delay = self.backoff[0]
        while not self._finished():
            if self._socket is None and (not self._sessions or self._queue):
                wait = self._open_session(delay)
                if wait and self._closed.is_set():
                    break  # a stop does not wait for a receiver that is not there
                if wait:
                    self._closed.wait(wait)
                    delay = min(max(delay * 2, wait), self.backoff[1])
                    continue
                delay = self.backoff[0]
            if self._socket is None:  # the receiver closed an idle session: reconnect
                self._next(timeout=0.1, take=False)  # when there is a frame to send
                continue
            item = self._next(timeout=0.1)
            if item is not None:
                self._send(*item)
            self._poll(0.0)
            self._log_stats()
        if self._socket is not None:
            self._goodbye()

    def _log_stats(self) -> None:
        if time.monotonic() - self._logged >= STATS_EVERY_S:
            self._logged = time.monotonic()
            log.info("live: %s", wire_line(self.stats.summary()))

    def _finished(self) -> bool:
        with self._ready:
            return self._closing and (not self._queue or time.monotonic() > self._deadline)

    def _next(self, timeout: float, take: bool = True) -> tuple[int, bytes] | None:
        """The oldest queued frame (waiting up to ``timeout`` for one); with ``take``
        False it stays queued."""
        with self._ready:
            if not self._queue and not self._closing:
                self._ready.wait(timeout)
            if not (take and self._queue):
                return None
            return self._queue.popleft()

    def _open_session(self, delay: float) -> float:
        """Connect and do the handshake -> 0 when the session is open, else how long to wait
        before the next try."""
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        except OSError as exc:
            self._complain(logging.WARNING, f"receiver {self.where} unreachable ({exc}); "
                           "retrying with back-off")
            return delay
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._socket, self._reader = sock, MessageReader()
        try:
            sock.settimeout(self.timeout_s + len(self._hello_bytes) / SLOW_LINK_BYTES_S)
            sock.sendall(self._hello_bytes)  # it may carry the photo: allow for its size
            sock.settimeout(self.timeout_s)
            welcome = self._await_welcome()
        except Refused as exc:
            self._disconnect()
            self.stats.refusals += 1
            if exc.reason == REFUSE_BUSY:
                self._complain(logging.INFO, f"receiver {self.where} is busy with another "
                               f"stream ({exc}); waiting")
                return delay
            self._complain(logging.ERROR, f"receiver {self.where} refused the session: "
                           f"{exc}")
            return self.backoff[1]
        except (OSError, WireError) as exc:
            self._disconnect()
            self._complain(logging.WARNING, f"receiver {self.where}: handshake failed ({exc});"
                           " retrying with back-off")
            return delay
        if self._sessions:
            self.stats.reconnects += 1
        self._sessions += 1
        self.delivery.ack(welcome)
        self._complaint = ""
        log.info("receiver %s took the session (%d frames of it received so far)", self.where,
                 welcome.received)
        return 0.0

    def _await_welcome(self) -> Ack:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            for body in self._receive(deadline - time.monotonic()):
                message = decode(body, self.key)
                if isinstance(message, Refuse):
                    raise Refused(message)
                if isinstance(message, Ack) and kind_of(body) == WELCOME:
                    return message
                raise WireError(f"expected WELCOME, got {type(message).__name__}")
        raise WireError(f"no answer within {self.timeout_s:.1f} s (an older receiver? it "
                        "must speak wire version 2)")

    def _receive(self, timeout: float) -> list[bytes]:
        """Message bodies that arrive within ``timeout``; OSError when the receiver hung up."""
        readable, _, _ = select.select([self._socket], [], [], max(timeout, 0.0))
        if not readable:
            return []
        data = self._socket.recv(1 << 16)
        if not data:
            raise ConnectionResetError("the receiver closed the connection")
        self._reader.feed(data)
        bodies = []
        while (body := self._reader.next()) is not None:
            bodies.append(body)
        return bodies

    def _send(self, seq: int, data: bytes) -> None:
        try:
            self._socket.sendall(data)
        except OSError as exc:
            self._broken(exc)
            self._requeue(seq, data)  # the same frame goes first once reconnected
            return
        self.delivery.sent(seq)

    def _poll(self, timeout: float) -> None:
        """Read the receiver's ACKs (and notice when it went away)."""
        if self._socket is None:
            return
        try:
            for body in self._receive(timeout):
                message = decode(body, self.key)
                if isinstance(message, Refuse):
                    raise Refused(message)
                if isinstance(message, Ack):
                    self.delivery.ack(message)
        except (OSError, WireError, Refused) as exc:
            self._broken(exc)

    def _broken(self, exc: Exception) -> None:
        self._complain(logging.WARNING, f"receiver {self.where} gone ({exc}); reconnecting")
        self._disconnect()

    def _goodbye(self) -> None:
        """BYE, then wait for the ACK that settles every frame sent."""
        try:
            self._socket.sendall(encode(Bye(self.hello.session), self.key))
        except OSError:
            self._disconnect()
            return
        deadline = time.monotonic() + max(self._deadline - time.monotonic(), 0.2)
        while self._socket is not None and self.delivery.unsettled and \
                time.monotonic() < deadline:
            self._poll(deadline - time.monotonic())
        self._disconnect()

    def _disconnect(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _requeue(self, seq: int, data: bytes) -> None:
        with self._ready:
            self._queue.appendleft((seq, data))
            while len(self._queue) > self._limit:
                self._queue.popleft()  # the oldest frames go when the queue is full
                self.stats.unsent += 1
