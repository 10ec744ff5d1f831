"""E2 hybrid: the wire format v2 (round trips, fuzz, authentication, resynchronisation), the
receiver's timeline, the sender's delivery accounting, and the receiver and sender on real
sockets on 127.0.0.1 with the demo bundle's real decoder graph. Fault cases (restarts,
stalls, idle peers, key mismatch, old versions): tests/faults/test_hybrid_faults.py."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_runtime.bundle import BUNDLE_FILE, load_bundle, sha256_file
from edge_runtime.face.paste import PasteBack
from edge_runtime.hybrid.receiver import Limits, Receiver, Timeline
from edge_runtime.hybrid.sender import (
    Delivery,
    LatentSender,
    SenderStats,
    framing_of,
)
from edge_runtime.hybrid.wire import (
    HEAD,
    MAX_HELLO,
    MAX_MESSAGE,
    PREFIX,
    WELCOME,
    Ack,
    Bye,
    Frame,
    Hello,
    KeyMismatch,
    MessageReader,
    Refuse,
    VersionError,
    WireError,
    decode,
    encode,
    kind_of,
)

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "bundles" / "demo"
KEY = b"0123456789abcdef-shared"
LATENT = load_bundle(DEMO)[0].latent
SHAPE = (LATENT.channels, LATENT.size, LATENT.size)
FPS = 25
BUNDLE_SHA = bytes.fromhex(sha256_file(DEMO / BUNDLE_FILE))


def frame(seq: int = 7, session: int = 1) -> Frame:
    rng = np.random.default_rng(seq)
    return Frame(session, seq, 123456, (0.3 * rng.standard_normal(SHAPE)).astype(np.float16))


def hello(session: int = 1, stream: bytes = b"s" * 16, framing=None,
          bundle: bytes = BUNDLE_SHA) -> Hello:
    return Hello(stream, session, bundle, SHAPE, framing)


def body(data: bytes) -> bytes:
    return data[PREFIX.size:]


def a_paste(size: tuple[int, int] = (120, 160)) -> PasteBack:
    """A paste-back into a plain photo of ``size`` (H, W): the 128 px face shrunk into a
    box of it, blended through a soft mask."""
    h, w = size
    photo = np.zeros((h, w, 3), np.uint8)
    photo[..., 0] = np.arange(w, dtype=np.uint8)[None, :]
    photo[..., 2] = 200
    box = (40, 30, 104, 94)  # x0, y0, x1, y1
    inverse = np.array([[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]])  # crop pixels -> box pixels
    mask = np.zeros((64, 64), np.float32)
    mask[8:56, 8:56] = 1.0
    return PasteBack(photo, inverse, box, mask, 1 - mask)


def test_every_message_kind_round_trips_with_and_without_a_key():
    framing = framing_of(a_paste())
    for key in (None, KEY):
        for message in (frame(), hello(), hello(framing=framing), Ack(1, 2**40, 5, 9),
                        Bye(3)):
            got = decode(body(encode(message, key)), key)
            assert type(got) is type(message)
            if isinstance(message, Frame):
                assert (got.session, got.seq, got.capture_us) == (1, 7, 123456)
                assert np.array_equal(got.latent, message.latent)
            elif isinstance(message, Hello) and message.framing is not None:
                assert got.framing.photo_png == framing.photo_png
                assert got.framing.box == framing.box
                assert np.array_equal(got.framing.mask, framing.mask)
                assert np.allclose(got.framing.inverse, framing.inverse)
            else:
                assert got == message
    welcome = encode(Ack(1, 2, 0, -1), KEY, WELCOME)
    assert kind_of(body(welcome)) == WELCOME and decode(body(welcome), KEY).last_seq == -1
    refuse = decode(body(encode(Refuse(2, "key mismatch"), b"another-key-16-bytes")), KEY)
    assert refuse == Refuse(2, "key mismatch")  # a refusal is readable whatever the key


def test_authentication_is_enforced_both_ways():
    with pytest.raises(KeyMismatch, match="unauthenticated"):
        decode(body(encode(frame())), KEY)
    with pytest.raises(KeyMismatch, match="bad MAC"):
        decode(body(encode(frame(), b"another-key-of-16-bytes")), KEY)
    with pytest.raises(KeyMismatch, match="no key"):
        decode(body(encode(hello(), KEY)), None)
    tampered = bytearray(body(encode(frame(), KEY)))
    tampered[HEAD.size + 30] ^= 1
    with pytest.raises(KeyMismatch, match="bad MAC"):
        decode(bytes(tampered), KEY)


def test_another_version_is_its_own_error():
    v1 = bytearray(body(encode(frame())))
    v1[4] = 1
    with pytest.raises(VersionError, match="wire version 1; this side speaks version 2"):
        decode(bytes(v1))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_never_crash_the_parser(data):
    try:
        decode(data, None)
    except WireError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([0, 1]), st.integers(0, 60), st.integers(0, 255))
def test_any_modified_authenticated_message_is_refused(which, position, value):
    message = (frame(), hello(framing=framing_of(a_paste())))[which]
    data = bytearray(body(encode(message, KEY)))
    index = position if position < 30 else len(data) - 1 - position
    if data[index] == value:
        return
    data[index] = value
    with pytest.raises(WireError):
        decode(bytes(data), KEY)


def test_lengths_are_bounded_before_anything_is_read():
    with pytest.raises(WireError, match="outside"):
        decode(b"\0" * (MAX_HELLO + 1))
    reader = MessageReader()
    reader.feed(PREFIX.pack(MAX_MESSAGE + 1) + b"TSDL" + b"x" * 100)
    assert reader.next() is None and reader.pending < 100  # thrown away, not awaited


def test_the_reader_resynchronises_on_the_next_message_boundary():
    reader = MessageReader()
    stream = (encode(frame(1)) + b"\x00\x01garbage TSD" + PREFIX.pack(1 << 30) + b"TSDL"
              + encode(frame(2))[:-1])
    for i in range(0, len(stream), 5):  # as TCP may cut it
        reader.feed(stream[i:i + 5])
    reader.feed(encode(frame(2))[-1:] + encode(frame(3)))
    seqs = []
    while (data := reader.next()) is not None:
        try:
            seqs.append(decode(data).seq)
        except WireError:
            pass
    assert seqs == [1, 2, 3] and reader.skipped > 0 and reader.pending == 0


def test_the_timeline_fills_gaps_of_a_second_and_resets_beyond():
    timeline, a, b = Timeline(FPS), (b"a", 1), (b"b", 2)
    places = [timeline.place(a, seq) for seq in (0, 1, 3, 3, 2, 3 + FPS + 1)]
    assert places == [(0, False), (1, False), (3, False), (None, False), (None, False),
                      (4 + FPS, False)]
    assert timeline.place(a, 10**9) == (5 + FPS, True)  # a huge jump: no filling
    assert timeline.place(a, 5) == (6 + FPS, True)  # far back: a reset, not skipped forever
    assert timeline.place(b, 0) == (7 + FPS, False)  # a new session goes on after the last


def test_delivery_counts_frames_lost_on_the_wire():
    stats = SenderStats()
    delivery = Delivery(stats)
    delivery.ack(Ack(1, 100, 0, -1))
    for seq in range(10):
        delivery.sent(seq)
    delivery.ack(Ack(1, 100, 4, 5))  # of 0..5, two never arrived
    assert (stats.delivered, stats.lost, delivery.unsettled) == (4, 2, 4)
    delivery.ack(Ack(1, 200, 0, -1))  # a restarted receiver: 6..9 were never confirmed
    for seq in range(10, 13):
        delivery.sent(seq)
    delivery.ack(Ack(1, 200, 3, 12))
    assert (stats.sent, stats.delivered, stats.lost) == (13, 7, 6)
    delivery.sent(13)
    delivery.close()
    assert (stats.delivered, stats.lost) == (7, 7)


class Frames:
    """A sink that records which frames the receiver writes (and that they are frames)."""

    def __init__(self, shape=(128, 128, 3)):
        self.shape = shape
        self.indices: list[int] = []
        self.frames: list[np.ndarray] = []

    def write(self, index, image):
        assert image.shape == self.shape and image.dtype == np.uint8
        self.indices.append(index)
        self.frames.append(image)

    def close(self, audio=None):
        pass


@pytest.fixture(scope="module")
def decoder():
    """The demo bundle's real decoder graph."""
    from edge_runtime.backends import open_graph

    bundle, root = load_bundle(DEMO)
    return open_graph(bundle, root, "onnx-fp32", "decoder")


