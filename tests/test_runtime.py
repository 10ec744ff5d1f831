"""edge-run on real components: wav files, the tiny bundle's ONNX/TFLite sessions, PyAV."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_runtime.audio.features import SAMPLE_RATE
from edge_runtime.audio.files import AudioError, read_audio_file, resample
from edge_runtime.cli import main
from edge_runtime.visemes.stream import FileRecognizer, PauseRules, SilentRecognizer, VisemeStream
from edge_runtime.visemes.vocabulary import SIL


def write_wav(path: Path, audio: np.ndarray, rate: int = SAMPLE_RATE, channels: int = 1,
              width: int = 2) -> Path:
    data = np.clip(audio, -1, 1)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(width)
        f.setframerate(rate)
        if width == 2:
            f.writeframes((data * 32767).astype("<i2").tobytes())
        else:
            f.writeframes(((data + 1) * 127.5).astype(np.uint8).tobytes())
    return path


def tone(seconds: float, hz: float, rate: int = SAMPLE_RATE, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (level * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_wav_input_is_resampled_and_downmixed(tmp_path):
    stereo = np.stack([tone(1.0, 440, 44100), tone(1.0, 440, 44100)], axis=1).reshape(-1)
    audio = read_audio_file(write_wav(tmp_path / "s.wav", stereo, 44100, channels=2))
    assert len(audio) == SAMPLE_RATE
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) - 440) <= 1  # 1 Hz bins over 1 s
    assert np.allclose(resample(tone(0.5, 300), SAMPLE_RATE), tone(0.5, 300))


@pytest.mark.parametrize("case, expected", [
    ("missing", "audio file not found"),
    ("garbage", "not a readable wav file"),
    ("8-bit", "expected 16-bit PCM, got 8-bit"),
])
def test_bad_audio_files_are_one_line_errors(tmp_path, case, expected):
    path = tmp_path / "a.wav"
    if case == "garbage":
        path.write_bytes(b"RIFF nonsense")
    elif case == "8-bit":
        write_wav(path, tone(0.1, 200), width=1)
    with pytest.raises(AudioError) as exc:
        read_audio_file(path)
    assert expected in str(exc.value) and "\n" not in str(exc.value)


def test_a_wav_cut_short_is_read_as_far_as_it_goes(tmp_path, caplog):
    path = write_wav(tmp_path / "cut.wav", tone(1.0, 300))
    path.write_bytes(path.read_bytes()[:44 + 2 * SAMPLE_RATE // 2])  # half the samples left
    assert len(read_audio_file(path)) == SAMPLE_RATE // 2
    assert "the file holds 16000" in caplog.text


def test_stdin_is_paced_to_real_time_and_split_samples_wait_for_their_half():
    import os
    import time

    from edge_runtime.audio.stdin import StdinSource

    def queued(source) -> None:
        """Wait (bounded) until the reader thread has queued what the pipe held."""
        deadline = time.monotonic() + 5
        while source._queue.empty() and time.monotonic() < deadline:
            time.sleep(0.01)

    read_end, write_end = os.pipe()
    data = (tone(0.5, 300) * 32767).astype("<i2").tobytes()
    os.write(write_end, data[:1001])  # an odd byte count: the last sample is split
    now = [0.0]
    with open(read_end, "rb", buffering=0) as stream:
        source = StdinSource(stream, clock=lambda: now[0])
        source.start()
        queued(source)
        assert len(source.read()) == 0  # no time has passed
        now[0] = 0.01
        assert len(source.read()) == 160  # 10 ms of audio, no more
        now[0] = 1.0
        assert len(source.read()) == 340  # the rest of the 500 whole samples
        os.write(write_end, data[1001:])
        os.close(write_end)
        parts, deadline = [], time.monotonic() + 5
        while not source.ended and time.monotonic() < deadline:
            parts.append(source.read())
            time.sleep(0.01)
        rest = np.concatenate(parts)
        assert len(rest) == SAMPLE_RATE // 2 - 500 and source.ended
        assert np.array_equal(rest, np.frombuffer(data[1000:], "<i2") / 32768.0)


def _events(stream: VisemeStream, audio: np.ndarray, cuts: list[int]) -> list:
    events, start = [], 0
    for cut in sorted(cuts) + [len(audio)]:
        events += stream.push(audio[start:cut])
        start = cut
    return events + stream.finish()


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(0, 16000), max_size=8))
def test_streaming_gives_the_same_visemes_whatever_the_chunking(cuts):
    rng = np.random.default_rng(0)
    audio = np.concatenate([np.zeros(3000), tone(0.3, 220), np.zeros(5000),
                            0.2 * rng.standard_normal(4000)]).astype(np.float32)
    tokens = np.tile(np.arange(15), 4)
    whole = _events(VisemeStream(FileRecognizerFromList(tokens)), audio, [])
    chunked = _events(VisemeStream(FileRecognizerFromList(tokens)), audio, cuts)
    assert [e.to_json() for e in chunked] == [e.to_json() for e in whole]
    assert len(whole) == -(-len(audio) // 640)  # one event per (started) video frame


class FileRecognizerFromList(FileRecognizer):
    """The file recogniser's behaviour with tokens from memory."""

    def __init__(self, tokens):
        self.tokens = [int(t) for t in tokens]


