"""The E2 (hybrid) wire format, version 2: sessions of latent frames over TCP. Documented in
docs/wire-format.md; this module is its only implementation (sender and receiver share it).

Every message = length prefix (u32, big-endian: bytes that follow) + head + fields [+ MAC]:

    magic      4s   b"TSDL"
    version    B    2
    kind       B    HELLO, WELCOME, REFUSE, FRAME, ACK or BYE
    flags      B    bit 0: a 32-byte HMAC-SHA256 (shared key) of everything before it follows

The sender opens a session with HELLO (stream, session, bundle checksum, latent shape and,
optionally, the paste-back framing), the receiver answers WELCOME or REFUSE, then FRAMEs
flow one way and ACKs (frames received so far in the session) the other; BYE asks for a
last ACK. Everything is checked before anything is allocated: an oversized length, a wrong
magic, version or kind, a shape out of bounds, fields of the wrong size or a bad MAC raise
WireError (VersionError for another version). ``MessageReader`` cuts a byte stream into
message bodies and resynchronises on the next message boundary after garbage.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import zlib
from dataclasses import dataclass

import numpy as np

MAGIC = b"TSDL"
VERSION = 2
PREFIX = struct.Struct(">I")
HEAD = struct.Struct(">4sBBB")
MAC_BYTES = 32
FLAG_MAC = 1
HELLO, WELCOME, REFUSE, FRAME, ACK, BYE = range(1, 7)
KIND_NAMES = {HELLO: "HELLO", WELCOME: "WELCOME", REFUSE: "REFUSE", FRAME: "FRAME",
              ACK: "ACK", BYE: "BYE"}
MAX_CHANNELS, MAX_SIDE = 16, 256
"""Bounds of a latent's shape."""
MAX_PHOTO_SIDE = 2048
"""Bound of the paste-back photo's sides (the device caps them at --output-size)."""
MAX_TEXT = 512
"""Bound of a REFUSE message's explanation (UTF-8 bytes)."""
FRAME_FIELDS = struct.Struct(">IIQBHH")  # session, seq, capture_us, channels, height, width
HELLO_FIELDS = struct.Struct(">16sI32sBHHI")  # stream, session, bundle sha256, C, H, W,
#                                              framing bytes that follow (0: none)
FRAMING_FIELDS = struct.Struct(">6d4IIII")  # inverse [2, 3], box x0 y0 x1 y1, photo PNG
#                                            bytes, zlib mask bytes, lut bytes (0 or 768)
ACK_FIELDS = struct.Struct(">IQIq")  # session, receiver instance, received, last seq (-1)
REFUSE_FIELDS = struct.Struct(">B")  # reason
BYE_FIELDS = struct.Struct(">I")  # session
MAX_MESSAGE = (HEAD.size + FRAME_FIELDS.size + MAX_CHANNELS * MAX_SIDE * MAX_SIDE * 2
               + MAC_BYTES)
"""Bound of every message but HELLO."""
MAX_HELLO = 8 << 20
"""Bound of HELLO, which may carry the paste-back photo (PNG) and its mask."""

REFUSE_VERSION, REFUSE_KEY, REFUSE_BUNDLE, REFUSE_SHAPE, REFUSE_BUSY, REFUSE_FRAMING = \
    range(1, 7)
REFUSALS = {REFUSE_VERSION: "wire version", REFUSE_KEY: "key", REFUSE_BUNDLE: "bundle",
            REFUSE_SHAPE: "latent shape", REFUSE_BUSY: "busy", REFUSE_FRAMING: "framing"}
"""Why a receiver refuses a session; BUSY is the only one that passes by itself."""


class WireError(ValueError):
    """A message that breaks the format; the receiver drops it."""


class VersionError(WireError):
    """A message of another wire version (its sender must be updated)."""

    def __init__(self, version: int):
        super().__init__(f"wire version {version}; this side speaks version {VERSION}")
        self.version = version


class KeyMismatch(WireError):
    """A missing, unexpected or wrong MAC: the two sides do not share the key."""


