"""``edge-receive``: the host side of E2 (hybrid). Accepts the device's latent stream
(edge_runtime.hybrid.wire), decodes each latent with the bundle's decoder graph and hands the
frames to a sink (mp4, PNG, null), marked as synthetic like edge-run's
(edge_runtime.marking).

It binds 127.0.0.1 unless told otherwise, serves one sender at a time, and survives bad
input: a malformed, oversized, wrongly shaped or unauthenticated message is logged and its
connection closed; the server keeps listening. Frames are kept in sequence order: a frame
whose sequence number is not newer than the last one shown is skipped.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edge_runtime.backends import BACKENDS, open_graph
from edge_runtime.bundle import BundleError, load_bundle
from edge_runtime.errors import report
from edge_runtime.face.reference import MAX_OUTPUT, prepare_reference
from edge_runtime.hybrid.sender import parse_address
from edge_runtime.hybrid.wire import PREFIX, WireError, check_length, decode, read_key
from edge_runtime.marking.marker import Marker
from edge_runtime.output.sinks import Sink, open_sink
from edge_runtime.render.renderer import BACKEND_PREFIX

log = logging.getLogger("edge-receive")


@dataclass
class ReceiverStats:
    frames: int = 0
    rejected: int = 0
    """Messages refused (malformed, oversized, wrong shape, bad MAC)."""
    connections: int = 0
    skipped: int = 0
    """Frames older than the last one shown."""


def _read_exact(conn: socket.socket, count: int) -> bytes | None:
    chunks, remaining = [], count
    while remaining:
        chunk = conn.recv(min(remaining, 1 << 16))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class Receiver:
    def __init__(self, decoder, latent_shape: tuple[int, int, int], sink: Sink,
                 listen: str = "127.0.0.1:5599", key: bytes | None = None,
                 compose: Callable[[np.ndarray], np.ndarray] | None = None):
        """``compose`` turns each decoded face into the output frame (the paste-back into
        the reference photo, edge_runtime.face.paste)."""
        self.decoder, self.latent_shape, self.sink, self.key = decoder, latent_shape, sink, key
        self.compose = compose
        host, port = parse_address(listen)
        self.server = socket.create_server((host, port), reuse_port=False)
        self.server.settimeout(0.2)
        self.address = self.server.getsockname()[:2]
        self.stats = ReceiverStats()
        self.last_seq = -1
        self._feed = np.zeros((1, *latent_shape), np.float32)

    def serve(self, stop: threading.Event, max_frames: int | None = None) -> ReceiverStats:
        log.info("listening on %s:%d", *self.address)
        try:
            while not stop.is_set():
                if max_frames is not None and self.stats.frames >= max_frames:
                    break
                try:
                    conn, peer = self.server.accept()
                except TimeoutError:
                    continue
                self.stats.connections += 1
                with conn:
                    self._connection(conn, peer, stop, max_frames)
        finally:
            self.server.close()
        return self.stats

    def _connection(self, conn: socket.socket, peer, stop: threading.Event,
                    max_frames: int | None) -> None:
        conn.settimeout(1.0)
        while not stop.is_set():
            if max_frames is not None and self.stats.frames >= max_frames:
                return
            try:
                prefix = _read_exact(conn, PREFIX.size)
                if prefix is None:
                    return
                (length,) = PREFIX.unpack(prefix)
                check_length(length)
                body = _read_exact(conn, length)
                if body is None:
                    return
                message = decode(body, self.key)
                if message.latent.shape != self.latent_shape:
                    raise WireError(f"latent shape {message.latent.shape}, the bundle's is "
                                    f"{self.latent_shape}")
            except TimeoutError:
                continue
            except (WireError, OSError) as exc:
                self.stats.rejected += 1
                log.warning("%s: %s; closing the connection", peer[0], exc)
                return
            self._show(message.seq, message.latent)

    def _show(self, seq: int, latent: np.ndarray) -> None:
        if seq <= self.last_seq:
            self.stats.skipped += 1
            return
        self._feed[0] = latent
        frame = self.decoder.run({"latent": self._feed})[0]
        if self.compose is not None:
            frame = self.compose(frame)
        self.sink.write(seq, frame)
        self.last_seq = seq
        self.stats.frames += 1


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
    parser.add_argument("--no-label", dest="label", action="store_false",
                        help="leave out the visible \"AI-generated\" corner label (the "
                             "invisible watermark and the metadata are always written)")
    parser.add_argument("--reference", help="the device's reference photo: frames are pasted "
                        "back into it at its framing (needs a bundle with face graphs); "
                        "without it frames are the model's aligned face crop")
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
                         marker=Marker.of_bundle(bundle, root, args.label))
        receiver = Receiver(decoder, shape, sink, args.listen, read_key(args.key_file),
                            compose)
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
    print(f"edge-receive: {stats.frames} frames in {elapsed:.1f} s, {stats.rejected} rejected, "
          f"{stats.skipped} out of order, {stats.connections} connections", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