def test_pause_rules_hold_relax_and_rest():
    frame = SAMPLE_RATE // 25
    # a quiet start (the noise floor is the quietest frame heard), then speech 10 frames, gap
    # 2 frames (held), speech 5, gap 15 (relax then rest)
    pattern = [(0, 5), (1, 10), (0, 2), (1, 5), (0, 15)]
    audio = np.concatenate([tone(n * frame / SAMPLE_RATE, 200) if loud
                            else np.zeros(n * frame, np.float32) for loud, n in pattern])
    stream = VisemeStream(FileRecognizerFromList([10] * 100), rules=PauseRules(
        hold_frames=3, rest_frames=10))
    events = stream.push(audio) + stream.finish()
    states = [e.state for e in events][5:]
    events = events[5:]
    assert states[:10] == ["speech"] * 10
    assert states[10:12] == ["hold", "hold"] and [e.token for e in events[10:12]] == [10, 10]
    assert states[12:17] == ["speech"] * 5
    assert set(states[20:27]) == {"relax"} and states[-1] == "rest"
    assert all(e.token == SIL for e in events[20:])


def test_frames_just_before_speech_are_decided_by_the_recogniser():
    """A quiet onset: up to lead_frames frames before speech take the recogniser's viseme
    (state lead), as far as its look-ahead reaches; earlier silence stays at rest."""
    frame = SAMPLE_RATE // 25
    audio = np.concatenate([np.zeros(8 * frame, np.float32), tone(10 * frame / SAMPLE_RATE, 200),
                            np.zeros(10 * frame, np.float32)])
    tokens = np.tile(np.arange(1, 15), 3)
    for lookahead, leading in ((2, 2), (1, 1), (0, 0)):
        recognizer = FileRecognizerFromList(tokens)
        recognizer.lookahead_frames = lookahead
        stream = VisemeStream(recognizer, rules=PauseRules(lead_frames=2))
        events = stream.push(audio) + stream.finish()
        states = [e.state for e in events]
        assert states[8 - leading:8] == ["lead"] * leading
        assert [e.token for e in events[8 - leading:8]] == list(tokens[8 - leading:8])
        before = events[:8 - leading]
        assert {e.state for e in before} == {"rest"} and {e.token for e in before} == {SIL}
        assert states[8:18] == ["speech"] * 10


def test_noise_and_breath_map_to_sil_not_to_visemes():
    rng = np.random.default_rng(1)
    quiet_noise = (0.002 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32)  # -54 dBFS
    stream = VisemeStream(FileRecognizerFromList([10] * 100))
    events = stream.push(quiet_noise) + stream.finish()
    assert {e.token for e in events} == {SIL}
    silent = VisemeStream(SilentRecognizer())
    assert {e.token for e in silent.push(tone(0.5, 300)) + silent.finish()} == {SIL}


