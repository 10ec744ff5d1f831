"""Where rendered frames go: an mp4 with the input audio muxed in, PNG frames, a live MJPEG
page (edge_runtime/output/mjpeg.py), or nowhere (``null``, for benchmarks). Frames arrive in order
with their index; a dropped frame is filled with the previous one, so the video keeps a
constant rate and stays in sync with the audio however many frames were dropped.

The mp4 sink records as it goes: a fragmented mp4, flushed to disk every FRAGMENT_S, in a
hidden file beside the output that becomes the output when the recording finishes. A kill,
a watchdog restart or a power cut leaves that file playable up to its last fragment; the
next sink for the same output renames it to a visible, timestamped name. A finished
recording never overwrites an earlier one: the earlier one moves to a timestamped name.
With the ``c2pa`` extra installed, the finished recording is signed once, at close, into a
second hidden file that then takes the output's name (edge_runtime.marking.credentials).

Every sink that writes frames marks them (edge_runtime.marking): the visible label when it is
on, the invisible watermark always, and the provenance as the format's metadata. There is no
switch for the last two.
"""

from __future__ import annotations

import fcntl
import glob
import logging
import os
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from edge_runtime.audio.features import SAMPLE_RATE
from edge_runtime.marking import credentials
from edge_runtime.marking.formats import MP4_OPTIONS, insert_png, png_chunks
from edge_runtime.marking.marker import Marker

log = logging.getLogger(__name__)

PARTIAL = ".partial.mp4"
"""Suffix of a recording in progress (``.NAME.RANDOM.partial.mp4`` beside NAME)."""
FRAGMENT_S = 1.0
"""A live recording is cut into fragments of this length, each flushed to disk when cut: a
kill loses the fragment being written and the encoder's few frames of look-ahead."""
LIVE_MOVFLAGS = "frag_keyframe+delay_moov+default_base_moof"
"""Fragmented mp4. delay_moov writes the header with the first fragment, once the start of
each stream is known, so the edit lists keep audio and video aligned (an empty header
written up front shifted the video by the encoder's delay, 80 ms)."""


class Sink(Protocol):
    """Where frames go. A sink that records sound also has ``write_audio(samples)``
    (16 kHz mono float32, in order, as it arrives); one that shows live stats has
    ``publish_stats(summary)``."""

    def write(self, index: int, frame: np.ndarray) -> None:
        """frame: uint8 [H, W, 3] RGB for video frame ``index`` (increasing)."""
        ...

    def close(self) -> None:
        """Finish (the recording is complete on disk when this returns)."""
        ...


class NullSink:
    def write(self, index: int, frame: np.ndarray) -> None:
        pass

    def close(self) -> None:
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

    def close(self) -> None:
        pass


def _muxer_options(metadata: bool, live: bool) -> dict[str, str]:
    flags = [MP4_OPTIONS["movflags"]] if metadata else []
    if not live:
        return {"movflags": "+".join(flags)} if flags else {}
    # flush_packets: each fragment reaches the file when it is cut, not when PyAV's 1 MiB
    # I/O buffer fills (without it a kill left the file cut inside a fragment)
    return {"movflags": "+".join(flags + [LIVE_MOVFLAGS]),
            "frag_duration": str(int(FRAGMENT_S * 1e6)), "flush_packets": "1"}


