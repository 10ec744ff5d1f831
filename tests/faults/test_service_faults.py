"""Faults a Pi service meets, against the real edge-run process (subprocesses on the demo
bundle, real files, pipes, signals and sockets on 127.0.0.1): a kill mid-recording, reloads
(good and broken), streaming stdin, a run without frames, crafted headers and an oversized
photo. Every wait is bounded."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import zlib
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from tests.test_mjpeg import CHROMEDRIVER, CHROMIUM

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "bundles" / "demo"
FACE = REPO / "examples" / "face.png"
RATE = 16000


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2)


def pcm(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def wav_bytes(data: bytes, rate: int = RATE, channels: int = 1, bits: int = 16,
              align: int | None = None, claim: int | None = None) -> bytes:
    """A wav whose header says what the arguments say, whatever the data."""
    align = channels * bits // 8 if align is None else align
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * align, align, bits)
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data"
            + struct.pack("<I", len(data) if claim is None else claim) + data)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def write_wav(path: Path, audio: np.ndarray) -> Path:
    path.write_bytes(wav_bytes(pcm(audio)))
    return path


class Notify:
    """The sd_notify socket systemd would offer, bound by the test."""

    def __init__(self, tmp_path: Path):
        self.path = str(tmp_path / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.seen: list[bytes] = []

    def wait_for(self, field: bytes, seconds: float = 30) -> list[bytes]:
        got, end = [], time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                message = self.sock.recv(512)
            except TimeoutError:
                continue
            got.append(message)
            if field in message.split(b"\n") or message.startswith(field):
                return got
        raise AssertionError(f"no {field!r} within {seconds} s in {got}")


def start(tmp_path: Path, *args: str, notify: Notify | None = None,
          stdin=subprocess.DEVNULL) -> subprocess.Popen:
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    if notify is not None:
        env["NOTIFY_SOCKET"] = notify.path
    return subprocess.Popen(
        [sys.executable, "-m", "edge_runtime.cli", "--bundle", str(DEMO), "--threads", "1",
         "--visemes", "none", *args], env=env, cwd=REPO, stdin=stdin,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish(process: subprocess.Popen, seconds: float = 30) -> tuple[int, str]:
    """Wait for the process to exit by itself (its stdin left open: closing it would be an
    end of input), killed after ``seconds`` -> (exit code, stderr). Safe to call again."""
    try:
        process.wait(timeout=seconds)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    err = b"" if process.stderr.closed else process.stderr.read()
    process.stderr.close()
    if process.stdin is not None and not process.stdin.closed:
        try:
            process.stdin.close()
        except BrokenPipeError:
            pass
    return process.returncode, err.decode()


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error" in line.lower()]


def video_seconds(path: Path) -> float:
    """Seconds of video a player decodes from ``path`` (0 when it cannot open it)."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            times = [float(f.pts * f.time_base) for f in container.decode(stream)]
    except (av.FFmpegError, IndexError):
        return 0.0
    return times[-1] + 1 / 25 if times else 0.0


