"""The synthetic talking-face generator: determinism, splits, mouth shapes, ground truth."""

from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest

from edge_runtime.visemes.vocabulary import NUM_VISEMES, SIL, VISEMES, viseme_id
from training.config import SynthConfig
from training.data import face
from training.data.alignment import Segment
from training.data.face import FrameState, render_background, render_frame, sample_scene
from training.data.flow import optical_flow, upsample_flow, warp
from training.data.manifest import read_manifest
from training.data.media import SAMPLE_RATE, read_wav
from training.data.mouth import MOUTH_PARAMS, TARGETS, mouth_track
from training.data.synth import ClipJob, assign_splits, generate_clip, identity_of, mouth_box

SIZE = 128
NEUTRAL_POSE = np.array([0.0, 0.0, 0.0, 1.0])


def render(ident, viseme: int, pose=NEUTRAL_POSE) -> np.ndarray:
    state = FrameState(mouth=TARGETS[viseme], blink=0.0, gaze=(0.0, 0.0), pose=pose,
                       light=(1.0, 0.0, 0.0))
    scene = sample_scene(np.random.default_rng(0))
    return render_frame(ident, scene, state, render_background(scene, SIZE * face.SUPERSAMPLE),
                        SIZE)


def visible_area(monkeypatch, ident, viseme: int, part: str, pose=NEUTRAL_POSE) -> np.ndarray:
    """Mask of pixels showing ``part`` (CAVITY, TEETH or TONGUE): re-render with it recoloured."""
    base = render(ident, viseme, pose).astype(int)
    with monkeypatch.context() as m:
        m.setattr(face, part, (0, 255, 0) if getattr(face, part) != (0, 255, 0) else (255, 0, 0))
        swapped = render(ident, viseme, pose).astype(int)
    return np.abs(base - swapped).sum(axis=-1) > 30


def lip_width(ident, viseme: int) -> int:
    base = render(ident, viseme).astype(int)
    swapped = render(dataclasses.replace(ident, lip=(0.0, 255.0, 0.0)), viseme).astype(int)
    columns = np.flatnonzero((np.abs(base - swapped).sum(axis=-1) > 30).any(axis=0))
    return int(columns[-1] - columns[0] + 1)


@pytest.fixture(scope="module")
def identities():
    config = SynthConfig(seed=3)
    return [identity_of(config, i)[0] for i in range(6)]


def test_mouth_opening_area_differs_per_viseme(monkeypatch, identities):
    area = {v: np.mean([visible_area(monkeypatch, ident, viseme_id(v), "CAVITY").sum()
                        for ident in identities]) for v in VISEMES}
    assert area["sil"] == 0 and area["PP"] == 0  # lips closed
    assert area["aa"] > area["E"] > area["I"] > 0
    assert area["aa"] > area["O"] > area["U"]
    assert area["aa"] > 3 * area["FF"]
    assert area["kk"] > area["SS"]


def test_teeth_tongue_and_lips_make_the_consonants_visible(monkeypatch, identities):
    def mean(viseme, part):
        return np.mean([visible_area(monkeypatch, i, viseme_id(viseme), part).sum()
                        for i in identities])

    assert mean("PP", "TEETH") == 0 and mean("sil", "TEETH") == 0
    assert mean("FF", "TEETH") > 10  # upper teeth on the lower lip
    assert mean("SS", "TEETH") > 5
    # the tongue tip shows between the teeth, more than in open vowels
    assert mean("TH", "TONGUE") > 1.5 * max(mean("I", "TONGUE"), mean("E", "TONGUE"))
    widths = {v: np.mean([lip_width(i, viseme_id(v)) for i in identities]) for v in ("I", "U")}
    assert widths["I"] > 1.3 * widths["U"]  # spread vs rounded


def test_every_viseme_renders_differently_from_rest(identities):
    for ident in identities[:3]:
        state = FrameState(mouth=TARGETS[SIL], blink=0.0, gaze=(0, 0), pose=NEUTRAL_POSE,
                           light=(1.0, 0.0, 0.0))
        x0, y0, x1, y1 = mouth_box(ident, state, SIZE).round().astype(int)
        rest = render(ident, SIL).astype(float)[y0:y1, x0:x1]
        for v in range(1, NUM_VISEMES):
            diff = np.abs(render(ident, v).astype(float)[y0:y1, x0:x1] - rest).sum(axis=-1)
            assert (diff > 60).sum() >= 12, VISEMES[v]  # a dozen clearly changed pixels


