"""Where rendered frames go: an mp4 with the input audio muxed in, PNG frames, a live MJPEG
page (edge_runtime/output/mjpeg.py), or nowhere (``null``, for benchmarks). Frames arrive in order
with their index; a dropped frame is filled with the previous one, so the video keeps a
constant rate and stays in sync with the audio however many frames were dropped.

Every sink that writes frames marks them (edge_runtime.marking): the visible label when it is
on, the invisible watermark always, and the provenance as the format's metadata. There is no
switch for the last two.
"""

from __future__ import annotations

import os
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from edge_runtime.audio.features import SAMPLE_RATE
from edge_runtime.marking.formats import MP4_OPTIONS, insert_png, png_chunks
from edge_runtime.marking.marker import Marker


class Sink(Protocol):
    def write(self, index: int, frame: np.ndarray) -> None:
        """frame: uint8 [H, W, 3] RGB for video frame ``index`` (increasing)."""
        ...

    def close(self, audio: np.ndarray | None = None) -> None:
        """Finish; ``audio`` (16 kHz mono float32) is what was rendered, for muxing."""
        ...


class NullSink:
    def write(self, index: int, frame: np.ndarray) -> None:
        pass

    def close(self, audio: np.ndarray | None = None) -> None:
        pass


class PngSink:
    """folder/frame_000000.png, ... (each written atomically), marked, with the provenance
    in text chunks."""

    def __init__(self, folder: str | Path, marker: Marker | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.marker = marker or Marker.unknown()
        self._chunks = png_chunks(self.marker.fields)

    def write(self, index: int, frame: np.ndarray) -> None:
        path = self.folder / f"frame_{index:06d}.png"
        tmp = path.with_name(f".{path.name}.partial.png")
        ok, png = cv2.imencode(".png", cv2.cvtColor(self.marker(frame), cv2.COLOR_RGB2BGR))
        if not ok:
            raise OSError(f"{path}: PNG encoding failed")
        tmp.write_bytes(insert_png(png.tobytes(), self._chunks))
        os.replace(tmp, path)

    def close(self, audio: np.ndarray | None = None) -> None:
        pass


class Mp4Writer:
    """H.264 video (+ AAC audio) mp4 written frame by frame; appears at ``path`` only when
    closed (it is written next to it and renamed). The audio stream must exist before the
    first frame is muxed, so ``audio_rate`` is given up front and the samples at close.
    ``metadata``: container tags (every key is kept)."""

    def __init__(self, path: str | Path, fps: int, crf: int = 18,
                 audio_rate: int | None = SAMPLE_RATE, metadata: dict[str, str] | None = None):
        import av

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".mp4",
                                   dir=self.path.parent)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the output is a normal file
        self._tmp = Path(tmp)
        self._container = av.open(tmp, mode="w", format="mp4",
                                  options=MP4_OPTIONS if metadata else {})
        self._container.metadata.update(metadata or {})
        self._video = self._container.add_stream("libx264", rate=fps)
        self._video.pix_fmt = "yuv420p"
        self._video.options = {"crf": str(crf), "preset": "veryfast"}
        self._audio = None
        if audio_rate is not None:
            self._audio = self._container.add_stream("aac", rate=audio_rate, layout="mono")
        self._sized = False
        self.frames = 0

    def add(self, frame: np.ndarray) -> None:
        import av

        if frame.shape[0] % 2 or frame.shape[1] % 2:  # 4:2:0 H.264 needs even sides
            frame = cv2.copyMakeBorder(frame, 0, frame.shape[0] % 2, 0, frame.shape[1] % 2,
                                       cv2.BORDER_REPLICATE)
        if not self._sized:
            self._video.height, self._video.width = frame.shape[:2]
            self._sized = True
        for packet in self._video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            self._container.mux(packet)
        self.frames += 1

    def close(self, audio: np.ndarray | None = None) -> None:
        import av

        for packet in self._video.encode():
            self._container.mux(packet)
        stream = self._audio
        if stream is not None and audio is not None and len(audio):
            rate = stream.rate
            samples = (np.clip(np.asarray(audio, np.float32), -1, 1) * 32767).astype(np.int16)
            for start in range(0, len(samples), 1024):
                part = samples[start:start + 1024]
                chunk = av.AudioFrame.from_ndarray(part[None, :], format="s16", layout="mono")
                chunk.sample_rate, chunk.pts = rate, start
                chunk.time_base = Fraction(1, rate)
                for packet in stream.encode(chunk):
                    self._container.mux(packet)
        if stream is not None:
            for packet in stream.encode():
                self._container.mux(packet)
        self._container.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        self._container.close()
        self._tmp.unlink(missing_ok=True)


class Mp4Sink:
    """Marked frames; the provenance in the container's tags."""

    def __init__(self, path: str | Path, fps: int, with_audio: bool = True,
                 marker: Marker | None = None):
        self.marker = marker or Marker.unknown()
        self.writer = Mp4Writer(path, fps, audio_rate=SAMPLE_RATE if with_audio else None,
                                metadata=self.marker.fields)
        self._last: np.ndarray | None = None

    def write(self, index: int, frame: np.ndarray) -> None:
        """Dropped frames repeat the previous frame (the first frame, if the stream began
        with drops), so frame ``index`` always lands at index / fps seconds."""
        frame = self.marker(frame)
        fill = frame if self._last is None else self._last
        while self.writer.frames < index:
            self.writer.add(fill)
        self.writer.add(frame)
        self._last = frame

    def close(self, audio: np.ndarray | None = None) -> None:
        self.writer.close(audio)


def open_sink(spec: str, fps: int, with_audio: bool = True,
              marker: Marker | None = None) -> Sink:
    """``null``, ``*.mp4``, a folder for PNG frames (``png:FOLDER`` or ``FOLDER/``) or a live
    MJPEG page (``http://HOST:PORT``); ``marker`` marks the frames (default: one that knows
    no bundle)."""
    if spec == "null":
        return NullSink()
    if spec.startswith("http://"):
        from edge_runtime.output.mjpeg import MjpegSink

        return MjpegSink(spec, marker)
    if spec.endswith(".mp4"):
        return Mp4Sink(spec, fps, with_audio, marker)
    if spec.startswith("png:"):
        return PngSink(spec[4:], marker)
    if spec.endswith("/"):
        return PngSink(spec, marker)
    raise ValueError(f"unknown sink {spec!r} (null, FILE.mp4, png:FOLDER, FOLDER/ or "
                     "http://HOST:PORT)")
