"""The training dataset: windows, references, cross-identity replacement, workers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from training.config import WindowConfig
from training.data.dataset import TalkingFaceDataset, to_tensor_image, viseme_windows
from training.data.manifest import read_manifest


def test_viseme_windows_pad_with_sil():
    windows = viseme_windows(np.array([3, 4, 5, 6]), 2)
    assert windows.shape == (4, 5)
    assert windows[0].tolist() == [0, 0, 3, 4, 5]
    assert windows[3].tolist() == [4, 5, 6, 0, 0]
    assert windows[:, 2].tolist() == [3, 4, 5, 6]


def test_item_shapes_and_alignment(tiny_dataset):
    manifest = read_manifest(tiny_dataset)
    config = WindowConfig(frames=4, viseme_context=2, p_cross=0.0)
    ds = TalkingFaceDataset(manifest, "train", config, seed=1)
    item = ds[0]
    assert item["frames"].shape == (4, 3, 128, 128) and item["frames"].dtype == torch.float32
    assert -1.0 <= item["frames"].min() and item["frames"].max() <= 1.0
    assert item["reference"].shape == (3, 128, 128)
    assert item["visemes"].shape == (4, 5) and item["visemes"].dtype == torch.int64
    assert item["flow"].shape == (3, 2, 128, 128)
    assert item["mouth_boxes"].shape == (4, 4) and item["audio"].shape == (4 * 640,)
    clip, start = ds.clips[int(item["clip"])], int(item["start"])
    visemes = np.load(manifest.resolve(clip.visemes))
    assert item["visemes"][:, 2].tolist() == visemes[start:start + 4].tolist()
    assert not item["ref_cross"] and item["identity"] == item["ref_identity"]
    assert not item["real_texture"] and clip.texture == "synthetic"
    assert len(ds) == len(manifest.split("train"))


def test_cross_identity_replacement_statistics(tiny_dataset):
    manifest = read_manifest(tiny_dataset)
    p = 0.3
    ds = TalkingFaceDataset(manifest, "train", WindowConfig(frames=2, p_cross=p, with_flow=False),
                            seed=5, items_per_clip=60)
    cross = []
    for i in range(len(ds)):
        item = ds[i]
        cross.append(bool(item["ref_cross"]))
        if item["ref_cross"]:
            assert item["ref_identity"] != item["identity"]  # a *different* identity (eq 12)
        else:
            assert item["ref_identity"] == item["identity"]
    n = len(cross)
    rate = np.mean(cross)
    assert abs(rate - p) < 4 * np.sqrt(p * (1 - p) / n), (rate, n)


def test_reference_comes_from_the_same_clip_when_not_replaced(tiny_dataset):
    manifest = read_manifest(tiny_dataset)
    ds = TalkingFaceDataset(manifest, "train", WindowConfig(frames=2, p_cross=0.0,
                                                            with_flow=False), seed=2)
    from training.data.media import read_frames

    item = ds[3]
    clip = ds.clips[int(item["clip"])]
    frames = read_frames(manifest.resolve(clip.frames))
    reference = ((item["reference"].permute(1, 2, 0) + 1) * 127.5).round().numpy()
    assert np.abs(frames.astype(float) - reference[None]).reshape(len(frames), -1).max(1).min() < 1


def test_epochs_differ_and_items_are_reproducible(tiny_dataset):
    manifest = read_manifest(tiny_dataset)
    ds = TalkingFaceDataset(manifest, "train", WindowConfig(frames=2, with_flow=False), seed=9,
                            items_per_clip=4)
    n = len(ds)
    starts = [int(ds[i]["start"]) for i in range(n)]
    assert starts == [int(ds[i]["start"]) for i in range(n)]
    next_epoch = [ds[n + i] for i in range(n)]
    assert [int(x["clip"]) for x in next_epoch] == [int(ds[i]["clip"]) for i in range(n)]
    assert starts != [int(x["start"]) for x in next_epoch]


def test_workers_give_the_same_batches(tiny_dataset):
    manifest = read_manifest(tiny_dataset)
    ds = TalkingFaceDataset(manifest, "train", WindowConfig(frames=3), seed=4)
    single = list(DataLoader(ds, batch_size=4, num_workers=0))
    multi = list(DataLoader(ds, batch_size=4, num_workers=2))
    assert len(single) == len(multi) == 2
    for a, b in zip(single, multi):
        assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["flow"], b["flow"])
        assert torch.equal(a["visemes"], b["visemes"])
        assert torch.equal(a["reference"], b["reference"])


def test_too_short_clips_raise(tiny_dataset):
    manifest = read_manifest(tiny_dataset)
    with pytest.raises(ValueError, match="no clips of split 'val' with >= 1000 frames"):
        TalkingFaceDataset(manifest, "val", WindowConfig(frames=1000))


def test_missing_flow_is_reported_when_the_window_needs_it(tmp_path, tiny_config):
    from training.data.synth import generate
    from training.errors import UserError

    generate(dataclasses.replace(tiny_config, identities=3, clips_per_identity=1, flow=False,
                                 workers=1), tmp_path)
    manifest = read_manifest(tmp_path)
    with pytest.raises(UserError, match="has no optical flow"):
        TalkingFaceDataset(manifest, "train", WindowConfig(frames=2, with_flow=True))
    TalkingFaceDataset(manifest, "train", WindowConfig(frames=2, with_flow=False))


def test_held_targets_are_the_held_render_with_the_last_frame_as_reference(tiny_dataset):
    """window.target held: frames, boxes and flow of the held render, and the frame it is
    held at as the reference."""
    from training.data.media import read_frame, read_frames

    manifest = read_manifest(tiny_dataset)
    config = WindowConfig(frames=3, p_cross=0.0, target="held")
    item = TalkingFaceDataset(manifest, "train", config, seed=3)[2]
    clip, start = manifest.split("train")[2], int(item["start"])

    held = read_frames(manifest.resolve(clip.held_frames), start, 3)
    assert torch.allclose(item["frames"], to_tensor_image(held))
    last = read_frame(manifest.resolve(clip.frames), clip.frame_count - 1)
    assert torch.allclose(item["reference"], to_tensor_image(last))
    boxes = np.load(manifest.resolve(clip.held_mouth_boxes))[start:start + 3]
    assert np.array_equal(item["mouth_boxes"].numpy(), boxes)
    recorded = TalkingFaceDataset(manifest, "train", dataclasses.replace(config,
                                                                         target="recorded"),
                                  seed=3)[2]
    assert int(recorded["start"]) == start
    assert not torch.equal(recorded["frames"], item["frames"])
    assert not torch.equal(recorded["flow"], item["flow"])


def test_held_targets_without_a_held_render_are_one_error(tiny_dataset, tmp_path):
    """An LRS3-like manifest (no held render) with target held: one line naming the clip."""
    import json
    import shutil

    from training.errors import UserError

    shutil.copytree(tiny_dataset, tmp_path / "data")
    path = tmp_path / "data" / "manifest.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        row.pop("held_mouth_boxes")
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    first = next(r["id"] for r in rows if r["split"] == "train")
    with pytest.raises(UserError, match=f"clip {first} .*has no held render") as error:
        TalkingFaceDataset(read_manifest(tmp_path / "data"), "train",
                           WindowConfig(frames=2, target="held"))
    assert "\n" not in str(error.value)
