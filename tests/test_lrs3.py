"""LRS3 preprocessing on a fixture in LRS3's exact layout, written from synthetic clips."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.lrs3_fixture import lrs3_transcript, write_lrs3_tree
from training.config import Lrs3Config
from training.data.alignment import Segment
from training.data.lrs3 import Lrs3Error, discover, parse_transcript, preprocess, split_of
from training.data.manifest import read_manifest
from training.data.media import read_wav

NO_TIMES = "id0002_c001"


@pytest.fixture(scope="module")
def lrs3_root(tiny_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("lrs3")
    mapping = write_lrs3_tree(read_manifest(tiny_dataset), root, without_times={NO_TIMES})
    return root, mapping


@pytest.fixture(scope="module")
def processed(lrs3_root, tmp_path_factory):
    root, mapping = lrs3_root
    out = tmp_path_factory.mktemp("lrs3-out")
    records = preprocess(root, out, Lrs3Config(workers=2, val_fraction=0.3))
    return out, records, mapping


def test_fixture_has_lrs3_layout(lrs3_root):
    root, mapping = lrs3_root
    clips = discover(root)
    assert {c.split_dir for c in clips} == {"trainval", "test"}
    txt = clips[0].mp4.with_suffix(".txt").read_text().splitlines()
    assert txt[0].startswith("Text:  ") and txt[1] == "Conf:  3" and txt[2] == ""
    assert txt[3] == "WORD START END ASDSCORE"
    assert len(clips) == len(mapping) == 12


def test_round_trip_manifest_is_valid(processed, tiny_dataset):
    out, records, mapping = processed
    manifest = read_manifest(out, expected_fps=25)
    source = {c.id: c for c in read_manifest(tiny_dataset).clips}
    assert len(manifest.clips) == 12
    for clip in manifest.clips:
        original = source[mapping[clip.id]]
        assert abs(clip.frame_count - original.frame_count) <= 1
        assert clip.size == 128 and clip.flow_stride == 2
        assert clip.speaker == f"talk{original.speaker}"
    tests = {c.speaker for c in manifest.split("test")}
    assert tests == {f"talk{c.speaker}" for c in source.values() if c.split == "test"}
    assert not tests & {c.speaker for c in manifest.split("train") + manifest.split("val")}


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    return float((a[:n] == b[:n]).mean())


def test_visemes_from_word_times_and_from_alignment_match_ground_truth(processed, tiny_dataset):
    out, _, mapping = processed
    manifest = read_manifest(out)
    source = read_manifest(tiny_dataset)
    truth = {c.id: np.load(source.resolve(c.visemes)) for c in source.clips}
    with_times, aligned = [], []
    for clip in manifest.clips:
        got = np.load(manifest.resolve(clip.visemes))
        score = agreement(got, truth[mapping[clip.id]])
        (aligned if mapping[clip.id] == NO_TIMES else with_times).append(score)
        assert ((got == 0) == (truth[mapping[clip.id]] == 0)).mean() > 0.8  # speech vs silence
    # CMUdict phones placed in espeak-ng word spans vs espeak-ng's own phones: different
    # phone inventories and boundaries, so agreement is well below 1, far above chance (~0.1).
    assert np.mean(with_times) > 0.55
    assert aligned[0] > 0.45


def test_audio_survives_the_mp4_round_trip(processed, tiny_dataset):
    out, _, mapping = processed
    manifest, source = read_manifest(out), read_manifest(tiny_dataset)
    by_id = {c.id: c for c in source.clips}
    clip = manifest.clips[0]
    got, _ = read_wav(manifest.resolve(clip.audio))
    want, _ = read_wav(source.resolve(by_id[mapping[clip.id]].audio))
    n = min(len(got), len(want))
    corr = np.corrcoef(got[:n], want[:n])[0, 1]
    assert corr > 0.9


def test_face_crop_keeps_the_face_centred(processed):
    out, _, _ = processed
    manifest = read_manifest(out)
    from training.data.media import read_frame

    frame = read_frame(manifest.resolve(manifest.clips[0].frames), 10).astype(float)
    # the background is at the borders; the face (skin) fills the centre of the crop
    centre = frame[40:90, 40:90].std()
    assert frame.shape == (128, 128, 3) and centre > 5


def test_rerun_resumes_without_redoing_clips(lrs3_root, processed):
    root, _ = lrs3_root
    out, records, _ = processed
    stamp = {p: p.stat().st_mtime_ns for p in out.glob("clips/*/visemes.npy")}
    again = preprocess(root, out, Lrs3Config(workers=1, val_fraction=0.3))
    assert sorted(r.id for r in again) == sorted(r.id for r in records)
    assert stamp == {p: p.stat().st_mtime_ns for p in out.glob("clips/*/visemes.npy")}


def test_transcript_parser(tmp_path):
    path = tmp_path / "00001.txt"
    path.write_text(lrs3_transcript([{"label": "hello", "start": 0.1, "end": 0.4},
                                     {"label": "world", "start": 0.45, "end": 0.9}]))
    transcript = parse_transcript(path)
    assert transcript.text == "HELLO WORLD" and transcript.conf == "3"
    assert transcript.words == [Segment("HELLO", 0.1, 0.4), Segment("WORLD", 0.45, 0.9)]
    path.write_text(lrs3_transcript([{"label": "hello", "start": 0, "end": 1}], with_times=False))
    assert parse_transcript(path).words == []
    path.write_text("Text:  HI\nConf:  2\n\nWORD START END ASDSCORE\nHI zero 0.5 1.0\n")
    with pytest.raises(Lrs3Error, match=r"00001.txt:5: word row"):
        parse_transcript(path)
    path.write_text("Conf:  2\n")
    with pytest.raises(Lrs3Error, match="missing 'Text:'"):
        parse_transcript(path)


def test_val_split_is_a_stable_share_of_talks():
    from training.data.lrs3 import Lrs3Clip

    clips = [Lrs3Clip("trainval", f"talk{i}", "00001", Path("x.mp4")) for i in range(400)]
    splits = [split_of(c, 0.1) for c in clips]
    assert 20 < splits.count("val") < 60
    assert splits == [split_of(c, 0.1) for c in clips]
    assert split_of(Lrs3Clip("test", "t", "1", Path("x")), 0.9) == "test"


def test_cli_missing_root_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "training.cli", "data", "lrs3", "--root",
                             str(tmp_path / "nope"), "--out", str(tmp_path / "o")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "LRS3 root folder does not exist" in result.stderr


def test_landmark_aligned_crops_put_the_face_on_the_template(processed):
    """tsd data lrs3 aligns faces as the device aligns reference photos: the landmarks of a
    processed frame, found again, sit on the canonical template."""
    from edge_runtime.face.align import CANONICAL, face_points
    from training.data.landmarks import landmarker_from_cache
    from training.data.media import read_frame

    out, _, _ = processed
    manifest = read_manifest(out)
    landmarker = landmarker_from_cache()
    for clip in manifest.clips[::3]:
        frame = read_frame(manifest.resolve(clip.frames), clip.frame_count // 2)
        big = cv2.resize(frame, (256, 256), interpolation=cv2.INTER_CUBIC)
        faces = landmarker.faces(big)
        assert faces, clip.id
        assert np.abs(face_points(faces[0]) / 256 - np.asarray(CANONICAL)).max() < 0.04, clip.id