def _reference(tmp_path: Path, tiny_dataset: Path) -> Path:
    frame = sorted((tiny_dataset / "clips").glob("*/frames/*.png"))[0]
    image = cv2.imread(str(frame))
    padded = cv2.copyMakeBorder(image, 40, 40, 90, 10, cv2.BORDER_CONSTANT, value=(30, 60, 90))
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), padded)  # another size and aspect than the bundle's
    return path


def _clip_wav(tiny_dataset: Path) -> Path:
    return sorted((tiny_dataset / "clips").glob("*/audio.wav"))[0]


@pytest.mark.parametrize("backend, precision", [("onnxruntime", "fp32"), ("tflite", "int8")])
def test_edge_run_renders_an_mp4_with_the_audio(tiny_bundle, tiny_dataset, tmp_path, backend,
                                                precision):
    wav = _clip_wav(tiny_dataset)
    out, jsonl, stats = tmp_path / "out.mp4", tmp_path / "v.jsonl", tmp_path / "stats.json"
    code = main(["--bundle", str(tiny_bundle), "--audio", str(wav), "--reference",
                 str(_reference(tmp_path, tiny_dataset)), "--sink", str(out), "--offline",
                 "--steps", "2", "--backend", backend, "--precision", precision,
                 "--emit-visemes", str(jsonl), "--stats", str(stats)])
    assert code == 0
    seconds = len(read_audio_file(wav)) / SAMPLE_RATE
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video)]
        assert container.streams.audio, "the input audio is muxed in"
        audio_s = float(container.streams.audio[0].duration * container.streams.audio[0]
                        .time_base)
    assert len(frames) == int(np.ceil(seconds * 25))
    assert frames[0].shape == (208, 228, 3)  # the photo's own framing (paste-back)
    assert abs(audio_s - seconds) < 0.1
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(lines) == len(frames)
    assert set(lines[0]) == {"frame", "t", "token", "name", "confidence", "state"}
    assert any(line["state"] == "speech" for line in lines)
    summary = json.loads(stats.read_text())
    assert summary["frames"] == len(frames) and summary["dropped"] == 0


def test_realtime_pace_accounts_for_every_frame(tiny_bundle, tiny_dataset, tmp_path):
    wav = write_wav(tmp_path / "short.wav", np.concatenate([tone(0.4, 200),
                                                            np.zeros(3200, np.float32)]))
    stats = tmp_path / "stats.json"
    code = main(["--bundle", str(tiny_bundle), "--audio", str(wav), "--reference",
                 str(_reference(tmp_path, tiny_dataset)), "--sink", "null", "--stats",
                 str(stats)])
    assert code == 0
    summary = json.loads(stats.read_text())
    assert summary["frames"] + summary["dropped"] == 15  # 0.6 s at 25 fps
    assert summary["wall_s"] >= 0.55  # paced by the audio, not as fast as possible