@dataclass(frozen=True)
class Framing:
    """What the receiver needs to paste decoded faces into the device's photo
    (edge_runtime.face.paste.PasteBack's fields), so it needs no copy of the photo."""

    photo_png: bytes
    """The photo at output size, PNG."""
    inverse: np.ndarray
    """[2, 3] float64: aligned-crop pixels -> pixels of the region ``box``."""
    box: tuple[int, int, int, int]
    """x0, y0, x1, y1 of the pasted region (output pixels)."""
    mask: np.ndarray
    """[y1 - y0, x1 - x0] float32 in [0, 1]: the blend weight of the rendered face."""
    lut: np.ndarray | None
    """[256, 1, 3] uint8 colour transfer fixed on the device, or None (fixed by the receiver
    on its first frame)."""


@dataclass(frozen=True)
class Hello:
    stream: bytes
    """16 bytes, fixed for one sender process: its reloads continue the same stream."""
    session: int
    """Chosen by the sender per session; sequence numbers count from 0 in each session."""
    bundle_sha256: bytes
    """sha256 of the sender's bundle.yaml (which lists every graph's sha256)."""
    shape: tuple[int, int, int]
    """The latent's C, H, W."""
    framing: Framing | None = None


@dataclass(frozen=True)
class Frame:
    session: int
    seq: int
    """Frame index in the session (the render loop's frame number)."""
    capture_us: int
    """Sender's monotonic time of the frame, microseconds since the sender started."""
    latent: np.ndarray
    """[C, H, W] float16."""


@dataclass(frozen=True)
class Ack:
    """WELCOME (kind WELCOME) and ACK: what the receiver got of a session so far."""

    session: int
    instance: int
    """Chosen by the receiver per process: a restarted receiver has a new one."""
    received: int
    """Frames of this session received intact by this receiver instance."""
    last_seq: int
    """The newest of them, -1 for none."""


@dataclass(frozen=True)
class Refuse:
    reason: int
    """One of REFUSALS."""
    text: str


@dataclass(frozen=True)
class Bye:
    session: int


Message = Hello | Ack | Refuse | Frame | Bye


def _sign(body: bytes, key: bytes | None) -> bytes:
    return body + hmac.new(key, body, hashlib.sha256).digest() if key else body


def _framing_bytes(framing: Framing) -> bytes:
    mask = zlib.compress(np.ascontiguousarray(framing.mask, "<f4").tobytes(), 1)
    lut = b"" if framing.lut is None else np.ascontiguousarray(framing.lut, np.uint8).tobytes()
    fields = FRAMING_FIELDS.pack(*np.asarray(framing.inverse, np.float64).ravel(),
                                 *framing.box, len(framing.photo_png), len(mask), len(lut))
    return fields + framing.photo_png + mask + lut


def _fields(message: Message) -> tuple[int, bytes]:
    """-> (kind, the bytes after the head)."""
    if isinstance(message, Frame):
        latent = np.ascontiguousarray(message.latent, dtype="<f2")
        return FRAME, FRAME_FIELDS.pack(message.session, message.seq, message.capture_us,
                                        *latent.shape) + latent.tobytes()
    if isinstance(message, Hello):
        framing = b"" if message.framing is None else _framing_bytes(message.framing)
        return HELLO, HELLO_FIELDS.pack(message.stream, message.session, message.bundle_sha256,
                                        *message.shape, len(framing)) + framing
    if isinstance(message, Refuse):
        return REFUSE, REFUSE_FIELDS.pack(message.reason) + message.text.encode()[:MAX_TEXT]
    if isinstance(message, Bye):
        return BYE, BYE_FIELDS.pack(message.session)
    return ACK, ACK_FIELDS.pack(message.session, message.instance, message.received,
                                message.last_seq)


def encode(message: Message, key: bytes | None = None, kind: int | None = None) -> bytes:
    """-> the whole message with its length prefix. ``kind`` WELCOME sends an Ack as the
    session's acceptance."""
    own_kind, fields = _fields(message)
    body = _sign(HEAD.pack(MAGIC, VERSION, kind or own_kind, FLAG_MAC if key else 0)
                 + fields, key)
    return PREFIX.pack(len(body)) + body


