"""The per-stream loop: audio -> visemes -> frames -> sink, offline or at real-time pace.

Frame t is rendered once the visemes of frames t-c..t+c are known (c = the bundle's viseme
context). At real-time pace the audio is fed as the wall clock says it has arrived; when
rendering falls behind and several frames are ready, all but the newest are dropped (and
counted) so latency never accumulates.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edge_runtime.audio.features import SAMPLE_RATE
from edge_runtime.output.sinks import Sink
from edge_runtime.render.renderer import Renderer
from edge_runtime.visemes.stream import VisemeEvent, VisemeStream
from edge_runtime.visemes.vocabulary import SIL

CHUNK_S = 0.02
"""Audio is fed in 20 ms chunks (a typical capture block)."""


RECENT = 1000
"""Percentiles cover the last RECENT calls of a stage: bounded memory in a service that runs
for weeks, and live figures that follow the present."""
STATS_EVERY_S = 10.0
"""How often a running pipeline logs its live stats (to the journal under systemd)."""
SINK_STATS_EVERY_S = 1.0
"""How often sinks that show stats (the MJPEG page) get them."""


@dataclass
class StageTimes:
    """One stage's timings: mean over the whole run, p50/p95 over the recent calls."""

    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT))
    count: int = 0
    total_ms: float = 0.0

    def add(self, ms: float) -> None:
        self.recent.append(ms)
        self.count += 1
        self.total_ms += ms

    def summary(self) -> dict:
        recent = np.asarray(self.recent)
        return {"mean": self.total_ms / self.count, "p50": float(np.percentile(recent, 50)),
                "p95": float(np.percentile(recent, 95)), "count": self.count}


STAGES = ("visemes", "generate", "decode", "paste", "sink")


@dataclass
class Stats:
    frames: int = 0
    dropped: int = 0
    wall_s: float = 0.0
    stages_ms: dict[str, StageTimes] = field(
        default_factory=lambda: {name: StageTimes() for name in STAGES})

    def summary(self) -> dict:
        stages = {name: t.summary() for name, t in self.stages_ms.items() if t.count}
        return {"frames": self.frames, "dropped": self.dropped, "wall_s": self.wall_s,
                "fps": self.frames / self.wall_s if self.wall_s else 0.0, "stages_ms": stages}


