"""``edge-receive``: the host side of E2 (hybrid). Accepts devices' sessions of latent frames
(edge_runtime.hybrid.wire, version 2), decodes each latent with the bundle's decoder graph,
pastes it into the device's photo when the session brings its framing (or ``--reference``
overrides it) and hands the frames to a sink (mp4, PNG, live page, null), marked as
synthetic like edge-run's (edge_runtime.marking).

It binds 127.0.0.1 unless told otherwise and serves up to ``Limits.connections``
connections at once, each in its own thread, so a silent or slow peer never starves a
sender: a connection must say HELLO within ``handshake_s``, finish a message it began within
``message_s`` and is closed after ``idle_s`` without one. One session owns the output; a
new session of the same stream (a reconnect or a reload) takes it over at once, another
stream waits (REFUSE busy, the sender retries) until the owner's connection closes or goes
idle. A session with the wrong key, bundle, version or latent shape is refused with its
reason and one log line per peer and reason a minute. A bad message inside a session is
counted and skipped; reading goes on from the next message boundary. ``Timeline`` maps each
session's sequence numbers onto the output.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_runtime.backends import BACKENDS, open_graph
from edge_runtime.bundle import BUNDLE_FILE, BundleError, load_bundle, sha256_file
from edge_runtime.errors import report
from edge_runtime.face.paste import PasteBack
from edge_runtime.face.reference import MAX_OUTPUT, prepare_reference
from edge_runtime.hybrid.sender import parse_address
from edge_runtime.hybrid.wire import (
    BYE,
    FRAME,
    HELLO,
    KIND_NAMES,
    REFUSE_BUNDLE,
    REFUSE_BUSY,
    REFUSE_FRAMING,
    REFUSE_KEY,
    REFUSE_SHAPE,
    REFUSE_VERSION,
    WELCOME,
    Ack,
    Framing,
    Hello,
    KeyMismatch,
    MessageReader,
    Refuse,
    VersionError,
    WireError,
    decode,
    encode,
    kind_of,
    limit_of,
    png_size,
    read_key,
)
from edge_runtime.marking.marker import C2PA_KEYS_HELP, LABEL_HELP, Marker
from edge_runtime.output.sinks import Sink, open_sink
from edge_runtime.render.renderer import BACKEND_PREFIX

log = logging.getLogger("edge-receive")

COMPLAIN_EVERY_S = 60.0
"""A peer's repeated problem of one kind is logged once per this many seconds."""
SESSIONS_KEPT = 16
"""Sessions whose counts the receiver remembers (a sender that reconnects finds its own)."""


@dataclass(frozen=True)
class Limits:
    """Bounds of the receiver's connections."""

    connections: int = 8
    """Connections served at once; more are closed on arrival."""
    handshake_s: float = 2.0
    """A connection must begin its HELLO within this (and finish it within message_s)."""
    message_s: float = 5.0
    """A message begun must be complete within this (a sender that stalls longer is cut)."""
    idle_s: float = 3.0
    """A session without a message for this long is closed and gives up the output (a
    live sender sends fps frames a second)."""
    ack_every: int = 10
    """Frames between two ACKs (and an ACK whenever the sender pauses)."""


@dataclass
class ReceiverStats:
    frames: int = 0
    """Frames written to the sink."""
    filled: int = 0
    """Frames repeated by the sink to fill gaps of at most a second."""
    resets: int = 0
    """Gaps of more than a second: the timeline went on right after the last frame."""
    rejected: int = 0
    """Messages dropped (malformed, wrong shape or session, bad MAC)."""
    skipped: int = 0
    """Frames not newer than the last one shown of their session."""
    refused: int = 0
    """Sessions refused (key, bundle, version, shape, framing, busy)."""
    connections: int = 0
    sessions: int = 0


class Timeline:
    """A session's sequence numbers -> the output's frame indices. A gap of at most a second
    is kept (the sink repeats the last frame, so the video keeps its pace); a longer gap,
    a jump back or a new session continues right after the last frame written, so no
    sequence number can make the sink write more than a second of filling."""

    def __init__(self, fps: int):
        self.fps = fps
        self.next_index = 0
        self.session: tuple[bytes, int] | None = None
        self.last_seq = -1

    def place(self, session: tuple[bytes, int], seq: int) -> tuple[int | None, bool]:
        """-> (output index or None to skip the frame, whether the timeline was reset)."""
        same = session == self.session
        step = seq - self.last_seq
        if same and -self.fps <= step <= 0:
            return None, False
        gap = same and 1 <= step <= self.fps + 1
        index = self.next_index + (step - 1 if gap else 0)
        self.session, self.last_seq, self.next_index = session, seq, index + 1
        return index, same and not gap


