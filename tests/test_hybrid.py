"""E2 hybrid: the wire format (round trip, fuzz), the receiver on real sockets on 127.0.0.1
(garbage, oversized and unauthenticated input, restarts) and the reconnecting sender."""

from __future__ import annotations

import socket
import struct
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_runtime.hybrid.receiver import Receiver
from edge_runtime.hybrid.sender import LatentSender
from edge_runtime.hybrid.wire import (
    HEADER,
    MAX_MESSAGE,
    PREFIX,
    LatentMessage,
    WireError,
    decode,
    encode,
)

KEY = b"0123456789abcdef-shared"
SHAPE = (4, 16, 16)


def message(seq: int = 7) -> LatentMessage:
    rng = np.random.default_rng(seq)
    return LatentMessage(seq, 123456, rng.standard_normal(SHAPE).astype(np.float16))


def test_round_trip_with_and_without_a_key():
    for key in (None, KEY):
        data = encode(message(), key)
        (length,) = PREFIX.unpack(data[:4])
        got = decode(data[4:], key)
        assert length == len(data) - 4 and got.seq == 7 and got.capture_us == 123456
        assert np.array_equal(got.latent, message().latent)


def test_authentication_is_enforced():
    with pytest.raises(WireError, match="unauthenticated"):
        decode(encode(message())[4:], KEY)
    with pytest.raises(WireError, match="bad MAC"):
        decode(encode(message(), b"another-key-of-16-bytes")[4:], KEY)
    tampered = bytearray(encode(message(), KEY)[4:])
    tampered[HEADER.size + 5] ^= 1
    with pytest.raises(WireError, match="bad MAC"):
        decode(bytes(tampered), KEY)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_never_crash_the_parser(data):
    try:
        decode(data, None)
    except WireError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 40), st.integers(0, 255))
def test_any_modified_authenticated_message_is_refused(position, value):
    body = bytearray(encode(message(), KEY)[4:])
    index = position if position < HEADER.size else len(body) - 1 - position
    if body[index] == value:
        return
    body[index] = value
    with pytest.raises(WireError):
        decode(bytes(body), KEY)


class Frames:
    """A sink that records which frames the receiver shows (and that they are frames)."""

    def __init__(self):
        self.seqs: list[int] = []

    def write(self, index, frame):
        assert frame.shape == (128, 128, 3) and frame.dtype == np.uint8
        self.seqs.append(index)

    def close(self, audio=None):
        pass


@pytest.fixture(scope="module")
def decoder(tiny_bundle):
    """The tiny bundle's real decoder graph."""
    from edge_runtime.backends import open_graph
    from edge_runtime.bundle import load_bundle

    bundle, root = load_bundle(tiny_bundle)
    return open_graph(bundle, root, "onnx-fp32", "decoder")


def start_receiver(decoder, key=None, port: int = 0) -> tuple[Receiver, Frames,
                                                                threading.Event,
                                                                threading.Thread]:
    frames, stop = Frames(), threading.Event()
    receiver = Receiver(decoder, SHAPE, frames, f"127.0.0.1:{port}", key)
    thread = threading.Thread(target=receiver.serve, args=(stop,), daemon=True)
    thread.start()
    return receiver, frames, stop, thread


def wait_for(condition, seconds: float = 5.0) -> None:
    end = time.monotonic() + seconds
    while not condition() and time.monotonic() < end:
        time.sleep(0.01)
    assert condition()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def send(address, data: bytes) -> None:
    with socket.create_connection(address) as sock:
        sock.sendall(data)
        time.sleep(0.05)


def test_receiver_survives_garbage_oversized_and_wrong_shapes(decoder):
    receiver, frames, stop, thread = start_receiver(decoder)
    address = receiver.address
    send(address, b"GET / HTTP/1.1\r\n\r\n")
    send(address, PREFIX.pack(MAX_MESSAGE + 1) + b"x" * 100)  # refused before allocation
    odd = LatentMessage(1, 0, np.zeros((4, 8, 8), np.float16))
    send(address, encode(odd))
    send(address, encode(message(3)) + encode(message(4)) + encode(message(2)))
    wait_for(lambda: frames.seqs == [3, 4])
    stop.set()
    thread.join()
    assert receiver.stats.rejected == 3 and receiver.stats.skipped == 1


