"""The committed demo bundle (bundles/demo): it loads (schema, checksums, shapes), the
runtime reproduces the quality its report states on regenerated held-out clips, the mouth it
renders follows the speech, and its default viseme path meets the real-speech bars."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_runtime.bundle import VARIANTS, load_bundle
from edge_runtime.render.renderer import Renderer
from training.config import SynthConfig, load_config

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "bundles" / "demo"
DEMO_DATA = REPO / "configs" / "data" / "synth-demo.yaml"


def test_the_demo_bundle_loads_with_every_variant_and_checksum():
    bundle, root = load_bundle(DEMO)  # verifies every graph's sha256 and I/O
    assert set(bundle.variants) == set(VARIANTS)
    assert bundle.recognizer is not None and bundle.resolution == 128
    # the demo bundle's bar: at most 30 MB, counted in MiB as the README's sizes are
    assert sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) <= 30 * 2 ** 20


@pytest.fixture(scope="module")
def scored_clips(tmp_path_factory):
    """The test clips the committed report scored, regenerated (a clip is a pure function
    of the config, identity and clip index), loaded the way the report loaded them."""
    from training.data.manifest import read_manifest, write_manifest
    from training.data.synth import ClipJob, assign_splits, generate_clip
    from training.eval.clips import load_clips

    bundle, _ = load_bundle(DEMO)
    report = bundle.evaluation["report"]
    config = load_config(DEMO_DATA, SynthConfig)
    splits = assign_splits(config)
    out = tmp_path_factory.mktemp("demo-clips")
    speakers = sorted({int(clip[2:6]) for clip in report["clips"]})
    records = [generate_clip(ClipJob(config, i, j, splits[i], out))
               for i in speakers for j in range(2)]  # each scored clip and its reference
    write_manifest(out / "manifest.jsonl", records)
    clips = load_clips(read_manifest(out), "test", len(report["clips"]),
                       report["frames_per_clip"])
    assert [c.id for c in clips] == report["clips"]
    return clips


def test_the_runtime_reproduces_the_committed_report(scored_clips):
    from export.report import clip_scores, render_clip

    bundle, root = load_bundle(DEMO)
    report = bundle.evaluation["report"]
    committed = bundle.evaluation["variants"]["onnx-fp32"]["clips"]
    renderer = Renderer(bundle, root, report["steps"], threads=2)
    for index, clip in enumerate(scored_clips):
        frames, _ = render_clip(renderer, clip, report["seed"] + index)
        scores = clip_scores(frames, clip)
        expected = committed[clip.id]
        assert scores["psnr_vs_ground_truth"] == pytest.approx(
            expected["psnr_vs_ground_truth"], abs=0.2), clip.id
        assert scores["mouth_open_correlation"] == pytest.approx(
            expected["mouth_open_correlation"], abs=0.05), clip.id


def test_the_rendered_mouth_follows_the_speech(scored_clips):
    """The jaw opening of the synthetic clips (from their audio's phones) against the mouth
    opening measured on the bundle's frames, and against the same bundle driven by all-sil
    visemes (no audio): only the audio-driven mouth follows."""
    from export.report import clip_scores, render_clip

    bundle, root = load_bundle(DEMO)
    renderer = Renderer(bundle, root, 2, threads=2)
    driven, silent = [], []
    for index, clip in enumerate(scored_clips):
        frames, _ = render_clip(renderer, clip, index)
        driven.append(clip_scores(frames, clip)["mouth_open_correlation"])
        mute = dataclasses.replace(clip, visemes=torch.zeros_like(clip.visemes))  # all sil
        frames, _ = render_clip(renderer, mute, index)
        silent.append(clip_scores(frames, clip)["mouth_open_correlation"])
    assert np.mean(driven) > 0.4, driven
    # the opening is measured in the ground truth's mouth boxes, which follow the clip's head
    # motion: a still all-sil mouth scored 0.0-0.8 per clip (mean 0.38) on the demo bundle
    assert np.mean(driven) > np.mean(silent) + 0.2, (driven, silent)


@pytest.mark.skipif(not Path("/usr/share/pocketsphinx/test/data").is_dir()
                    or not Path("/usr/share/festival/dicts/cmu/cmudict-0.4.out").is_file(),
                    reason="needs Debian's pocketsphinx-testdata and festlex-cmu")
def test_the_default_recogniser_meets_the_real_speech_bars(tmp_path):
    """edge-run's default path (the bundle's recogniser fused with pocketsphinx, the
    bundle's weight) on the packaged real readers, labelled by forced alignment."""
    from training.data.realspeech import build_real_speech
    from training.eval.visemes import BAR_LATENCY_S, recognizer_factory, score_set, speech_set

    bundle, root = load_bundle(DEMO)
    build_real_speech(tmp_path)
    row = score_set(recognizer_factory(bundle, root, "fused"), speech_set(tmp_path),
                    bundle.fps, bundle.audio)
    assert row["frames"] == 924
    assert row["streaming_accuracy"] >= 0.70 and row["streaming_accuracy_1frame"] >= 0.85
    assert row["sound_to_viseme_latency_ms"] <= 1000 * BAR_LATENCY_S