def limit_of(hello_allowed: bool) -> int:
    return MAX_HELLO if hello_allowed else MAX_MESSAGE


def check_length(length: int, limit: int = MAX_MESSAGE) -> None:
    if not HEAD.size <= length <= limit:
        raise WireError(f"message length {length} outside {HEAD.size}..{limit}")


def kind_of(body: bytes) -> int:
    """The kind of a message body, after its magic and version are checked."""
    check_length(len(body), MAX_HELLO)
    magic, version, kind, _ = HEAD.unpack_from(body)
    if magic != MAGIC:
        raise WireError(f"bad magic {magic!r}")
    if version != VERSION:
        raise VersionError(version)
    if kind not in KIND_NAMES:
        raise WireError(f"unknown message kind {kind}")
    return kind


def _verify(body: bytes, key: bytes | None) -> bytes:
    """-> the body without its MAC; KeyMismatch unless signed exactly when ``key`` is set."""
    signed = bool(body[HEAD.size - 1] & FLAG_MAC)
    if key is None:
        if signed:
            raise KeyMismatch("the message is signed but this side has no key")
        return body
    if not signed:
        raise KeyMismatch("unauthenticated message (this side requires a key)")
    if len(body) < HEAD.size + MAC_BYTES:
        raise WireError("message too short for its MAC")
    content, mac = body[:-MAC_BYTES], body[-MAC_BYTES:]
    if not hmac.compare_digest(mac, hmac.new(key, content, hashlib.sha256).digest()):
        raise KeyMismatch("bad MAC (the two sides' keys differ, or the message was modified)")
    return content