def test_receiver_with_a_key_refuses_unauthenticated_frames(decoder):
    receiver, frames, stop, thread = start_receiver(decoder, KEY)
    send(receiver.address, encode(message(1)))
    send(receiver.address, encode(message(2), KEY))
    wait_for(lambda: frames.seqs == [2])
    stop.set()
    thread.join()
    assert receiver.stats.rejected == 1


def test_sender_reconnects_and_no_frame_after_the_reconnect_is_lost(decoder):
    receiver, frames, stop, thread = start_receiver(decoder)
    port = receiver.address[1]
    sender = LatentSender(f"latent://127.0.0.1:{port}", backoff=(0.02, 0.1), queue_frames=64)
    latent = message().latent[None].astype(np.float32)
    for seq in range(10):
        sender.write(seq, latent)
    wait_for(lambda: len(frames.seqs) == 10)
    stop.set()  # the receiver goes away mid-stream
    thread.join()
    for seq in range(10, 20):  # rendered while nobody listens
        sender.write(seq, latent)
        time.sleep(0.01)
    receiver2, frames2, stop2, thread2 = start_receiver(decoder, port=port)
    wait_for(lambda: sender.reconnects >= 1 and frames2.seqs, 10)
    first = frames2.seqs[0]
    for seq in range(20, 40):  # rendered after the reconnect
        sender.write(seq, latent)
    sender.close()
    wait_for(lambda: frames2.seqs and frames2.seqs[-1] == 39)
    stop2.set()
    thread2.join()
    assert frames.seqs == list(range(10))
    assert frames2.seqs == list(range(first, 40))  # in order, nothing missing


def test_the_length_prefix_is_bounded():
    assert struct.calcsize(">I") == PREFIX.size
    with pytest.raises(WireError, match="outside"):
        decode(b"\0" * (MAX_MESSAGE + 1))


def test_edge_run_hybrid_to_edge_receive_end_to_end(tiny_bundle, tiny_dataset, tmp_path):
    """The two CLIs over 127.0.0.1: every rendered frame arrives and is decoded."""
    import json

    from edge_runtime.cli import main as edge_run
    from edge_runtime.hybrid.receiver import main as edge_receive

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    key = tmp_path / "key"
    key.write_bytes(KEY)
    out = tmp_path / "received.mp4"
    wav = sorted((tiny_dataset / "clips").glob("*/audio.wav"))[0]
    photo = sorted((tiny_dataset / "clips").glob("*/frames/*.png"))[0]
    stats = tmp_path / "stats.json"
    codes = {}
    args = ["--bundle", str(tiny_bundle), "--listen", f"127.0.0.1:{port}", "--sink", str(out),
            "--key-file", str(key)]
    receiver = threading.Thread(target=lambda: codes.update(r=edge_receive(args + [
        "--frames", "20"])))
    receiver.start()
    wait_for(lambda: _listening(port), 30)  # loading the bundle may take a while on CI
    short = tmp_path / "short.wav"
    from tests.test_runtime import write_wav
    from training.data.media import read_wav

    write_wav(short, read_wav(wav)[0][:int(0.8 * 16000)])  # 0.8 s = 20 frames
    codes["s"] = edge_run(["--bundle", str(tiny_bundle), "--mode", "hybrid", "--sink",
                           f"latent://127.0.0.1:{port}", "--key-file", str(key), "--audio",
                           str(short), "--reference", str(photo), "--offline", "--stats",
                           str(stats)])
    receiver.join(30)
    assert codes == {"s": 0, "r": 0}
    assert json.loads(stats.read_text())["frames"] == 20
    import av

    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 20