def test_viseme_only_run_writes_the_stream_to_stdout(tiny_bundle, tiny_dataset, capsys):
    code = main(["--bundle", str(tiny_bundle), "--audio", str(_clip_wav(tiny_dataset)),
                 "--offline", "--sink", "null", "--emit-visemes", "-", "--visemes", "model"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines and all(json.loads(line)["name"] for line in lines)


@pytest.mark.parametrize("case, expected", [
    ("missing audio", "audio file not found"),
    ("bad photo", "cannot read the reference image"),
    ("not a bundle", "not a bundle (no bundle.yaml)"),
    ("bad sink", "unknown sink 'out.avi'"),
    ("bad visemes file", "cannot read viseme tokens"),
])
def test_edge_run_errors_are_one_line(tiny_bundle, tiny_dataset, tmp_path, capsys, case,
                                      expected):
    args = {"--bundle": str(tiny_bundle), "--audio": str(_clip_wav(tiny_dataset)),
            "--reference": str(_reference(tmp_path, tiny_dataset)), "--sink": "null"}
    if case == "missing audio":
        args["--audio"] = str(tmp_path / "nope.wav")
    elif case == "bad photo":
        (tmp_path / "bad.png").write_bytes(b"not an image")
        args["--reference"] = str(tmp_path / "bad.png")
    elif case == "not a bundle":
        args["--bundle"] = str(tmp_path)
    elif case == "bad sink":
        args["--sink"] = "out.avi"
    elif case == "bad visemes file":
        (tmp_path / "v.jsonl").write_text("{not json\n")
        args["--visemes"] = f"file:{tmp_path / 'v.jsonl'}"
    code = main([x for kv in args.items() for x in kv] + ["--offline"])
    assert code == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines()
           if line.startswith("edge-run")]
    assert len(err) == 1 and expected in err[0]


def test_eval_visemes_compares_streaming_with_whole_utterance(tiny_bundle, tiny_dataset,
                                                               tmp_path):
    from training.data.manifest import read_manifest
    from training.eval.visemes import eval_recognizers

    report = eval_recognizers(tiny_bundle, read_manifest(tiny_dataset), tmp_path, clips=2)
    assert report["frames"] > 50
    for key in ("whole_utterance_accuracy", "streaming_accuracy", "none_accuracy"):
        assert 0 <= report[key] <= 1
    # 40 ms frame + the recogniser's look-ahead (8 mel frames = 2 video frames)
    assert report["sound_to_viseme_latency_ms"] == pytest.approx(120)
    assert json.loads((tmp_path / "visemes.json").read_text()) == report


@pytest.fixture(autouse=True)
def isolated_config(tmp_path, monkeypatch):
    """No system or user edge.yaml of this machine leaks into the tests."""
    import edge_runtime.service.settings as settings

    monkeypatch.setattr(settings, "SYSTEM_CONFIG", tmp_path / "etc" / "edge.yaml")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path


def test_settings_layer_system_user_explicit_and_flags(isolated_config, capsys):
    root = isolated_config
    (root / "etc").mkdir()
    (root / "etc" / "edge.yaml").write_text("threads: 3\nsteps: 4\nmode: hybrid\n")
    (root / "xdg" / "temposync").mkdir(parents=True)
    (root / "xdg" / "temposync" / "edge.yaml").write_text("steps: 8\nseed: 5\n")
    (root / "mine.yaml").write_text("seed: 6\n")
    code = main(["--config", str(root / "mine.yaml"), "--threads", "1", "--print-config"])
    assert code == 0
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert lines["threads"] == "1  # command line"
    assert lines["steps"] == f"8  # {root / 'xdg' / 'temposync' / 'edge.yaml'}"
    assert lines["mode"] == f"hybrid  # {root / 'etc' / 'edge.yaml'}"
    assert lines["seed"] == f"6  # {root / 'mine.yaml'}"
    assert lines["backend"] == "onnxruntime  # default"


def test_a_bad_setting_names_its_file_and_key(isolated_config, capsys, monkeypatch):
    import edge_runtime.service.settings as settings

    monkeypatch.setattr(settings, "SOURCE_TREE", isolated_config / "no-tree")  # no built-in
    monkeypatch.setattr(settings, "SERVICE_STATE", isolated_config / "no-state")  # bundle
    bad = isolated_config / "bad.yaml"
    bad.write_text("steps: 3\n")
    assert main(["--config", str(bad), "--print-config"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"edge-run: error: {bad}.steps: must be 1, 2, 4 or 8, got 3"]
    assert main(["--print-config", "--config", str(isolated_config / "missing.yaml")]) == 2
    assert main(["--audio", "x.wav"]) == 2
    assert "no bundle" in capsys.readouterr().err


def test_viseme_stream_goes_to_a_udp_port(tiny_bundle, tiny_dataset):
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(5)
        port = listener.getsockname()[1]
        wav = _clip_wav(tiny_dataset)
        code = main(["--bundle", str(tiny_bundle), "--audio", str(wav), "--offline", "--sink",
                     "null", "--emit-visemes", f"udp://127.0.0.1:{port}"])
        assert code == 0
        frames = int(np.ceil(len(read_audio_file(wav)) / (SAMPLE_RATE // 25)))
        events = [json.loads(listener.recv(1024)) for _ in range(frames)]
    assert [e["frame"] for e in events] == list(range(frames))


@pytest.mark.parametrize("steps", [1, 2, 4, 8])
def test_step_sampler_gives_the_unrolled_graphs_frame(tiny_bundle, steps):
    """K calls of the one-step graph with the schedule applied in numpy == generate_K."""
    from edge_runtime.bundle import load_bundle
    from edge_runtime.render.renderer import Renderer

    bundle, root = load_bundle(tiny_bundle)
    unrolled = Renderer(bundle, root, steps, threads=1)
    stepped = Renderer(bundle, root, steps, threads=1, sampler="step")
    photo = np.random.default_rng(1).integers(0, 255, (bundle.resolution,) * 2 + (3,), np.uint8)
    window = np.array([0, 3, 10, 10, 0], np.int32)[:2 * bundle.viseme_context + 1]
    for renderer in (unrolled, stepped):
        renderer.set_reference(photo)
    np.testing.assert_allclose(stepped.latent(window), unrolled.latent(window), atol=1e-4)


def test_autotune_measures_every_variant_and_writes_the_fastest(tiny_bundle, tmp_path, capsys):
    config = tmp_path / "edge.yaml"
    config.write_text(f"bundle: {tiny_bundle}\nsteps: 1\nvisemes: none\n")
    assert main(["--config", str(config), "--autotune"]) == 0
    table = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in table[1:-1]]
    assert {(r[0], r[1], r[3]) for r in rows} == {
        (b, p, s) for b in ("onnxruntime", "tflite") for p in ("fp32", "int8")
        for s in ("unrolled", "step")}
    medians = [float(r[4]) for r in rows]
    assert medians == sorted(medians)
    written = yaml.safe_load(config.read_text())
    assert written["visemes"] == "none" and written["steps"] == 1  # other keys kept
    assert [written[k] for k in ("backend", "precision", "threads", "sampler")] == \
        [rows[0][0], rows[0][1], int(rows[0][2]), rows[0][3]]


def test_a_long_stream_keeps_bounded_memory_and_the_same_visemes(tiny_bundle, monkeypatch):
    """60 s through the learned recogniser in 20 ms pushes: the stream forgets old log-mel
    frames (bounded memory and cost in a service) without changing a single decision."""
    import edge_runtime.visemes.stream as vs
    from edge_runtime.backends import open_graph
    from edge_runtime.bundle import load_bundle

    bundle, root = load_bundle(tiny_bundle)
    session = open_graph(bundle, root, "onnx-fp32", "visemes", 1)
    rng = np.random.default_rng(3)
    audio = np.concatenate([tone(rng.uniform(0.1, 0.6), rng.uniform(100, 900),
                                 level=rng.choice([0.0, 0.3])) for _ in range(170)])
    audio = audio[:60 * SAMPLE_RATE]

    def run() -> tuple[list[str], int]:
        stream = VisemeStream(vs.LearnedRecognizer(session, bundle.recognizer, bundle.audio))
        events, longest = [], 0
        for start in range(0, len(audio), 320):
            events += stream.push(audio[start:start + 320])
            longest = max(longest, len(stream._mel))
        return [e.to_json() for e in events + stream.finish()], longest

    trimmed, longest = run()
    monkeypatch.setattr(vs, "HISTORY_MEL", 10**9)
    kept, everything = run()
    assert trimmed == kept
    assert longest <= 2 * 256 + 40 < everything


def test_pocketsphinx_recognises_real_speech_and_rests_in_silence(tiny_dataset, tmp_path):
    """pocketsphinx on the dataset's (espeak-ng) speech, streaming through the device's
    VisemeStream: far better than all-sil, silence at rest, 160 ms sound-to-viseme."""
    from edge_runtime.visemes.sphinx import PocketsphinxRecognizer
    from training.data.manifest import read_manifest
    from training.data.media import read_wav

    manifest = read_manifest(tiny_dataset)
    hits = total = 0
    for clip in manifest.clips[:4]:
        truth = np.load(manifest.resolve(clip.visemes)).astype(int)
        audio, _ = read_wav(manifest.resolve(clip.audio))
        stream = VisemeStream(PocketsphinxRecognizer(25, 3))
        events = []
        for start in range(0, len(audio), 320):
            events += stream.push(audio[start:start + 320])
        events += stream.finish()
        assert stream.latency_s == pytest.approx(0.16)
        tokens = np.array([e.token for e in events])[:len(truth)]
        hits += int((tokens == truth[:len(tokens)]).sum())
        total += len(tokens)
        assert events[0].token == SIL and events[-1].token == SIL  # leading/trailing silence
    sil_share = np.mean(np.concatenate([np.load(manifest.resolve(c.visemes))
                                        for c in manifest.clips[:4]]) == SIL)
    assert hits / total > sil_share + 0.05  # all-sil scores exactly sil_share


def test_pocketsphinx_finishes_after_the_pause_that_ended_its_utterance(tiny_dataset):
    """A pause (or MAX_UTTERANCE_S) ends the decoder's utterance and starts an empty one;
    finishing right then (the whole-utterance decode of a recording that ends on a pause, or
    of one longer than MAX_UTTERANCE_S) keeps what was heard and raises nothing."""
    from edge_runtime.visemes.sphinx import PAUSE_S, PocketsphinxRecognizer
    from training.data.manifest import read_manifest
    from training.data.media import read_wav

    manifest = read_manifest(tiny_dataset)
    audio, _ = read_wav(manifest.resolve(manifest.clips[0].audio))
    recognizer = PocketsphinxRecognizer(25, 3)
    recognizer.feed(audio)
    recognizer.feed(np.zeros(int(PAUSE_S * 16000), np.float32))
    recognizer.finish()
    tokens = [recognizer.decide(None, f)[0] for f in range(len(audio) * 25 // 16000)]
    assert len(set(tokens) - {SIL}) >= 3


def test_edge_run_with_pocketsphinx_emits_visemes(tiny_bundle, tiny_dataset, capsys):
    code = main(["--bundle", str(tiny_bundle), "--audio", str(_clip_wav(tiny_dataset)),
                 "--offline", "--sink", "null", "--emit-visemes", "-", "--visemes",
                 "pocketsphinx:2"])
    assert code == 0
    names = {json.loads(line)["name"] for line in capsys.readouterr().out.splitlines()}
    assert "sil" in names and len(names) >= 5


def test_built_in_defaults_are_the_demo_bundle_and_the_example_face(tiny_bundle, tiny_dataset,
                                                                    tmp_path, monkeypatch):
    """edge-run with no bundle and no reference uses the source tree's demo bundle and
    example face (here a stand-in tree); full mode's default sink is the live page."""
    import shutil

    import edge_runtime.service.settings as settings

    tree = tmp_path / "tree"
    shutil.copytree(tiny_bundle, tree / "bundles" / "demo")
    (tree / "examples").mkdir()
    shutil.copy(_reference(tmp_path, tiny_dataset), tree / "examples" / "face.png")
    monkeypatch.setattr(settings, "SOURCE_TREE", tree)
    monkeypatch.setattr(settings, "SERVICE_STATE", tmp_path / "nothing")
    assert settings.EdgeSettings(mode="full").resolved_sink == "http://127.0.0.1:8090"
    frames = tmp_path / "frames"
    code = main(["--mode", "full", "--steps", "2", "--audio", str(_clip_wav(tiny_dataset)),
                 "--offline", "--sink", f"png:{frames}"])
    assert code == 0 and len(list(frames.glob("frame_*.png"))) > 20
    monkeypatch.setattr(settings, "SOURCE_TREE", tmp_path / "empty")
    assert main(["--mode", "full", "--audio", str(_clip_wav(tiny_dataset))]) == 2
