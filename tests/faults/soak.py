"""Soak of the hybrid pair: edge-run --mode hybrid (real time, from examples/speech.wav
looped) streams to edge-receive on 127.0.0.1 for a long time, with one receiver restart
(at a third) and one sender restart (at two thirds). Not collected by pytest (no test_
prefix); run it by hand, nice'd, from the repository root:

    nice -n 10 .venv/bin/python -m tests.faults.soak --minutes 30 --out runs/soak-hybrid

It samples the receiver's resident memory every ``--every`` seconds and reads the sender's
live wire counters (logged every 10 s), then writes ``report.json`` in ``--out``: frames
lost or unsent on the wire outside the restart windows (each window: the restart to
``--window`` seconds after it), the receiver's memory after warm-up (min, max, spread),
and both sides' final summary lines.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
WIRE = re.compile(r"(?:live: |; )wire (\d+) sent, (\d+) delivered, (\d+) lost, (\d+) unsent")
"""The sender's wire counters in its live lines and its summary line."""

log = logging.getLogger("soak")


def looped_speech(path: Path, seconds: float) -> Path:
    """examples/speech.wav repeated to ``seconds`` (16 kHz mono int16)."""
    with wave.open(str(REPO / "examples" / "speech.wav")) as f:
        rate, samples = f.getframerate(), np.frombuffer(f.readframes(f.getnframes()), "<i2")
    reps = int(np.ceil(seconds * rate / len(samples)))
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(np.tile(samples, reps)[:int(seconds * rate)].tobytes())
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Process:
    """A child whose stderr lines are kept with their arrival time (seconds from t0)."""

    def __init__(self, name: str, argv: list[str], log_path: Path, t0: float):
        self.name, self.t0 = name, t0
        self.lines: list[tuple[float, str]] = []
        self.proc = subprocess.Popen(argv, cwd=REPO, stderr=subprocess.PIPE, text=True,
                                     stdout=subprocess.DEVNULL)
        self._log = log_path.open("a")
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            now = time.monotonic() - self.t0
            self.lines.append((now, line.rstrip()))
            self._log.write(f"{now:8.1f} {self.name}: {line}")
            self._log.flush()

    def rss_mb(self) -> float | None:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def stop(self, timeout: float = 15.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._thread.join(5)
        return code


def receiver(port: int, args, t0: float) -> Process:
    return Process("receiver", [sys.executable, "-m", "edge_runtime.hybrid.receiver",
                                "--bundle", args.bundle, "--listen", f"127.0.0.1:{port}",
                                "--sink", "null", "--threads", "1"], args.out / "soak.log", t0)


def sender(port: int, audio: Path, args, t0: float, n: int) -> Process:
    return Process(f"sender{n}", [sys.executable, "-m", "edge_runtime.cli", "--bundle",
                                  args.bundle, "--mode", "hybrid", "--sink",
                                  f"latent://127.0.0.1:{port}", "--audio", str(audio),
                                  "--reference", str(REPO / "examples" / "face.png"),
                                  "--threads", "1", "--stats",
                                  str(args.out / f"sender{n}.json")],
                   args.out / "soak.log", t0)


def wire_loss_outside(senders: list[Process], windows: list[float], window_s: float) -> dict:
    """Frames lost or unsent between two live lines of a sender that lie outside every
    restart window (a sender's own start counts as a window)."""
    outside = inside = 0
    for proc in senders:
        points = [(t, int(m[3]) + int(m[4])) for t, line in proc.lines
                  if (m := WIRE.search(line))]
        for (t_a, a), (t_b, b) in zip(points, points[1:]):
            near = any(w - 1 <= t_b and t_a <= w + window_s for w in windows)
            if near:
                inside += b - a
            else:
                outside += b - a
    return {"lost_or_unsent_outside_windows": outside, "lost_or_unsent_in_windows": inside}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "soak-hybrid")
    parser.add_argument("--bundle", default=str(REPO / "bundles" / "demo"))
    parser.add_argument("--every", type=float, default=10.0, help="memory sample period, s")
    parser.add_argument("--warmup", type=float, default=120.0,
                        help="seconds after a receiver starts before its memory counts")
    parser.add_argument("--window", type=float, default=20.0,
                        help="seconds after a restart in which losses are expected")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    total = 60 * args.minutes
    audio = looped_speech(args.out / "speech-looped.wav", total + 60)
    port, t0 = free_port(), time.monotonic()
    windows = [0.0, total / 3, 2 * total / 3]  # start, receiver restart, sender restart
    receivers = [receiver(port, args, t0)]
    time.sleep(3)
    senders = [sender(port, audio, args, t0, 1)]
    memory: list[tuple[int, float, float]] = []  # receiver number, t, RSS MB
    done = set()
    while (now := time.monotonic() - t0) < total:
        if now >= windows[1] and "receiver" not in done:
            done.add("receiver")
            log.info("restarting the receiver (exit %d)", receivers[-1].stop())
            receivers.append(receiver(port, args, t0))
        if now >= windows[2] and "sender" not in done:
            done.add("sender")
            log.info("restarting the sender (exit %d)", senders[-1].stop())
            senders.append(sender(port, audio, args, t0, 2))
        if (rss := receivers[-1].rss_mb()) is not None:
            memory.append((len(receivers), now, rss))
        time.sleep(args.every)
    codes = {"sender": senders[-1].stop(), "receiver": receivers[-1].stop()}
    starts = {1: windows[0], 2: windows[1]}
    per_receiver = {}
    for n, start in starts.items():
        values = [rss for m, t, rss in memory if m == n and t >= start + args.warmup]
        if values:
            per_receiver[n] = {"min_mb": min(values), "max_mb": max(values),
                               "first_mb": values[0], "last_mb": values[-1],
                               "spread_mb": max(values) - min(values)}
    report = {
        "minutes": args.minutes, "restarts_at_s": windows[1:], "window_s": args.window,
        "exit_codes": codes,
        **wire_loss_outside(senders, windows, args.window),
        "receiver_rss_after_warmup": per_receiver,
        "sender_summaries": [line for p in senders for _, line in p.lines
                             if line.startswith("edge-run:")],
        "receiver_summaries": [line for p in receivers for _, line in p.lines
                               if line.startswith("edge-receive:")],
    }
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