def _check_shape(c: int, h: int, w: int) -> None:
    if not (1 <= c <= MAX_CHANNELS and 1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise WireError(f"latent shape {c}x{h}x{w} out of bounds")


def _decode_frame(fields: bytes) -> Frame:
    session, seq, capture_us, c, h, w = FRAME_FIELDS.unpack_from(fields)
    _check_shape(c, h, w)
    expected = FRAME_FIELDS.size + c * h * w * 2
    if len(fields) != expected:
        raise WireError(f"frame of {len(fields)} bytes, its header implies {expected}")
    latent = np.frombuffer(fields, "<f2", count=c * h * w, offset=FRAME_FIELDS.size)
    return Frame(session, seq, capture_us, latent.reshape(c, h, w))


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header, read before decoding anything."""
    if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise WireError("the framing's photo is not a PNG")
    return struct.unpack(">II", data[16:24])


def _decode_framing(data: bytes) -> Framing:
    if len(data) < FRAMING_FIELDS.size:
        raise WireError("framing too short")
    *inverse, x0, y0, x1, y1, n_photo, n_mask, n_lut = FRAMING_FIELDS.unpack_from(data)
    if len(data) != FRAMING_FIELDS.size + n_photo + n_mask + n_lut or n_lut not in (0, 768):
        raise WireError("framing sizes do not add up")
    photo = data[FRAMING_FIELDS.size:FRAMING_FIELDS.size + n_photo]
    width, height = png_size(photo)
    if not (0 < width <= MAX_PHOTO_SIDE and 0 < height <= MAX_PHOTO_SIDE):
        raise WireError(f"framing photo {width}x{height} out of bounds")
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise WireError(f"framing box {x0},{y0},{x1},{y1} outside the {width}x{height} photo")
    mask_at = FRAMING_FIELDS.size + n_photo
    expected = (x1 - x0) * (y1 - y0) * 4
    inflate = zlib.decompressobj()
    try:
        mask = inflate.decompress(data[mask_at:mask_at + n_mask], expected)
    except zlib.error as exc:
        raise WireError(f"framing mask: {exc}") from None
    if len(mask) != expected or inflate.unconsumed_tail:  # bounded: never inflates more
        raise WireError("framing mask does not match its box")
    lut = (np.frombuffer(data, np.uint8, 768, mask_at + n_mask).reshape(256, 1, 3)
           if n_lut else None)
    return Framing(photo, np.asarray(inverse, np.float64).reshape(2, 3), (x0, y0, x1, y1),
                   np.frombuffer(mask, "<f4").reshape(y1 - y0, x1 - x0), lut)


def _decode_hello(fields: bytes) -> Hello:
    stream, session, bundle, c, h, w, n_framing = HELLO_FIELDS.unpack_from(fields)
    _check_shape(c, h, w)
    if len(fields) != HELLO_FIELDS.size + n_framing:
        raise WireError("HELLO sizes do not add up")
    framing = _decode_framing(fields[HELLO_FIELDS.size:]) if n_framing else None
    return Hello(stream, session, bundle, (c, h, w), framing)


def _decode_fixed(layout: struct.Struct, fields: bytes) -> tuple:
    if len(fields) != layout.size:
        raise WireError(f"{len(fields)} bytes of fields, expected {layout.size}")
    return layout.unpack(fields)


def decode(body: bytes, key: bytes | None = None) -> Message:
    """Parse a message body (the bytes after the length prefix). A REFUSE is accepted
    unsigned or signed with another key: it tells why the other side hangs up."""
    kind = kind_of(body)
    if kind == REFUSE:
        fields = body[HEAD.size:]
        if body[HEAD.size - 1] & FLAG_MAC:
            fields = fields[:-MAC_BYTES]
        if not fields:
            raise WireError("REFUSE without a reason")
        return Refuse(fields[0], fields[1:MAX_TEXT + 1].decode(errors="replace"))
    fields = _verify(body, key)[HEAD.size:]
    try:
        if kind == FRAME:
            return _decode_frame(fields)
        if kind == HELLO:
            return _decode_hello(fields)
        if kind == BYE:
            return Bye(*_decode_fixed(BYE_FIELDS, fields))
        return Ack(*_decode_fixed(ACK_FIELDS, fields))
    except struct.error as exc:
        raise WireError(f"{KIND_NAMES[kind]}: {exc}") from None


class MessageReader:
    """Cuts a TCP byte stream into message bodies. After bytes that cannot start a message
    (a wrong magic or an impossible length) it skips to the next place where one can start
    and counts what it skipped, so one corrupt stretch costs the messages in it, not the
    connection."""

    def __init__(self, limit: int = MAX_MESSAGE):
        self.limit = limit
        """Bound of the next message's length (HELLO's is larger)."""
        self.skipped = 0
        """Bytes thrown away while resynchronising."""
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    @property
    def pending(self) -> int:
        """Bytes of an incomplete message held."""
        return len(self._buffer)

    def next(self) -> bytes | None:
        """The next complete message body, or None until more bytes arrive."""
        buffer = self._buffer
        while len(buffer) >= PREFIX.size + len(MAGIC):
            (length,) = PREFIX.unpack_from(buffer)
            if buffer[PREFIX.size:PREFIX.size + len(MAGIC)] == MAGIC and \
                    HEAD.size <= length <= self.limit:
                if len(buffer) < PREFIX.size + length:
                    return None
                body = bytes(buffer[PREFIX.size:PREFIX.size + length])
                del buffer[:PREFIX.size + length]
                return body
            self._resync()
        return None

    def _resync(self) -> None:
        """Drop bytes up to the next magic that has room for a prefix before it."""
        found = self._buffer.find(MAGIC, PREFIX.size + 1)
        drop = found - PREFIX.size if found >= 0 else len(self._buffer) - (
            PREFIX.size + len(MAGIC) - 1)
        drop = max(drop, 1)
        self.skipped += drop
        del self._buffer[:drop]


def read_key(path: str | None) -> bytes | None:
    """The shared key file's bytes (surrounding whitespace stripped), or None."""
    if path is None:
        return None
    with open(path, "rb") as f:
        key = f.read().strip()
    if len(key) < 16:
        raise ValueError(f"{path}: the shared key must be at least 16 bytes")
    return key