@dataclass
class SessionState:
    """What one session delivered to this receiver."""

    received: int = 0
    last_seq: int = -1
    compose: Callable[[np.ndarray], np.ndarray] | None = None
    """Its paste-back (from its HELLO), or None for the aligned face crops."""


@dataclass
class Connection:
    sock: socket.socket
    host: str
    session: tuple[bytes, int] | None = None
    """(stream, session) once the HELLO is accepted."""
    evicted: bool = False
    """A newer session of the same stream took the output: close."""
    since_ack: int = 0
    last_message: float = field(default_factory=time.monotonic)


class Complaints:
    """Warnings about peers, at most one per peer, kind and COMPLAIN_EVERY_S."""

    def __init__(self):
        self._last: dict[tuple[str, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def warn(self, host: str, kind: str, text: str) -> None:
        now = time.monotonic()
        with self._lock:
            when, quiet = self._last.get((host, kind), (-COMPLAIN_EVERY_S, 0))
            if now - when < COMPLAIN_EVERY_S:
                self._last[(host, kind)] = (when, quiet + 1)
                return
            self._last[(host, kind)] = (now, 0)
            if len(self._last) > 256:  # bounded: forget the oldest peer
                del self._last[next(iter(self._last))]
        more = f" ({quiet} more since the last report)" if quiet else ""
        log.warning("%s: %s%s", host, text, more)


def _photo(framing: Framing) -> np.ndarray:
    """The framing's PNG as RGB uint8 [H, W, 3] (its size checked against its header)."""
    width, height = png_size(framing.photo_png)
    image = cv2.imdecode(np.frombuffer(framing.photo_png, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.shape[:2] != (height, width):
        raise WireError("the framing's photo does not decode")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def paste_of(framing: Framing) -> PasteBack:
    """The device's paste-back, rebuilt from the session's framing."""
    mask = framing.mask.astype(np.float32)
    lut = None if framing.lut is None else framing.lut.copy()
    return PasteBack(_photo(framing), framing.inverse.copy(), framing.box, mask, 1 - mask,
                     lut)


class Refusal(Exception):
    def __init__(self, reason: int, text: str):
        super().__init__(text)
        self.reason = reason


class Receiver:
    def __init__(self, decoder, latent_shape: tuple[int, int, int], sink: Sink,
                 bundle_sha256: bytes, fps: int, listen: str = "127.0.0.1:5599",
                 key: bytes | None = None,
                 compose: Callable[[np.ndarray], np.ndarray] | None = None,
                 limits: Limits = Limits()):
        """``compose`` turns each decoded face into the output frame (the paste-back into
        the receiver's own --reference photo, edge_runtime.face.paste); it overrides the
        framing a session brings."""
        self.decoder, self.latent_shape, self.sink, self.key = decoder, latent_shape, sink, key
        self.bundle_sha256, self.compose, self.limits = bundle_sha256, compose, limits
        host, port = parse_address(listen)
        self.server = socket.create_server((host, port), reuse_port=False)
        self.server.settimeout(0.2)
        self.address = self.server.getsockname()[:2]
        self.stats = ReceiverStats()
        self.instance = int.from_bytes(os.urandom(8), "big") >> 1
        self.timeline = Timeline(fps)
        self.complaints = Complaints()
        self.frame_size: tuple[int, int] | None = None  # (H, W) of the frames written
        self._sessions: collections.OrderedDict[tuple[bytes, int], SessionState] = \
            collections.OrderedDict()
        self._owner: Connection | None = None
        self._lock = threading.Lock()  # the sink, timeline, sessions and owner
        self._feed = np.zeros((1, *latent_shape), np.float32)
        self.crop_size = decoder.run({"latent": self._feed})[0].shape[:2]  # also a warm-up
        self._done = threading.Event()
        self._max_frames: int | None = None

    def serve(self, stop: threading.Event, max_frames: int | None = None) -> ReceiverStats:
        log.info("listening on %s:%d", *self.address)
        self._max_frames = max_frames
        threads: list[threading.Thread] = []
        try:
            while not stop.is_set() and not self._done.is_set():
                try:
                    conn, peer = self.server.accept()
                except TimeoutError:
                    continue
                threads = [t for t in threads if t.is_alive()]
                if len(threads) >= self.limits.connections:
                    self.complaints.warn(peer[0], "full", f"{len(threads)} connections "
                                         "open already; closing this one")
                    conn.close()
                    continue
                self.stats.connections += 1
                thread = threading.Thread(target=self._serve_connection,
                                          args=(Connection(conn, peer[0]), stop),
                                          name=f"receive-{peer[0]}:{peer[1]}", daemon=True)
                thread.start()
                threads.append(thread)
        finally:
            self._done.set()
            self.server.close()
            for thread in threads:
                thread.join(timeout=2.0)
        return self.stats

    def _serve_connection(self, conn: Connection, stop: threading.Event) -> None:
        with conn.sock:
            conn.sock.settimeout(0.2)
            try:
                self._read_messages(conn, stop)
            finally:
                with self._lock:
                    if self._owner is conn:
                        self._owner = None

    def _expired(self, conn: Connection, reader: MessageReader, begun: float | None) -> str:
        """Why the connection must close now ("" while it may stay)."""
        now, limits = time.monotonic(), self.limits
        if conn.session is None and begun is None and \
                now - conn.last_message > limits.handshake_s:
            return f"no HELLO within {limits.handshake_s:.1f} s"
        if begun is not None and now - begun > limits.message_s:
            return (f"a message stalled for {now - begun:.1f} s ({reader.pending} bytes of it "
                    "arrived)")
        if conn.session is not None and now - conn.last_message > limits.idle_s:
            return f"idle for {limits.idle_s:.1f} s"
        return ""

    def _read_messages(self, conn: Connection, stop: threading.Event) -> None:
        reader = MessageReader(limit_of(hello_allowed=True))
        begun: float | None = None  # when the incomplete message in the reader began
        while not (stop.is_set() or self._done.is_set() or conn.evicted):
            if why := self._expired(conn, reader, begun):
                self.complaints.warn(conn.host, "timeout", f"closing the connection: {why}")
                return
            try:
                data = conn.sock.recv(1 << 16)
            except TimeoutError:
                if conn.since_ack:  # a pause: settle what came so far
                    self._ack(conn)
                continue
            except OSError:
                return
            if not data:
                return
            now, was_pending = time.monotonic(), reader.pending
            reader.feed(data)
            completed = False
            while (body := reader.next()) is not None:
                completed = True
                conn.last_message = now
                if not self._handle(conn, body):
                    return
                reader.limit = limit_of(hello_allowed=conn.session is None)
            begun = None if not reader.pending else (
                now if completed or not was_pending else begun)

    def _handle(self, conn: Connection, body: bytes) -> bool:
        """One message -> whether the connection stays open."""
        try:
            kind = kind_of(body)
            if kind == HELLO:
                return self._hello(conn, body)
            if conn.session is None:
                raise WireError(f"{KIND_NAMES[kind]} before HELLO")
            message = decode(body, self.key)
        except VersionError as exc:
            self._refuse(conn, REFUSE_VERSION, f"{exc}: update the sender")
            return False
        except WireError as exc:
            self.stats.rejected += 1
            self.complaints.warn(conn.host, "message", f"message dropped: {exc}")
            return conn.session is not None  # in a session: go on at the next message
        if kind == FRAME:
            self._frame(conn, message)
        elif kind == BYE:
            self._ack(conn)
            with self._lock:  # the sender is stopping: another stream may have the output
                if self._owner is conn:
                    self._owner = None
        else:
            self.stats.rejected += 1
            self.complaints.warn(conn.host, "message", f"unexpected {KIND_NAMES[kind]}")
        return True

    def _refuse(self, conn: Connection, reason: int, text: str) -> None:
        self.stats.refused += 1
        if reason != REFUSE_BUSY:
            self.complaints.warn(conn.host, f"refused {reason}", f"session refused: {text}")
        try:
            conn.sock.sendall(encode(Refuse(reason, text), self.key))
        except OSError:
            pass  # it hung up first; the refusal is logged

    def _hello(self, conn: Connection, body: bytes) -> bool:
        try:
            hello = decode(body, self.key)
            self._check(hello)
            compose = self.compose or (paste_of(hello.framing) if hello.framing else None)
        except KeyMismatch as exc:
            self._refuse(conn, REFUSE_KEY, f"{exc}; give both sides the same --key-file")
            return False
        except Refusal as exc:
            self._refuse(conn, exc.reason, str(exc))
            return False
        except WireError as exc:
            self._refuse(conn, REFUSE_FRAMING, f"bad HELLO: {exc}")
            return False
        key = (hello.stream, hello.session)
        with self._lock:
            owner = self._owner
            if owner is not None and owner is not conn and owner.session[0] != hello.stream \
                    and time.monotonic() - owner.last_message < self.limits.idle_s:
                busy = owner.host
            else:
                busy = ""
                if owner is not None and owner is not conn:
                    owner.evicted = True
                self._owner = conn
                state = self._sessions.pop(key, None) or SessionState(compose=compose)
                self._sessions[key] = state
                while len(self._sessions) > SESSIONS_KEPT:
                    self._sessions.popitem(last=False)
        if busy:
            self._refuse(conn, REFUSE_BUSY, f"receiving another stream from {busy}")
            return False
        conn.session = key
        self.stats.sessions += 1
        log.info("%s: session %08x of stream %s (%s)", conn.host, hello.session,
                 hello.stream.hex()[:8], "with its photo framing" if hello.framing else
                 "face crops" if self.compose is None else "--reference framing")
        return self._send(conn, encode(self._state_ack(key, state), self.key, WELCOME))

    def _check(self, hello: Hello) -> None:
        """Refusal unless the session fits this receiver."""
        if hello.bundle_sha256 != self.bundle_sha256:
            raise Refusal(REFUSE_BUNDLE, f"the sender's bundle (sha256 "
                          f"{hello.bundle_sha256.hex()[:12]}) is not this receiver's "
                          f"({self.bundle_sha256.hex()[:12]}); give both the same bundle")
        if hello.shape != self.latent_shape:
            raise Refusal(REFUSE_SHAPE, f"latent shape {hello.shape}, the bundle's is "
                          f"{self.latent_shape}")
        size = self._size_of(hello)
        if None not in (self.frame_size, size) and size != self.frame_size:
            raise Refusal(REFUSE_FRAMING, f"the session's frames would be {size[1]}x{size[0]}"
                          f", this receiver writes {self.frame_size[1]}x{self.frame_size[0]}; "
                          "restart edge-receive for another photo")

    def _size_of(self, hello: Hello) -> tuple[int, int] | None:
        """(H, W) of the frames the session will give, when it decides them."""
        if self.compose is not None:
            return None  # --reference: the receiver's own framing, whatever the session
        if hello.framing is None:
            return self.crop_size
        width, height = png_size(hello.framing.photo_png)
        return height, width

    def _state_ack(self, key: tuple[bytes, int], state: SessionState) -> Ack:
        return Ack(key[1], self.instance, state.received, state.last_seq)

    def _send(self, conn: Connection, data: bytes) -> bool:
        try:
            conn.sock.sendall(data)
            return True
        except OSError:
            return False

    def _ack(self, conn: Connection) -> None:
        with self._lock:
            state = self._sessions.get(conn.session)
        if state is not None:
            conn.since_ack = 0
            self._send(conn, encode(self._state_ack(conn.session, state), self.key))

    def _frame(self, conn: Connection, frame) -> None:
        if frame.session != conn.session[1] or frame.latent.shape != self.latent_shape:
            self.stats.rejected += 1
            self.complaints.warn(conn.host, "message", f"frame of session {frame.session:08x} "
                                 f"shape {frame.latent.shape} dropped")
            return
        with self._lock:
            state = self._sessions.get(conn.session)
            if state is None:
                return
            state.received += 1
            state.last_seq = max(state.last_seq, frame.seq)
            if self._owner is conn:
                self._show(conn.session, frame.seq, frame.latent, state.compose)
        conn.since_ack += 1
        if conn.since_ack >= self.limits.ack_every:
            self._ack(conn)

    def _show(self, session: tuple[bytes, int], seq: int, latent: np.ndarray,
              compose: Callable[[np.ndarray], np.ndarray] | None) -> None:
        """Decode and write one frame (the caller holds the lock)."""
        start = self.timeline.next_index
        index, reset = self.timeline.place(session, seq)
        if index is None:
            self.stats.skipped += 1
            return
        if reset:
            self.stats.resets += 1
            log.info("a gap of more than a second in the stream: the output goes on from "
                     "the last frame")
        self._feed[0] = latent
        frame = self.decoder.run({"latent": self._feed})[0]
        if compose is not None:
            frame = compose(frame)
        self.frame_size = self.frame_size or frame.shape[:2]
        self.sink.write(index, frame)
        self.stats.frames += 1
        self.stats.filled += index - start
        if self._max_frames is not None and self.stats.frames >= self._max_frames:
            self._done.set()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-receive", description="Decode and show/save the latents a device sends "
        "in hybrid (E2) mode. Output is synthetic media.")
    parser.add_argument("--bundle", required=True, help="the bundle the device runs")
    parser.add_argument("--listen", default="127.0.0.1:5599",
                        help="ADDR:PORT to listen on (127.0.0.1 unless you open it on purpose)")
    parser.add_argument("--sink", default="null",
                        help="OUT.mp4, png:FOLDER, FOLDER/, http://HOST:PORT (a live MJPEG "
                             "page) or null")
    parser.add_argument("--key-file", help="shared key file: require HMAC-authenticated frames")
    parser.add_argument("--no-label", dest="label", action="store_false", help=LABEL_HELP)
    parser.add_argument("--c2pa-keys", metavar="DIR", help=C2PA_KEYS_HELP)
    parser.add_argument("--reference", help="paste frames into this photo (needs a bundle "
                        "with face graphs) instead of the framing the device sends with "
                        "its session; without either, frames are the model's aligned "
                        "face crop")
    parser.add_argument("--face", type=int, metavar="N",
                        help="with --reference: the device's --face (default: the largest)")
    parser.add_argument("--output-size", type=int, default=MAX_OUTPUT, metavar="PX",
                        help=f"with --reference: cap on the frames' long side (default "
                             f"{MAX_OUTPUT})")
    parser.add_argument("--backend", choices=list(BACKENDS), default="onnxruntime",
                        help="inference runtime for the decoder")
    parser.add_argument("--precision", choices=["fp32", "int8"], default="fp32",
                        help="decoder precision")
    parser.add_argument("--threads", type=int, default=2, help="decoder threads")
    parser.add_argument("--frames", type=int, help="stop after this many frames")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        bundle, root = load_bundle(args.bundle)
        variant = bundle.precision_of(BACKEND_PREFIX[args.backend], args.precision, "decoder")
        decoder = open_graph(bundle, root, variant, "decoder", args.threads)
        shape = (bundle.latent.channels, bundle.latent.size, bundle.latent.size)
        compose = None
        if args.reference:
            if bundle.face is None:
                raise BundleError(f"bundle {bundle.name!r} has no face graphs: --reference "
                                  "needs them (tsd bundle-face adds them)")
            compose = prepare_reference(args.reference, bundle, root, args.face,
                                        args.output_size, threads=args.threads).paste
        sink = open_sink(args.sink, bundle.fps, with_audio=False,
                         marker=Marker.of_bundle(bundle, root, args.label, args.c2pa_keys))
        receiver = Receiver(decoder, shape, sink, bytes.fromhex(sha256_file(root / BUNDLE_FILE)),
                            bundle.fps, args.listen, read_key(args.key_file), compose)
    except (BundleError, ValueError, OSError) as exc:
        return report("edge-receive", exc)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():  # signals reach only it
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    began = time.monotonic()
    stats = receiver.serve(stop, args.frames)
    sink.close()
    elapsed = time.monotonic() - began
    print(f"edge-receive: {stats.frames} frames in {elapsed:.1f} s ({stats.filled} filled, "
          f"{stats.resets} resets), {stats.sessions} sessions, {stats.refused} refused, "
          f"{stats.rejected} rejected, {stats.skipped} out of order, {stats.connections} "
          "connections", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