class Pipeline:
    def __init__(self, stream: VisemeStream, renderer: Renderer | None, sink: Sink,
                 emit: Callable[[VisemeEvent], None] | None = None,
                 heartbeat: Callable[[], None] = lambda: None,
                 on_stats: Callable[[dict], None] | None = None,
                 compose: Callable[[np.ndarray], np.ndarray] | None = None):
        """``compose`` turns a decoded face into the output frame (the paste-back into the
        reference photo; E1 only); ``heartbeat`` is called every loop iteration (the systemd
        watchdog); a sink with ``write_audio`` gets the audio as it is fed, before the frames
        it drives;
        ``on_stats`` every STATS_EVERY_S with the live summary; sinks that show stats (the
        MJPEG page) get it every SINK_STATS_EVERY_S through ``publish_stats``."""
        self.stream, self.renderer, self.sink, self.emit = stream, renderer, sink, emit
        self._record_audio = getattr(sink, "write_audio", None)  # the mp4 sink records it
        self.heartbeat = heartbeat
        self.on_stats = on_stats
        self.compose = compose
        self._started = time.monotonic()
        self._logged = self._shown = self._started
        self.context = renderer.bundle.viseme_context if renderer else 0
        self._tokens: list[int] = []  # decided visemes, _tokens[0] being frame _token_base
        self._token_base = 0
        self.decided = 0  # frames whose viseme is known
        self.next_frame = 0
        self.stats = Stats()

    def summary(self) -> dict:
        """Stats so far, with the sound-to-frame delay: the viseme stream's delay (frame +
        look-ahead), the viseme context the renderer waits for, and the recent median
        render time."""
        summary = self.stats.summary()
        if not summary["wall_s"]:
            elapsed = time.monotonic() - self._started
            summary |= {"wall_s": elapsed, "fps": self.stats.frames / elapsed if elapsed else 0}
        fps = self.renderer.bundle.fps if self.renderer else self.stream.fps
        render = sum(summary["stages_ms"].get(k, {}).get("p50", 0.0)
                     for k in ("generate", "decode", "paste", "sink"))
        summary["viseme_latency_ms"] = 1000 * self.stream.latency_s
        summary["render_context_ms"] = 1000 * self.context / fps
        summary["audio_to_frame_ms"] = (summary["viseme_latency_ms"]
                                        + summary["render_context_ms"] + render)
        return summary

    def _publish(self) -> None:
        now = time.monotonic()
        show = hasattr(self.sink, "publish_stats") and now - self._shown >= SINK_STATS_EVERY_S
        tell = self.on_stats is not None and now - self._logged >= STATS_EVERY_S
        if not (show or tell):
            return
        summary = self.summary()
        if show:
            self._shown = now
            self.sink.publish_stats(summary)
        if tell:
            self._logged = now
            self.on_stats(summary)

    def _accept(self, events: list[VisemeEvent]) -> None:
        for event in events:
            self._tokens.append(event.token)
            self.decided += 1
            if self.emit is not None:
                self.emit(event)

    def _window(self, frame: int, final: bool) -> np.ndarray | None:
        """Tokens frame-c..frame+c, ``sil`` before the start (and after the end when final)."""
        end = frame + self.context
        if end >= self.decided and not final:
            return None
        window = np.full(2 * self.context + 1, SIL, np.int32)
        for k, index in enumerate(range(frame - self.context, end + 1)):
            if 0 <= index < self.decided:
                window[k] = self._tokens[index - self._token_base]
        self._forget_before(frame - self.context)
        return window

    def _forget_before(self, frame: int) -> None:
        """Drop tokens no window needs any more (in blocks: bounded memory, rare copies)."""
        if frame - self._token_base >= 256:
            del self._tokens[:frame - self._token_base]
            self._token_base = frame

    def _render(self, frame: int, window: np.ndarray) -> None:
        if self.renderer is None:
            return
        stages = self.stats.stages_ms
        began = time.perf_counter()
        latent = self.renderer.latent(window)
        made = time.perf_counter()
        stages["generate"].add(1000 * (made - began))
        if self.renderer.decoder is not None:
            image = self.renderer.decode(latent)
            decoded = time.perf_counter()
            stages["decode"].add(1000 * (decoded - made))
            if self.compose is not None:
                image = self.compose(image)
                composed = time.perf_counter()
                stages["paste"].add(1000 * (composed - decoded))
                decoded = composed
            self.sink.write(frame, image)
            stages["sink"].add(1000 * (time.perf_counter() - decoded))
        else:  # hybrid: the latent itself goes out
            self.sink.write(frame, latent)
            stages["sink"].add(1000 * (time.perf_counter() - made))
        self.stats.frames += 1

    def _ready(self, final: bool) -> int:
        last = self.decided - 1 if final else self.decided - 1 - self.context
        return max(last - self.next_frame + 1, 0)

    def feed(self, audio: np.ndarray, realtime: bool = False) -> None:
        """Push audio and render what became ready (at most one frame when ``realtime``,
        dropping older ready frames)."""
        self._push(audio)
        if self._record_audio is not None:
            self._record_audio(audio)
        self._drain(final=False, realtime=realtime)
        self._publish()

    def _push(self, audio: np.ndarray) -> None:
        began = time.perf_counter()
        self._accept(self.stream.push(audio))
        self.stats.stages_ms["visemes"].add(1000 * (time.perf_counter() - began))

    def _drain(self, final: bool, realtime: bool) -> None:
        while (ready := self._ready(final)) > 0:
            if realtime and ready > 1:  # behind: skip to the newest frame
                self.stats.dropped += ready - 1
                self.next_frame += ready - 1
            self._render(self.next_frame, self._window(self.next_frame, final))
            self.next_frame += 1
            if realtime:
                return

    def run(self, audio: np.ndarray, realtime: bool = False,
            stop: threading.Event | None = None) -> Stats:
        """Process a whole signal (16 kHz mono); at real-time pace when ``realtime``; ends
        early (cleanly, the sink finished) when ``stop`` is set."""
        chunk = int(CHUNK_S * SAMPLE_RATE)
        start = time.monotonic()
        position = 0
        while position < len(audio) and not (stop is not None and stop.is_set()):
            self.heartbeat()
            if realtime:
                due = int((time.monotonic() - start) * SAMPLE_RATE)
                if due < position + chunk:
                    time.sleep((position + chunk - due) / SAMPLE_RATE)
                    due = int((time.monotonic() - start) * SAMPLE_RATE)
                end = min(len(audio), max(due, position + chunk))
            else:
                end = min(len(audio), position + chunk)
            self.feed(audio[position:end], realtime)
            position = end
        self._accept(self.stream.finish())
        self._drain(final=True, realtime=False)
        self.stats.wall_s = time.monotonic() - start
        self.sink.close()
        return self.stats

    def run_live(self, source, stop: threading.Event, duration_s: float | None = None,
                 realtime: bool = True, idle_s: float = 0.005) -> Stats:
        """Capture from ``source`` (edge_runtime.audio.mic.MicrophoneSource or
        edge_runtime.audio.stdin.StdinSource: start, read, close and ``ended``) until ``stop``
        is set, ``duration_s`` has passed or the source ends; frames at the pace the audio
        arrives (``realtime``: only the newest ready frame, the others dropped)."""
        start = time.monotonic()
        source.start()
        try:
            while not stop.is_set() and not source.ended:
                self.heartbeat()
                if duration_s is not None and time.monotonic() - start >= duration_s:
                    break
                audio = source.read()
                if len(audio):
                    self.feed(audio, realtime)
                else:
                    time.sleep(idle_s)
        finally:
            source.close()
        self._accept(self.stream.finish())
        self._drain(final=True, realtime=False)
        self.stats.wall_s = time.monotonic() - start
        self.sink.close()
        return self.stats