def hidden(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.mp4"))


@pytest.fixture
def browser():
    """Debian's headless Chromium, allowed to play media without a click."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (make test installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


PLAY = """const v = document.querySelector('video');
if (!v || v.readyState < 1) return null;
if (v.paused && !v.ended) { v.muted = true; v.playbackRate = 4; v.play(); }
return [v.duration, v.currentTime, v.ended, v.error && v.error.code];"""


def test_a_killed_recording_plays_and_the_next_run_recovers_it(tmp_path, browser):
    out = tmp_path / "rec" / "out.mp4"
    out.parent.mkdir()
    (out.parent / ".out.mp4.abcd1234.mp4").write_bytes(b"")  # stale, from an older version
    notify = Notify(tmp_path)
    process = start(tmp_path, "--audio", str(write_wav(tmp_path / "long.wav", tone(30))),
                    "--reference", str(FACE), "--sink", str(out), notify=notify)
    try:
        notify.wait_for(b"READY=1")
        began = time.monotonic()
        time.sleep(5)
        process.send_signal(signal.SIGKILL)
        elapsed = time.monotonic() - began
    finally:
        finish(process)
    partial = [p for p in hidden(out.parent) if p.name.endswith(".partial.mp4")]
    assert len(partial) == 1 and not out.exists()
    kept = video_seconds(partial[0])
    assert elapsed - 3 <= kept <= elapsed  # a kill costs the last fragment and look-ahead

    # a common player (Chromium's <video>) plays the killed file to its end
    browser.get(partial[0].as_uri())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        state = browser.execute_script(PLAY)
        if state and (state[2] or state[3]):
            break
        time.sleep(0.3)
    assert state and state[2] and not state[3] and abs(state[0] - kept) < 0.2

    short = write_wav(tmp_path / "short.wav", tone(1.0))
    code, err = finish(start(tmp_path, "--audio", str(short), "--offline", "--reference",
                             str(FACE), "--sink", str(out)))
    assert code == 0, err
    assert hidden(out.parent) == []  # recovered, the unplayable one removed
    recovered = sorted(out.parent.glob("out-*.mp4"))
    assert len(recovered) == 1 and "recovered a recording" in err
    assert video_seconds(recovered[0]) == kept and 0.9 <= video_seconds(out) <= 1.2


def test_a_reload_continues_into_a_new_file_and_keeps_the_first(tmp_path):
    out = tmp_path / "out.mp4"
    notify = Notify(tmp_path)
    process = start(tmp_path, "--audio", str(write_wav(tmp_path / "long.wav", tone(30))),
                    "--reference", str(FACE), "--sink", str(out), notify=notify)
    try:
        notify.wait_for(b"READY=1")
        time.sleep(2.5)
        process.send_signal(signal.SIGHUP)
        notify.wait_for(b"RELOADING=1", 5)
        notify.wait_for(b"READY=1")
        time.sleep(2.5)
        process.send_signal(signal.SIGTERM)
        code, err = finish(process, 10)
    finally:
        finish(process)
    assert code == 0, err
    earlier = sorted(tmp_path.glob("out-*.mp4"))
    assert len(earlier) == 1 and hidden(tmp_path) == []
    assert 2 <= video_seconds(earlier[0]) <= 3.5 and 2 <= video_seconds(out) <= 3.5


def test_a_reload_into_a_broken_config_keeps_the_running_settings(tmp_path):
    config = tmp_path / "edge.yaml"
    config.write_text(f"audio: {write_wav(tmp_path / 'long.wav', tone(30))}\n"
                      f"sink: 'null'\nreference: {FACE}\n")  # YAML's bare null is None
    notify = Notify(tmp_path)
    process = start(tmp_path, "--config", str(config), notify=notify)
    try:
        ready = notify.wait_for(b"READY=1")
        time.sleep(1)
        config.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")  # a binary file in its place
        process.send_signal(signal.SIGHUP)
        notify.wait_for(b"RELOADING=1", 5)
        again = notify.wait_for(b"READY=1")
        time.sleep(1)
        assert process.poll() is None  # still running
        assert [m for m in again if m.startswith(b"READY=1")][-1] == ready[-1]  # same status
        process.send_signal(signal.SIGTERM)
        code, err = finish(process, 10)
    finally:
        finish(process)
    assert code == 0, err
    assert errors(err) == [f"ERROR edge-run: reload: {config}: config is not a text file "
                           "(byte 0 is not UTF-8); keeping the running settings"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def feed(process: subprocess.Popen, audio: np.ndarray, close: bool) -> threading.Thread:
    """Write ``audio`` to the process's stdin in 20 ms pieces at real-time pace."""
    def run():
        piece = RATE // 50
        began = time.monotonic()
        try:
            for k, at in enumerate(range(0, len(audio), piece)):
                process.stdin.write(pcm(audio[at:at + piece]))
                process.stdin.flush()
                time.sleep(max(0.0, began + (k + 1) / 50 - time.monotonic()))
            if close:
                process.stdin.close()
        except (BrokenPipeError, ValueError):
            pass  # the process went away first

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_stdin_streams_the_live_page_before_the_end_and_sigterm_stops_it(tmp_path):
    port = free_port()
    notify = Notify(tmp_path)
    process = start(tmp_path, "--audio", "-", "--reference", str(FACE), "--sink",
                    f"http://127.0.0.1:{port}", notify=notify, stdin=subprocess.PIPE)
    try:
        notify.wait_for(b"READY=1")
        feed(process, tone(2.0), close=False).join(timeout=10)  # the pipe stays open
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats.json", timeout=5) as r:
            live = json.load(r)
        # rendered as the audio came (the page's stats are at most a second old)
        assert live["frames"] + live["dropped"] >= 10
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code, err = finish(process, 5)
        assert time.monotonic() - began < 2.0
    finally:
        finish(process)
    assert code == 0, err


def test_stdin_ends_the_run_at_end_of_input(tmp_path):
    out = tmp_path / "out.mp4"
    process = start(tmp_path, "--audio", "-", "--reference", str(FACE), "--sink", str(out),
                    stdin=subprocess.PIPE)
    feed(process, tone(2.0), close=True).join(timeout=10)
    code, err = finish(process)
    assert code == 0, err
    assert 1.9 <= video_seconds(out) <= 2.2


def test_a_run_without_frames_leaves_the_earlier_mp4_alone(tmp_path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"an earlier recording")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(wav_bytes(b""))
    code, err = finish(start(tmp_path, "--audio", str(empty), "--offline", "--reference",
                             str(FACE), "--sink", str(out)))
    assert code == 1
    assert errors(err) == [f"edge-run: error: no frame was rendered (the audio ended or the "
                           f"run was stopped before the first frame); {out} was left as it "
                           "was"]
    assert out.read_bytes() == b"an earlier recording" and sorted(tmp_path.iterdir()) == [
        empty, out]


def test_a_stop_before_the_first_frame_leaves_the_earlier_mp4_alone(tmp_path):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"an earlier recording")
    notify = Notify(tmp_path)
    process = start(tmp_path, "--audio", "-", "--reference", str(FACE), "--sink", str(out),
                    notify=notify, stdin=subprocess.PIPE)
    try:
        notify.wait_for(b"READY=1")
        process.send_signal(signal.SIGTERM)  # nothing was written to stdin yet
        code, err = finish(process, 5)
    finally:
        finish(process)
    assert code == 1 and "no frame was rendered" in err
    assert out.read_bytes() == b"an earlier recording" and hidden(tmp_path) == []


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data)))


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` and whose pixels are one row: a
    decoder that trusts the header allocates the whole image."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
                     + png_chunk(b"IDAT", zlib.compress(bytes(1 + 3 * width)))
                     + png_chunk(b"IEND", b""))
    return path


def crafted(case: str, tmp_path: Path) -> tuple[list[str], str]:
    """Arguments that feed edge-run the crafted input -> (arguments, expected message)."""
    audio = pcm(tone(0.2))
    wavs = {"rate 0": (dict(rate=0), "wav header says 0 Hz"),
            "rate 1 Hz": (dict(rate=1), "wav header says 1 Hz"),
            "no channels": (dict(channels=0), "wav header says 0 channels"),
            "block align": (dict(align=3), "wav block align 3 does not match"),
            "24-bit": (dict(bits=24), "expected 16-bit PCM, got 24-bit")}
    if case in wavs:
        fields, message = wavs[case]
        path = tmp_path / "crafted.wav"
        path.write_bytes(wav_bytes(audio, **fields))
        return ["--audio", str(path), "--sink", "null"], f"{path}: {message}"
    if case == "bundle fps 0":
        bundle = tmp_path / "bundle"
        bundle.mkdir()
        for item in DEMO.iterdir():
            (bundle / item.name).symlink_to(item)
        (bundle / "bundle.yaml").unlink()
        text = (DEMO / "bundle.yaml").read_text()
        (bundle / "bundle.yaml").write_text(text.replace("\nfps: 25\n", "\nfps: 0\n"))
        return (["--bundle", str(bundle), "--sink", "null"],
                f"{bundle / 'bundle.yaml'}: fps: 0 is out of range (1 to 120)")
    if case == "binary config":
        path = tmp_path / "edge.yaml"
        path.write_bytes(bytes(range(256)))
        return ["--config", str(path)], f"{path}: config is not a text file"
    path = png_header_only(tmp_path / "huge.png", 8000, 8000)  # "huge photo"
    return (["--reference", str(path), "--sink", "null"],
            f"{path}: 8000x8000 PNG is more than 40 megapixels")


@pytest.mark.parametrize("case", ["rate 0", "rate 1 Hz", "no channels", "block align",
                                  "24-bit", "bundle fps 0", "binary config", "huge photo"])
def test_crafted_input_gets_one_line_and_a_non_zero_exit(tmp_path, case):
    args, message = crafted(case, tmp_path)
    code, err = finish(start(tmp_path, *args))
    lines = errors(err)
    assert code == 2 and "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith(f"edge-run: error: {message}")


def test_a_10000_pixel_photo_is_decoded_reduced_in_bounded_memory(tmp_path):
    face = cv2.imread(str(FACE))
    scaled = cv2.resize(face, None, fx=10000 / max(face.shape[:2]), fy=10000 / max(face.shape[:2]))
    big = np.full((10000, 10000, 3), 128, np.uint8)
    big[:scaled.shape[0], :scaled.shape[1]] = scaled
    photo = tmp_path / "big.jpg"
    cv2.imwrite(str(photo), big, [cv2.IMWRITE_JPEG_QUALITY, 85])
    del big
    stats = tmp_path / "stats.json"
    code, err = finish(start(tmp_path, "--audio", str(write_wav(tmp_path / "s.wav",
                                                                  tone(0.5))),
                             "--offline", "--reference", str(photo), "--sink", "null",
                             "--stats", str(stats)))
    assert code == 0, err
    # the whole image as RGB alone is 300 MB; the run, with everything else, stays below
    assert json.loads(stats.read_text())["peak_rss_mb"] < 300


def test_a_recording_in_progress_is_left_to_its_writer(tmp_path):
    """A second sink on the same output (another edge-run) recovers only the dead's files:
    the live one holds its lock."""
    from edge_runtime.output.sinks import Mp4Sink, recover_partials

    out = tmp_path / "out.mp4"
    live = Mp4Sink(out, 25, with_audio=False)
    for index in range(30):  # past the first fragment: a playable file
        live.write(index, np.full((64, 64, 3), 8 * index, np.uint8))
    assert recover_partials(out) == [] and len(hidden(tmp_path)) == 1
    live.close()
    assert hidden(tmp_path) == [] and 1.1 <= video_seconds(out) <= 1.3