class Mp4Writer:
    """H.264 video (+ AAC audio) mp4 written frame by frame into a hidden file beside
    ``path``; ``close`` renames it to ``path``. ``live``: a fragmented mp4 flushed every
    FRAGMENT_S (playable up to the last fragment if the process dies), the hidden file
    locked (flock) while it is written so that ``recover_partials`` leaves it alone.
    ``audio_rate``: the audio stream must exist before the first frame is muxed; its samples
    come through ``add_audio`` as they arrive (or all at ``close``).
    ``metadata``: container tags (every key is kept)."""

    def __init__(self, path: str | Path, fps: int, crf: int = 18,
                 audio_rate: int | None = SAMPLE_RATE, metadata: dict[str, str] | None = None,
                 live: bool = False):
        import av

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=PARTIAL,
                                   dir=self.path.parent)
        self._lock: int | None = None
        if live:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._lock = fd
        else:
            os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the output is a normal file
        self.tmp = Path(tmp)
        self._container = av.open(tmp, mode="w", format="mp4",
                                  options=_muxer_options(bool(metadata), live))
        self._container.metadata.update(metadata or {})
        self._video = self._container.add_stream("libx264", rate=fps)
        self._video.pix_fmt = "yuv420p"
        self._video.options = {"crf": str(crf), "preset": "veryfast"}
        self._audio = None
        if audio_rate is not None:
            self._audio = self._container.add_stream("aac", rate=audio_rate, layout="mono")
        self._sized = False
        self._early_audio: list[np.ndarray] = []
        """Audio that came before the first frame (it leads by the viseme look-ahead)."""
        self.frames = 0
        self.audio_samples = 0

    @property
    def has_audio(self) -> bool:
        return self._audio is not None

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
        if self._early_audio:
            early, self._early_audio = self._early_audio, []
            self.add_audio(np.concatenate(early))

    def add_audio(self, audio: np.ndarray) -> None:
        """The next samples of the audio track (float32 in [-1, 1] at ``audio_rate``); the
        encoder regroups them into its own frames."""
        import av

        if not len(audio):
            return
        if not self._sized:  # the first mux writes the header: the video's size comes first
            self._early_audio.append(np.asarray(audio, np.float32))
            return
        samples = (np.clip(np.asarray(audio, np.float32), -1, 1) * 32767).astype(np.int16)
        chunk = av.AudioFrame.from_ndarray(samples[None, :], format="s16", layout="mono")
        rate = self._audio.rate
        chunk.sample_rate, chunk.pts = rate, self.audio_samples
        chunk.time_base = Fraction(1, rate)
        for packet in self._audio.encode(chunk):
            self._container.mux(packet)
        self.audio_samples += len(samples)

    def finish(self) -> Path:
        """Flush the encoders and close the file -> the hidden file (still locked when live:
        ``release`` unlocks it once it has its name)."""
        for packet in self._video.encode():
            self._container.mux(packet)
        if self._audio is not None:
            for packet in self._audio.encode():
                self._container.mux(packet)
        self._container.close()
        return self.tmp

    def release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor drops the flock
            self._lock = None

    def close(self, audio: np.ndarray | None = None) -> None:
        """Finish (``audio``: samples not yet added) and rename the file to ``path``."""
        if audio is not None:
            self.add_audio(audio)
        os.replace(self.finish(), self.path)
        self.release()

    def abort(self) -> None:
        self._container.close()
        self.tmp.unlink(missing_ok=True)
        self.release()


def stamped(path: Path, when: float) -> Path:
    """``STEM-YYYYmmddTHHMMSSZ.mp4`` beside ``path`` for the time ``when`` (UTC), with -2,
    -3 ... added when that name is taken: never an existing file."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    candidate = path.with_name(f"{path.stem}-{stamp}{path.suffix}")
    count = 1
    while candidate.exists():
        count += 1
        candidate = path.with_name(f"{path.stem}-{stamp}-{count}{path.suffix}")
    return candidate


def _playable(path: Path) -> bool:
    """Whether an mp4 cut short has a header and at least one video packet."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return False
            return any(packet.size for packet in container.demux(video=0))
    except (av.FFmpegError, OSError):
        return False


def recover_partials(path: Path) -> list[Path]:
    """Hidden recordings of ``path`` left by a process that died (no writer holds their
    lock): playable ones are renamed to ``stamped(path, their last write)``, the others
    deleted. -> the recovered files."""
    recovered = []
    for stale in sorted(path.parent.glob(f".{glob.escape(path.name)}.*.mp4")):
        try:
            fd = os.open(stale, os.O_RDONLY)
        except FileNotFoundError:
            continue  # another process recovered it first
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # being recorded right now
            if _playable(stale):
                target = stamped(path, stale.stat().st_mtime)
                os.rename(stale, target)
                recovered.append(target)
                log.warning("%s: recovered a recording that was cut short (%.1f MB; the "
                            "process was killed or lost power) as %s", path,
                            target.stat().st_size / 1e6, target.name)
            else:
                stale.unlink()
                log.info("%s: removed %s, a recording cut short before its first "
                         "fragment", path, stale.name)
        finally:
            os.close(fd)
    return recovered


