"""The E2 (hybrid) wire format: one latent per message over TCP. Documented in
docs/wire-format.md; this module is its only implementation (sender and receiver share it).

Message = length prefix (u32, big-endian: bytes that follow) + header + payload [+ MAC]:

    magic      4s   b"TSDL"
    version    B    1
    flags      B    bit 0: a 32-byte HMAC-SHA256 (shared key) follows the payload
    seq        I    frame index in the stream (the receiver orders and de-duplicates by it)
    capture_us Q    sender's monotonic capture time of the frame's audio, microseconds
    channels   B    latent shape C, H, W (bounded: C <= 16, H, W <= 256)
    height     H
    width      H
    payload         C * H * W float16, little-endian, row-major
    mac             HMAC-SHA256(key, header + payload) when flags bit 0

Everything is checked before anything is allocated: an oversized length, a wrong magic or
version, a shape out of bounds, a payload of the wrong size or a bad MAC raises WireError.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

import numpy as np

MAGIC = b"TSDL"
VERSION = 1
HEADER = struct.Struct(">4sBBIQBHH")
PREFIX = struct.Struct(">I")
MAC_BYTES = 32
FLAG_MAC = 1
MAX_CHANNELS, MAX_SIDE = 16, 256
MAX_MESSAGE = HEADER.size + MAX_CHANNELS * MAX_SIDE * MAX_SIDE * 2 + MAC_BYTES


class WireError(ValueError):
    """A message that breaks the format; the receiver drops it (and the connection)."""


@dataclass(frozen=True)
class LatentMessage:
    seq: int
    capture_us: int
    latent: np.ndarray
    """[C, H, W] float16."""


def encode(message: LatentMessage, key: bytes | None = None) -> bytes:
    """-> the full message including its length prefix."""
    latent = np.ascontiguousarray(message.latent, dtype="<f2")
    c, h, w = latent.shape
    header = HEADER.pack(MAGIC, VERSION, FLAG_MAC if key else 0, message.seq,
                         message.capture_us, c, h, w)
    body = header + latent.tobytes()
    if key:
        body += hmac.new(key, body, hashlib.sha256).digest()
    return PREFIX.pack(len(body)) + body


def check_length(length: int) -> None:
    if not HEADER.size <= length <= MAX_MESSAGE:
        raise WireError(f"message length {length} outside {HEADER.size}..{MAX_MESSAGE}")


def decode(body: bytes, key: bytes | None = None) -> LatentMessage:
    """Parse a message body (the bytes after the length prefix)."""
    check_length(len(body))
    magic, version, flags, seq, capture_us, c, h, w = HEADER.unpack_from(body)
    if magic != MAGIC:
        raise WireError(f"bad magic {magic!r}")
    if version != VERSION:
        raise WireError(f"unsupported wire version {version} (this side speaks {VERSION})")
    if not (1 <= c <= MAX_CHANNELS and 1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise WireError(f"latent shape {c}x{h}x{w} out of bounds")
    payload = c * h * w * 2
    has_mac = bool(flags & FLAG_MAC)
    expected = HEADER.size + payload + (MAC_BYTES if has_mac else 0)
    if len(body) != expected:
        raise WireError(f"message of {len(body)} bytes, its header implies {expected}")
    if key is not None:
        if not has_mac:
            raise WireError("unauthenticated message (the receiver requires a key)")
        signed, mac = body[:-MAC_BYTES], body[-MAC_BYTES:]
        if not hmac.compare_digest(mac, hmac.new(key, signed, hashlib.sha256).digest()):
            raise WireError("bad MAC (wrong key or a modified message)")
    latent = np.frombuffer(body, "<f2", count=c * h * w, offset=HEADER.size)
    return LatentMessage(seq, capture_us, latent.reshape(c, h, w))


def read_key(path: str | None) -> bytes | None:
    """The shared key file's bytes (surrounding whitespace stripped), or None."""
    if path is None:
        return None
    with open(path, "rb") as f:
        key = f.read().strip()
    if len(key) < 16:
        raise ValueError(f"{path}: the shared key must be at least 16 bytes")
    return key