def test_coarticulation_is_smooth_and_bilabials_close():
    pp, aa = viseme_id("PP"), viseme_id("aa")
    phones = [Segment("a", 0.2, 0.35, aa), Segment("p", 0.35, 0.42, pp),
              Segment("a", 0.42, 0.6, aa)]
    t = np.arange(0, 1.0, 0.004)
    track = mouth_track(phones, t)
    closure = track[:, MOUTH_PARAMS.index("closure")]
    opening = track[:, MOUTH_PARAMS.index("open")]
    assert closure[np.searchsorted(t, 0.385)] > 0.7
    assert opening[np.searchsorted(t, 0.27)] > 0.6
    assert np.abs(np.diff(track, axis=0)).max() < 0.1  # no jumps at 4 ms resolution
    rest = TARGETS[SIL][MOUTH_PARAMS.index("closure")]
    assert opening[-1] < 0.01 and abs(closure[-1] - rest) < 0.01  # rests closed after speech


def test_mouth_box_follows_head_pose(monkeypatch, identities):
    ident = identities[1]
    for pose in (np.array([0.03, -0.02, 6.0, 1.03]), np.array([-0.03, 0.02, -5.0, 0.97])):
        cavity = visible_area(monkeypatch, ident, viseme_id("aa"), "CAVITY", pose)
        ys, xs = np.nonzero(cavity)
        state = FrameState(mouth=TARGETS[viseme_id("aa")], blink=0.0, gaze=(0, 0), pose=pose,
                           light=(1.0, 0.0, 0.0))
        x0, y0, x1, y1 = mouth_box(ident, state, SIZE)
        assert x0 <= xs.min() and xs.max() <= x1 and y0 <= ys.min() and ys.max() <= y1
        assert (x1 - x0) < 0.45 * SIZE


def test_generation_is_deterministic_given_the_seed(tmp_path, tiny_config):
    a = generate_clip(ClipJob(tiny_config, 1, 0, "train", tmp_path / "a"))
    b = generate_clip(ClipJob(tiny_config, 1, 0, "train", tmp_path / "b"))
    other = dataclasses.replace(tiny_config, seed=tiny_config.seed + 1)
    c = generate_clip(ClipJob(other, 1, 0, "train", tmp_path / "c"))
    assert a == b
    for name in ("audio.wav", "visemes.npy", "mouth_params.npy", "head_pose.npy", "flow.npy",
                 "frames/000010.png"):
        assert (tmp_path / "a" / "clips" / a.id / name).read_bytes() == \
               (tmp_path / "b" / "clips" / b.id / name).read_bytes(), name
    assert (tmp_path / "a" / "clips" / a.id / "frames/000010.png").read_bytes() != \
           (tmp_path / "c" / "clips" / c.id / "frames/000010.png").read_bytes()


def test_clips_do_not_depend_on_the_worker_that_made_them(tiny_dataset, tiny_config, tmp_path):
    """tiny_dataset was made by 2 worker processes in completion order; one clip redone alone
    in this process must come out byte for byte the same."""
    record = generate_clip(ClipJob(tiny_config, 3, 1, "train", tmp_path))
    for name in ("audio.wav", "visemes.npy", "frames/000007.png"):
        assert (tmp_path / "clips" / record.id / name).read_bytes() == \
               (tiny_dataset / "clips" / record.id / name).read_bytes(), name


def test_identities_are_distinct():
    config = SynthConfig()
    idents = [identity_of(config, i)[0] for i in range(24)]
    assert len({(i.skin, i.hair_style, i.hair, i.eye_spacing) for i in idents}) == 24
    assert len({i.hair_style for i in idents}) >= 4 and len({i.glasses for i in idents}) >= 2
    assert len({identity_of(config, i)[1].variant for i in range(24)}) >= 8


