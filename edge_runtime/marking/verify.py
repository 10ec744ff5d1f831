"""``edge-verify FILE`` (also ``tsd verify FILE``): is this image or video marked as
TempoSync Edge output? Reads the provenance metadata (mp4/mkv tags, PNG chunks, JPEG
COM/XMP) and, with the c2pa extra, the C2PA manifest, and looks for the invisible watermark
in every frame (or the first --max-frames), prints what it found with its confidence, and
exits 0 when the file is marked (metadata, a C2PA manifest that validates, or watermark in
at least half of the frames checked), 1 when it is not, 2 on bad input.
Torch-free: it runs on the device.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.bundle import BUNDLE_FILE, sha256_file
from edge_runtime.errors import report
from edge_runtime.marking import credentials
from edge_runtime.marking.formats import PNG_SIGNATURE, read_jpeg, read_png
from edge_runtime.marking.watermark import (
    MATCH,
    PAYLOAD_BITS,
    SCALES,
    THRESHOLD,
    TILE,
    Detection,
    detect,
    payload_of,
)

log = logging.getLogger("edge-verify")

EXIT_NOT_MARKED = 1
MAJORITY = 0.5
"""A file is watermarked when at least this share of the frames checked carries the mark."""
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


class VerifyError(ValueError):
    """A file that is neither a readable image nor a readable video."""


def false_alarm(score: float) -> float:
    """Chance that an unmarked frame scores ``score`` or more: a Gaussian tail over the
    independent positions and scales searched (TILE x TILE per scale)."""
    positions = TILE * TILE * len(SCALES)
    return min(1.0, positions * 0.5 * math.erfc(score / math.sqrt(2)))


@dataclass
class Findings:
    metadata: dict[str, str] = field(default_factory=dict)
    detections: list[Detection] = field(default_factory=list)
    c2pa: credentials.Credentials | None = None
    """The C2PA manifest (None: none, or c2pa not installed)."""
    checked: str = ""
    """sha256 of the bundle whose payload each frame was scored for (--bundle, else the
    metadata's; "" when neither)."""

    @property
    def marked_frames(self) -> list[Detection]:
        return [d for d in self.detections if d.marked]

    @property
    def watermarked(self) -> bool:
        return bool(self.detections) and (len(self.marked_frames)
                                          >= MAJORITY * len(self.detections))

    @property
    def labelled(self) -> bool:
        return (self.metadata.get("ai_generated") == "true"
                or (self.c2pa is not None and self.c2pa.generated))

    def payload(self) -> int | None:
        """The payload most marked frames agree on."""
        votes = Counter(d.payload for d in self.marked_frames)
        return votes.most_common(1)[0][0] if votes else None

    def expected(self, metadata: dict[str, str]) -> int | None:
        """Fixes ``checked`` from the metadata when --bundle did not -> its payload."""
        self.checked = self.checked or metadata.get("bundle_sha256", "")
        return payload_of(self.checked) if self.checked else None


def _image(path: Path, findings: Findings) -> Findings:
    data = path.read_bytes()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # our line alone
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise VerifyError(f"{path}: not an image this can read")
    findings.metadata = read_png(data) if data.startswith(PNG_SIGNATURE) else (
        read_jpeg(data) if data.startswith(b"\xff\xd8") else {})
    findings.detections.append(detect(image, findings.expected(findings.metadata)))
    return findings


def _video(path: Path, max_frames: int | None, findings: Findings) -> Findings:
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise VerifyError(f"{path}: not an image or a video this can read ({exc})") from None
    with container:
        if not container.streams.video:
            raise VerifyError(f"{path}: has no video stream")
        findings.metadata = dict(container.metadata)
        expected = findings.expected(findings.metadata)
        try:
            for frame in container.decode(video=0):
                findings.detections.append(detect(frame.to_ndarray(format="gray"), expected))
                if max_frames and len(findings.detections) >= max_frames:
                    break
        except av.error.FFmpegError as exc:
            if not findings.detections:
                raise VerifyError(f"{path}: cannot decode its video ({exc})") from None
            log.warning("%s: decoding stopped after %d frames: %s", path,
                        len(findings.detections), exc)
    if not findings.detections:
        raise VerifyError(f"{path}: the video has no frames")
    return findings


def inspect(path: str | Path, max_frames: int | None = None,
            bundle_sha256: str = "") -> Findings:
    """The metadata and the per-frame watermark detections of an image or video file; each
    frame is also scored for the payload of ``bundle_sha256`` (else the metadata's)."""
    path = Path(path)
    findings = Findings(checked=bundle_sha256)
    if not path.is_file():
        raise VerifyError(f"{path}: no such file")
    with open(path, "rb") as f:
        head = f.read(len(PNG_SIGNATURE))
    findings.c2pa = credentials.read(path)
    if path.suffix.lower() in IMAGE_SUFFIXES or head.startswith((PNG_SIGNATURE, b"\xff\xd8")):
        return _image(path, findings)
    return _video(path, max_frames, findings)


def describe(path: str | Path, findings: Findings) -> list[str]:
    """The lines edge-verify prints."""
    lines = []
    meta = findings.metadata
    if meta.get("ai_generated") == "true":
        lines.append(f"metadata: AI-generated; generator {meta.get('generator', '?')}, bundle "
                     f"{meta.get('bundle', '?')} (sha256 {meta.get('bundle_sha256') or '?'}), "
                     f"created {meta.get('creation_time', '?')}")
    else:
        lines.append("metadata: no AI-generated statement")
    if findings.c2pa is not None:
        lines += findings.c2pa.lines()
    else:
        lines.append("c2pa: no manifest" if credentials.available() else
                     "c2pa: not checked (c2pa-python is not installed)")
    total, marked = len(findings.detections), findings.marked_frames
    scores = np.array([d.score for d in findings.detections])
    if marked:
        best = float(np.median([d.score for d in marked]))
        payload = findings.payload()
        agree = sum(d.payload == payload for d in marked)
        lines.append(f"watermark: found in {len(marked)} of {total} frame(s) "
                     f"({100 * len(marked) / total:.1f}%), median score {best:.1f} (threshold "
                     f"{THRESHOLD:g}; chance of an unmarked frame scoring that: "
                     f"{false_alarm(best):.1g}), scale {marked[0].scale:.3g}")
        lines.append(f"payload: bundle tag {payload:0{(PAYLOAD_BITS + 3) // 4}x} read in "
                     f"{agree} of {len(marked)} marked frames")
        if findings.checked:
            matching = [d for d in marked if d.matches]
            verdict = "matches" if len(matching) >= MAJORITY * len(marked) else (
                "does NOT match")
            scores_at = np.median([d.expected_score for d in marked])
            lines.append(f"bundle sha256 {findings.checked[:16]}...: {verdict} (its payload in "
                         f"{len(matching)} of {len(marked)} marked frames, median score "
                         f"{scores_at:.1f}, threshold {MATCH:g})")
    else:
        lines.append(f"watermark: not found in {total} frame(s) (best score "
                     f"{scores.max():.1f}, threshold {THRESHOLD:g})")
    verdict = findings.watermarked or findings.labelled
    lines.append(f"{path}: {'MARKED' if verdict else 'NOT MARKED'} as synthetic media")
    return lines


DESCRIPTION = ("Check whether an image or video is marked as TempoSync Edge output: its "
               "provenance metadata and the invisible watermark in its frames (any crop of "
               f"at least about {TILE * 5 // 2}x{TILE * 5 // 2} pixels of the original, at "
               f"sizes {', '.join(f'{s:.3g}' for s in SCALES)} of it). Exit 0: marked; 1: not "
               "marked; 2: unreadable input.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """edge-verify's options (tsd verify has the same; -v is tsd's own)."""
    parser.add_argument("file", help="an image (PNG, JPEG, ...) or a video (mp4, mkv, ...)")
    parser.add_argument("--max-frames", type=int, metavar="N",
                        help="video: check only the first N frames (default: all)")
    parser.add_argument("--bundle", metavar="DIR",
                        help="check that the watermark carries this bundle's payload "
                             "(default: the bundle the metadata names, if any; use it when "
                             "re-encoding stripped the metadata)")


def run(args: argparse.Namespace, prog: str) -> int:
    """Inspect ``args.file``, print the findings -> the exit code."""
    try:
        if args.max_frames is not None and args.max_frames < 1:
            raise VerifyError("--max-frames must be >= 1")
        bundle = sha256_file(Path(args.bundle) / BUNDLE_FILE) if args.bundle else ""
        findings = inspect(args.file, args.max_frames, bundle)
    except (VerifyError, OSError) as exc:
        return report(prog, exc)
    if args.verbose:
        for index, d in enumerate(findings.detections):
            print(f"frame {index}: score {d.score:.2f} at scale {d.scale:.3g}"
                  + (f", payload {d.payload}" if d.marked else ""))
    for line in describe(args.file, findings):
        print(line)
    return 0 if findings.watermarked or findings.labelled else EXIT_NOT_MARKED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edge-verify", description=DESCRIPTION)
    add_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also print each frame's score")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run(args, "edge-verify")


if __name__ == "__main__":
    sys.exit(main())
