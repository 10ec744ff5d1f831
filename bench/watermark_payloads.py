"""Whether what the watermark survives depends on the bundle: make demo's frames (photo- and
face-framed, rendered once with the mark taken out) marked with many payloads, then re-encoded,
halved or cropped to the face; optionally real-texture face frames (`tsd data real`) too.
Prints, per transformation, how many payloads keep the mark in >= 99% of frames and the
lowest sync score seen.

    .venv/bin/python -m bench.watermark_payloads [--payloads 12] [--real data/real]
"""

from __future__ import annotations

import argparse
import io
import tempfile
from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np

from edge_runtime.bundle import load_bundle
from edge_runtime.face.landmarks import FACE_OVAL
from edge_runtime.face.reference import open_landmarker, read_photo
from edge_runtime.marking.watermark import Watermarker, detect

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "bundles" / "demo"
BAR = 0.99


def reencode(frames: list[np.ndarray], crf: int = 28) -> list[np.ndarray]:
    """H.264 (libx264, yuv420p) at ``crf`` and back, in memory; yuv420p needs even sides, so
    an odd last row or column (a crop's) is dropped."""
    h, w = (side - side % 2 for side in frames[0].shape[:2])
    frames = [f[:h, :w] for f in frames]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.pix_fmt, stream.options = "yuv420p", {"crf": str(crf)}
        stream.height, stream.width = frames[0].shape[:2]
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    buffer.seek(0)
    with av.open(buffer) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def half(frame: np.ndarray) -> np.ndarray:
    return cv2.resize(frame, (frame.shape[1] // 2, frame.shape[0] // 2),
                      interpolation=cv2.INTER_AREA)


def face_box(frame: np.ndarray) -> tuple[int, int, int, int]:
    """x0, y0, x1, y1 of the face oval the demo bundle's landmarker finds."""
    bundle, root = load_bundle(DEMO)
    faces = open_landmarker(bundle, root).faces(frame)
    if not faces:
        raise ValueError("no face in the frame")
    oval = faces[0].landmarks[list(FACE_OVAL), :2]
    (x0, y0), (x1, y1) = np.floor(oval.min(0)).astype(int), np.ceil(oval.max(0)).astype(int)
    return max(x0, 0), max(y0, 0), x1, y1


def unmarked_demo(framing: str, folder: Path) -> list[np.ndarray]:
    """make demo's frames with ``--framing framing``, the watermark taken out."""
    from edge_runtime.cli import main

    mark = Watermarker.__call__
    Watermarker.__call__ = lambda self, frame: frame
    try:
        main(["--bundle", str(DEMO), "--audio", str(ROOT / "examples" / "speech.wav"),
              "--reference", str(ROOT / "examples" / "face.png"), "--offline", "--steps", "2",
              "--framing", framing, "--sink", f"png:{folder}"])
    finally:
        Watermarker.__call__ = mark
    return [read_photo(p) for p in sorted(folder.glob("*.png"))]


def real_faces(data: Path, clips: int = 8, frames: int = 40) -> list[list[np.ndarray]]:
    """The first ``frames`` frames of one clip of each of the first ``clips`` identities."""
    first: dict[str, Path] = {}
    for clip in sorted((data / "clips").iterdir()):
        first.setdefault(clip.name.rsplit("_c", 1)[0], clip)
    return [[read_photo(p) for p in sorted((c / "frames").glob("*.png"))[:frames]]
            for c in list(first.values())[:clips]]


Transform = Callable[[list[np.ndarray]], list[np.ndarray]]


def transforms(box: tuple[int, int, int, int]) -> dict[str, tuple[str, Transform]]:
    x0, y0, x1, y1 = box
    return {
        "photo, H.264 CRF 28": ("photo", reencode),
        "photo, resized to 50%": ("photo", lambda fs: [half(f) for f in fs]),
        "photo, cropped to the face": ("photo", lambda fs: [f[y0:y1, x0:x1] for f in fs]),
        "face, as written (PNG)": ("face", lambda fs: fs),
        "face, H.264 CRF 18 (the mp4 sink)": ("face", lambda fs: reencode(fs, 18)),
        "face, H.264 CRF 23": ("face", lambda fs: reencode(fs, 23)),
        "face, H.264 CRF 28": ("face", reencode),
        "face, resized to 50%": ("face", lambda fs: [half(f) for f in fs]),
        "real-texture face, as written": ("real", lambda fs: fs),
        "real-texture face, H.264 CRF 28": ("real", reencode),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payloads", type=int, default=12,
                        help="how many payloads to try (seeded; default 12)")
    parser.add_argument("--real", type=Path,
                        help="a `tsd data real` folder: also its 128x128 face frames")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        sets = {f: [unmarked_demo(f, Path(scratch) / f)] for f in ("photo", "face")}
    sets["real"] = real_faces(args.real) if args.real else []
    payloads = [int(p) for p in np.random.default_rng(2).integers(0, 1024, args.payloads)]
    print(f"| frames | payloads kept in >= 99% of frames (of {len(payloads)}) | lowest score |")
    print("|---|---|---|")
    for name, (kind, transform) in transforms(face_box(sets["photo"][0][0])).items():
        if not sets[kind]:
            continue
        kept, lowest = 0, np.inf
        for payload in payloads:
            mark = Watermarker(payload)
            found = [detect(f) for frames in sets[kind]
                     for f in transform([mark(f.copy()) for f in frames])]
            kept += np.mean([d.marked for d in found]) >= BAR
            lowest = min(lowest, min(d.score for d in found))
        print(f"| {name} | {kept} | {lowest:.1f} |", flush=True)


if __name__ == "__main__":
    main()