def test_scene_changes_between_clips_of_one_identity(tiny_dataset):
    """Clothes and background vary per clip, so identity cannot be read off the scene."""
    from training.data.media import read_frame

    manifest = read_manifest(tiny_dataset)
    by_speaker: dict[str, list] = {}
    for clip in manifest.clips:
        by_speaker.setdefault(clip.speaker, []).append(clip)
    for clips in by_speaker.values():
        corners = [read_frame(manifest.resolve(c.frames), 0)[:12, :12].astype(float).mean((0, 1))
                   for c in clips[:2]]
        assert np.abs(corners[0] - corners[1]).max() > 3


def test_splits_partition_identities(tiny_dataset, tiny_config):
    manifest = read_manifest(tiny_dataset)
    speakers = {s: {c.speaker for c in manifest.split(s)} for s in ("train", "val", "test")}
    assert all(speakers.values())
    assert not (speakers["train"] & speakers["val"] or speakers["train"] & speakers["test"]
                or speakers["val"] & speakers["test"])
    assert len(manifest.clips) == tiny_config.identities * tiny_config.clips_per_identity
    big = dataclasses.replace(tiny_config, identities=50)
    counts = {s: assign_splits(big).count(s) for s in ("train", "val", "test")}
    assert counts == {"train": 40, "val": 5, "test": 5}


def test_clip_ground_truth_is_consistent(tiny_dataset):
    manifest = read_manifest(tiny_dataset, expected_fps=25)
    seen = set()
    for clip in manifest.clips:
        visemes = np.load(manifest.resolve(clip.visemes))
        audio, rate = read_wav(manifest.resolve(clip.audio))
        alignment = json.loads(manifest.resolve(clip.alignment).read_text())
        assert rate == SAMPLE_RATE and len(audio) == clip.frame_count * SAMPLE_RATE // 25
        first_word = alignment["words"][0]["start"]
        assert (visemes[: int(first_word * 25) - 1] == SIL).all()  # lead silence is sil
        speech = audio[int(first_word * SAMPLE_RATE):]
        lead = audio[: int(first_word * SAMPLE_RATE) - 800]
        assert np.sqrt((speech ** 2).mean()) > 10 * np.sqrt((lead ** 2).mean())
        params = np.load(manifest.resolve(clip.mouth_params))
        assert params.shape == (clip.frame_count, len(MOUTH_PARAMS))
        seen.update(visemes.tolist())
    assert len(seen) >= 12


def test_dataset_mouth_opening_tracks_visemes(tiny_dataset):
    manifest = read_manifest(tiny_dataset)
    opening = {v: [] for v in range(NUM_VISEMES)}
    for clip in manifest.clips:
        visemes = np.load(manifest.resolve(clip.visemes))
        params = np.load(manifest.resolve(clip.mouth_params))
        gap = params[:, MOUTH_PARAMS.index("open")] * (1 - params[:, MOUTH_PARAMS.index("closure")])
        for v, g in zip(visemes, gap):
            opening[int(v)].append(g)
    mean = {VISEMES[v]: np.mean(g) for v, g in opening.items() if g}
    assert mean["aa"] > 2 * mean["PP"] and mean["aa"] > 3 * mean["sil"]


def textured(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (32, 32, 3)).astype(np.uint8)
    return cv2.resize(noise, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)