class Running:
    """A Receiver serving in a thread."""

    def __init__(self, decoder, key=None, port=0, sink=None, limits=None, compose=None):
        self.frames, self.stop = sink or Frames(), threading.Event()
        self.receiver = Receiver(decoder, SHAPE, self.frames, BUNDLE_SHA, FPS,
                                 f"127.0.0.1:{port}", key, compose, limits or Limits())
        self.address = self.receiver.address
        self.stats = self.receiver.stats
        self.thread = threading.Thread(target=self.receiver.serve, args=(self.stop,),
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


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


class Client:
    """A hand-driven v2 sender on a raw socket, for injecting what a real one never sends."""

    def __init__(self, address, message: Hello | None = None, key=None):
        self.key = key
        self.sock = socket.create_connection(tuple(address), timeout=5)
        self.reader = MessageReader()
        if message is not None:
            self.sock.sendall(encode(message, key))

    def answer(self):
        while (data := self.reader.next()) is None:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                return None
            self.reader.feed(chunk)
        return decode(data, self.key)

    def send(self, *messages) -> None:
        self.sock.sendall(b"".join(encode(m, self.key) for m in messages))

    def close(self):
        self.sock.close()


def test_a_session_is_welcomed_and_acknowledged(decoder):
    running = Running(decoder)
    client = Client(running.address, hello(session=5))
    welcome = client.answer()
    assert welcome == Ack(5, running.receiver.instance, 0, -1)
    client.send(*(frame(seq, 5) for seq in range(12)))
    assert client.answer() == Ack(5, running.receiver.instance, 10, 9)  # every 10 frames
    client.send(Bye(5))
    assert client.answer() == Ack(5, running.receiver.instance, 12, 11)
    wait_for(lambda: running.frames.indices == list(range(12)))
    client.close()
    running.close()


def test_bad_messages_inside_a_session_cost_only_themselves(decoder):
    running = Running(decoder)
    client = Client(running.address, hello())
    client.answer()
    odd = Frame(1, 1, 0, np.zeros((4, 8, 8), np.float16))
    client.sock.sendall(encode(frame(0)) + b"GET / HTTP/1.1\r\n\r\n" + encode(odd)
                        + encode(frame(1, session=9)) + encode(frame(2)) + encode(frame(1)))
    wait_for(lambda: running.frames.indices == [0, 2])
    client.close()
    running.close()
    assert running.stats.rejected == 2 and running.stats.skipped == 1
    assert running.stats.filled == 1  # seq 1 never came: frame 2 lands at its own time


def test_the_session_brings_the_photo_framing(decoder):
    """No --reference on the receiver: frames come out at the device's photo framing."""
    paste = a_paste()
    running = Running(decoder, sink=Frames((120, 160, 3)))
    client = Client(running.address, hello(framing=framing_of(paste)))
    assert isinstance(client.answer(), Ack)
    client.send(frame(0), frame(1))
    wait_for(lambda: len(running.frames.frames) == 2)
    client.close()
    running.close()
    got = running.frames.frames[1]
    outside = np.ones((120, 160), bool)
    outside[30:94, 40:104] = False
    assert np.array_equal(got[outside], paste.photo[outside])
    assert not np.array_equal(got[38:86, 48:96], paste.photo[38:86, 48:96])


def test_sender_reconnects_and_no_frame_after_the_reconnect_is_lost(decoder):
    running = Running(decoder)
    port = running.address[1]
    sender = LatentSender(f"latent://127.0.0.1:{port}", hello(session=2), backoff=(0.02, 0.1),
                          queue_frames=64)
    latent = frame().latent[None].astype(np.float32)
    for seq in range(10):
        sender.write(seq, latent)
    wait_for(lambda: len(running.frames.indices) == 10)
    running.close()  # the receiver goes away mid-stream
    for seq in range(10, 20):  # rendered while nobody listens
        sender.write(seq, latent)
        time.sleep(0.01)
    again = Running(decoder, port=port)
    wait_for(lambda: sender.stats.reconnects >= 1 and again.frames.indices, 10)
    for seq in range(20, 40):  # rendered after the reconnect
        sender.write(seq, latent)
    sender.close()
    again.close()
    assert running.frames.indices == list(range(10))
    shown = again.stats.frames
    assert again.frames.indices == list(range(shown))  # in order, from the session's start
    assert shown >= 20 and again.stats.skipped == 0
    stats = sender.stats
    assert stats.sent + stats.unsent == 40 and stats.delivered + stats.lost == stats.sent
    assert stats.delivered == 10 + shown


def test_edge_run_hybrid_to_edge_receive_end_to_end(tmp_path):
    """The two CLIs over 127.0.0.1 with a key: every rendered frame arrives, at the photo's
    framing that the session carries (the receiver has no --reference), and edge-run's
    summary counts them delivered."""
    import av

    from edge_runtime.cli import main as edge_run
    from edge_runtime.hybrid.receiver import main as edge_receive
    from tests.test_runtime import write_wav
    from training.data.media import read_wav

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    key = tmp_path / "key"
    key.write_bytes(KEY)
    out, stats = tmp_path / "received.mp4", tmp_path / "stats.json"
    short = tmp_path / "short.wav"
    write_wav(short, read_wav(REPO / "examples" / "speech.wav")[0][:int(0.8 * 16000)])
    codes = {}
    receiver = threading.Thread(target=lambda: codes.update(r=edge_receive([
        "--bundle", str(DEMO), "--listen", f"127.0.0.1:{port}", "--sink", str(out),
        "--key-file", str(key), "--output-size", "200", "--frames", "20"])))
    receiver.start()
    wait_for(lambda: _listening(port), 30)
    codes["s"] = edge_run(["--bundle", str(DEMO), "--mode", "hybrid", "--sink",
                           f"latent://127.0.0.1:{port}", "--key-file", str(key), "--audio",
                           str(short), "--reference", str(REPO / "examples" / "face.png"),
                           "--output-size", "200", "--offline", "--stats", str(stats)])
    receiver.join(30)
    assert codes == {"s": 0, "r": 0}
    summary = json.loads(stats.read_text())
    assert summary["frames"] == 20
    assert summary["wire"] | {"reconnects": 0} == {"sent": 20, "delivered": 20, "lost": 0,
                                                   "unsent": 0, "reconnects": 0,
                                                   "refusals": 0}
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 20 and max(frames[0].shape[:2]) == 200  # the photo's, not 128


def test_sessions_that_do_not_fit_are_refused_with_their_reason(decoder):
    from edge_runtime.hybrid.wire import REFUSE_BUNDLE, REFUSE_FRAMING, REFUSE_SHAPE

    running = Running(decoder)
    wrong_shape = Hello(b"s" * 16, 1, BUNDLE_SHA, (4, 8, 8))
    cases = [(hello(bundle=b"\0" * 32), REFUSE_BUNDLE, "give both the same bundle"),
             (wrong_shape, REFUSE_SHAPE, "latent shape (4, 8, 8)")]
    for message, reason, text in cases:
        client = Client(running.address, message)
        answer = client.answer()
        assert answer.reason == reason and text in answer.text
        client.close()
    client = Client(running.address, hello())  # crops of 128 px are being written ...
    client.answer()
    client.send(frame(0), Bye(1))
    client.answer()
    client.close()
    other = Client(running.address, hello(2, b"t" * 16, framing_of(a_paste())))
    answer = other.answer()  # ... so a session that brings a photo framing cannot join
    assert answer.reason == REFUSE_FRAMING and "restart edge-receive" in answer.text
    other.close()
    running.close()
    assert running.stats.refused == 3 and running.stats.frames == 1
