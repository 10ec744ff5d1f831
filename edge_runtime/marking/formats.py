"""Provenance in each file format, written and read without extra libraries:

- mp4: container tags (``movflags=use_metadata_tags`` keeps every key; ffprobe shows them);
- PNG: one ``tEXt`` chunk per field and the XMP packet in an ``iTXt`` chunk;
- JPEG (PNG-less live page, snapshots): a ``COM`` segment with the fields and an APP1 XMP
  segment.

The XMP packet carries IPTC's digital source type ``trainedAlgorithmicMedia``, the standard
way to say "made by a generative model" that photo tools and platforms read.
"""

from __future__ import annotations

import re
import struct
import zlib
from xml.sax.saxutils import escape

from edge_runtime.marking.provenance import FIELDS

SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
MP4_OPTIONS = {"movflags": "use_metadata_tags"}
"""Muxer options that keep every metadata key in an mp4."""
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
XMP_PNG_KEY = b"XML:com.adobe.xmp"
XMP_JPEG_ID = b"http://ns.adobe.com/xap/1.0/\x00"


def xmp(fields: dict[str, str]) -> str:
    """The XMP packet: IPTC digital source type, creator tool, date, and the fields."""
    own = "".join(f"<tsd:{key}>{escape(fields[key])}</tsd:{key}>" for key in FIELDS)
    return ('<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>'
            '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
            'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            '<rdf:Description rdf:about="" '
            'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
            'xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
            'xmlns:tsd="https://temposync-edge.invalid/ns/1.0/">'
            f"<Iptc4xmpExt:DigitalSourceType>{SOURCE_TYPE}</Iptc4xmpExt:DigitalSourceType>"
            f"<xmp:CreatorTool>{escape(fields['generator'])}</xmp:CreatorTool>"
            f"<xmp:CreateDate>{escape(fields['creation_time'])}</xmp:CreateDate>"
            f"{own}</rdf:Description></rdf:RDF></x:xmpmeta>"
            '<?xpacket end="r"?>')


def fields_from_xmp(text: str) -> dict[str, str]:
    found = {key: m.group(1) for key in FIELDS
             if (m := re.search(f"<tsd:{key}>(.*?)</tsd:{key}>", text, re.S))}
    if SOURCE_TYPE in text:
        found.setdefault("ai_generated", "true")
    return found


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_chunks(fields: dict[str, str]) -> bytes:
    """tEXt per field (Latin-1; the fields are ASCII) and the XMP iTXt chunk."""
    text = b"".join(_png_chunk(b"tEXt", key.encode() + b"\x00" + value.encode("latin-1"))
                    for key, value in fields.items())
    return text + _png_chunk(b"iTXt", XMP_PNG_KEY + b"\x00\x00\x00\x00\x00"
                             + xmp(fields).encode())


def insert_png(png: bytes, chunks: bytes) -> bytes:
    """``chunks`` placed right after the IHDR chunk of an encoded PNG."""
    end = len(PNG_SIGNATURE) + 8 + struct.unpack(">I", png[8:12])[0] + 4
    return png[:end] + chunks + png[end:]


def read_png(data: bytes) -> dict[str, str]:
    """The fields of a PNG's tEXt and XMP chunks ({} when there are none)."""
    found: dict[str, str] = {}
    position = len(PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        if kind == b"tEXt" and b"\x00" in body:
            key, _, value = body.partition(b"\x00")
            if key.decode("latin-1") in FIELDS:
                found[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"iTXt" and body.startswith(XMP_PNG_KEY + b"\x00"):
            found = fields_from_xmp(body.decode("utf-8", "replace")) | found
        elif kind == b"IEND":
            break
        position += 12 + length
    return found


def _jpeg_segment(marker: int, data: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(data) + 2) + data


def jpeg_segments(fields: dict[str, str]) -> bytes:
    """A COM segment ("key: value" lines) and an APP1 XMP segment."""
    comment = "\n".join(f"{key}: {value}" for key, value in fields.items()).encode("latin-1")
    return _jpeg_segment(0xFE, comment) + _jpeg_segment(0xE1, XMP_JPEG_ID
                                                         + xmp(fields).encode())


def insert_jpeg(jpeg: bytes, segments: bytes) -> bytes:
    """``segments`` placed after SOI and the JFIF APP0 segment of an encoded JPEG."""
    position = 2
    if jpeg[2:4] == b"\xff\xe0":
        position += 2 + struct.unpack(">H", jpeg[4:6])[0]
    return jpeg[:position] + segments + jpeg[position:]


def read_jpeg(data: bytes) -> dict[str, str]:
    """The fields of a JPEG's COM and XMP segments ({} when there are none)."""
    found: dict[str, str] = {}
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no metadata past here
            break
        length = struct.unpack(">H", data[position + 2:position + 4])[0]
        body = data[position + 4:position + 2 + length]
        if marker == 0xFE:
            for line in body.decode("latin-1").splitlines():
                key, _, value = line.partition(": ")
                if key in FIELDS:
                    found[key] = value
        elif marker == 0xE1 and body.startswith(XMP_JPEG_ID):
            found = fields_from_xmp(body.decode("utf-8", "replace")) | found
        position += 2 + length
    return found