class Mp4Sink:
    """Marked frames and the audio as they come, written to disk as they are recorded; the
    provenance in the container's tags. At start it recovers the recordings of ``path``
    that a dead process left; at ``close`` an existing ``path`` moves to a timestamped name
    and the recording takes its place. A recording without frames leaves ``path`` alone."""

    def __init__(self, path: str | Path, fps: int, with_audio: bool = True,
                 marker: Marker | None = None):
        self.path = Path(path)
        self.marker = marker or Marker.unknown()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        recover_partials(self.path)
        self.writer = Mp4Writer(self.path, fps, audio_rate=SAMPLE_RATE if with_audio else None,
                                metadata=self.marker.fields, live=True)
        self._last: np.ndarray | None = None
        self._signed_lock: int | None = None
        self._c2pa = self._c2pa_signer()
        self.written: Path | None = None
        """Where the recording went (after ``close``; None when it had no frames)."""

    def write(self, index: int, frame: np.ndarray) -> None:
        """Dropped frames repeat the previous frame (the first frame, if the stream began
        with drops), so frame ``index`` always lands at index / fps seconds."""
        frame = self.marker(frame)
        fill = frame if self._last is None else self._last
        while self.writer.frames < index:
            self.writer.add(fill)
        self.writer.add(frame)
        self._last = frame

    def write_audio(self, samples: np.ndarray) -> None:
        if self.writer.has_audio:
            self.writer.add_audio(samples)

    def close(self) -> None:
        tmp = self.writer.finish()
        try:
            if not self.writer.frames:
                tmp.unlink()
                return
            final = self._signed(tmp)
            if self.path.exists():
                earlier = stamped(self.path, self.path.stat().st_mtime)
                os.rename(self.path, earlier)
                log.info("%s: the earlier recording moved to %s", self.path, earlier.name)
            os.replace(final, self.path)
            if final != tmp:
                tmp.unlink()
            self.written = self.path
        finally:
            self.writer.release()
            self._release_signed()

    def _c2pa_signer(self) -> credentials.Signer | None:
        """The device's C2PA signer, ready (None: c2pa is not installed, or its key cannot be
        read or made: the recording keeps its provenance tags)."""
        if not credentials.available():
            credentials.note_unavailable()
            return None
        try:
            return credentials.Signer(self.marker.c2pa_keys).load()
        except Exception as exc:  # a key folder it cannot write, a damaged key file
            log.warning("%s: no C2PA manifest will be written (%s); the recording keeps its "
                        "provenance tags", self.path, exc)
            return None

    def _signed(self, tmp: Path) -> Path:
        """The finished recording with its C2PA manifest, in another hidden file beside it,
        locked like the recording (``tmp`` itself when c2pa is not installed or signing
        fails: the recording keeps its tags)."""
        if self._c2pa is None:
            return tmp
        fd, signed = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=PARTIAL,
                                      dir=self.path.parent)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._signed_lock = fd
        os.chmod(signed, tmp.stat().st_mode & 0o777)
        started = time.perf_counter()
        try:
            with open(fd, "w+b", closefd=False) as dest:
                self._c2pa.sign(self.marker.provenance, tmp, dest, self.path.name)
        except Exception as exc:  # c2pa's errors, a key folder it cannot write
            os.unlink(signed)
            log.warning("%s: no C2PA manifest written (%s); the recording keeps its "
                        "provenance tags", self.path, exc)
            return tmp
        log.info("%s: C2PA manifest signed in %.1f ms (+%d bytes)", self.path,
                 1e3 * (time.perf_counter() - started),
                 os.path.getsize(signed) - tmp.stat().st_size)
        return Path(signed)

    def _release_signed(self) -> None:
        if self._signed_lock is not None:
            os.close(self._signed_lock)
            self._signed_lock = None


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