@pytest.mark.parametrize("stride", [1, 2])
def test_flow_recovers_a_known_shift(stride):
    image = textured()
    shift = np.float32([[1, 0, 2.0], [0, 1, -1.0]])  # content moves +2 px right, 1 px up
    moved = cv2.warpAffine(image, shift, (SIZE, SIZE), borderMode=cv2.BORDER_REFLECT)
    flow = optical_flow(np.stack([image, moved]), stride)
    assert flow.shape == (1, SIZE // stride, SIZE // stride, 2) and flow.dtype == np.float16
    inner = flow[0, 8 // stride:-8 // stride, 8 // stride:-8 // stride].astype(np.float32)
    assert np.allclose(np.median(inner.reshape(-1, 2), axis=0), [2.0, -1.0], atol=0.25)
    full = upsample_flow(flow[0], stride)
    err_warped = np.abs(warp(moved, full).astype(float) - image)[10:-10, 10:-10].mean()
    err_still = np.abs(moved.astype(float) - image)[10:-10, 10:-10].mean()
    assert err_warped < 0.3 * err_still


def test_dataset_flow_has_the_clip_shape(tiny_dataset):
    manifest = read_manifest(tiny_dataset)
    for clip in manifest.clips:
        flow = np.load(manifest.resolve(clip.flow))
        side = clip.size // clip.flow_stride
        assert flow.shape == (clip.frame_count - 1, side, side, 2)
        assert np.isfinite(flow.astype(np.float32)).all()


@pytest.mark.parametrize("split", ["train", "test"])
def test_clips_have_held_frames_where_only_the_mouth_moves(tiny_dataset, split):
    """The held render keeps the last frame's pose, gaze, blink and light: it ends on the
    recorded last frame, is still outside the mouth boxes and moves inside them like the
    recorded clip, whose head and light move everywhere; its boxes and flow are its own."""
    from training.data.media import read_frames

    manifest = read_manifest(tiny_dataset)
    clip = manifest.split(split)[0]
    recorded = read_frames(manifest.resolve(clip.frames), 0, clip.frame_count).astype(float)
    held = read_frames(manifest.resolve(clip.held_frames), 0, clip.frame_count).astype(float)
    assert np.array_equal(held[-1], recorded[-1])
    outside = np.ones(held.shape[1:3], bool)
    for x0, y0, x1, y1 in np.load(manifest.resolve(clip.mouth_boxes)).round().astype(int):
        outside[max(y0, 0):y1, max(x0, 0):x1] = False
    def change(frames: np.ndarray, where: np.ndarray) -> float:
        return float(np.abs(np.diff(frames, axis=0))[:, where].mean())
    assert change(held, outside) < 0.02 < change(recorded, outside)
    assert change(held, ~outside) > 0.1
    boxes = np.load(manifest.resolve(clip.mouth_boxes))
    held_boxes = np.load(manifest.resolve(clip.held_mouth_boxes))
    assert np.allclose(held_boxes[-1], boxes[-1])
    def sway(b: np.ndarray) -> float:  # how far the box centre moves across the face
        return float(np.ptp(b[:, 0] + b[:, 2]))
    assert sway(held_boxes) < 0.25 * sway(boxes)
    held_flow = np.load(manifest.resolve(clip.held_flow)).astype(np.float32)
    flow = np.load(manifest.resolve(clip.flow)).astype(np.float32)
    assert held_flow.shape == flow.shape
    assert np.abs(held_flow).mean() < 0.6 * np.abs(flow).mean()


@pytest.mark.parametrize("fields", [("held_frames", "held_mouth_boxes", "held_flow"),
                                    ("held_mouth_boxes", "held_flow")])
def test_a_clip_from_before_its_held_render_is_rendered_again_the_same(tiny_config, tmp_path,
                                                                          fields):
    """Folders written when only test clips had held frames, or none had."""
    job = ClipJob(tiny_config, 2, 0, "train", tmp_path)
    record = generate_clip(job)
    folder = tmp_path / "clips" / record.id
    first = (folder / "frames/000005.png").read_bytes()
    old = record.to_dict()
    for field in fields:
        del old[field]
    (folder / "record.json").write_text(json.dumps(old))
    assert generate_clip(job) == record
    assert (folder / "held_frames/000005.png").is_file()
    assert (folder / "frames/000005.png").read_bytes() == first


def test_a_set_numbered_after_another_has_new_faces_and_merges_with_it(tiny_dataset, tiny_config,
                                                                       tmp_path):
    from training.cli import main
    from training.data.synth import generate

    second = dataclasses.replace(tiny_config, first_identity=tiny_config.identities,
                                 identities=3, clips_per_identity=1, flow=False)
    records, _ = generate(second, tmp_path / "second")
    first = read_manifest(tiny_dataset)
    assert sorted({r.speaker for r in records}) == ["id0006", "id0007", "id0008"]
    assert {r.split for r in records} == {"train", "val", "test"}
    old = {identity_of(tiny_config, i)[0] for i in range(tiny_config.identities)}
    assert not old & {identity_of(second, i)[0] for i in range(6, 9)}
    out = tmp_path / "merged"
    assert main(["data", "merge", str(tiny_dataset), str(tmp_path / "second"), "--out",
                 str(out)]) == 0
    assert len(read_manifest(out).clips) == len(first.clips) + 3
