"""The viseme recogniser for real voices: espeak-ng speech sets, simulated rooms, microphones
and backgrounds, loudness normalisation in the graph, training on speech sets, and swapping
the recogniser into an exported bundle."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.signal import welch

from edge_runtime.audio.features import SAMPLE_RATE, MelConfig, log_mel
from edge_runtime.bundle import load_bundle
from edge_runtime.visemes.stream import LearnedRecognizer, VisemeStream
from edge_runtime.visemes.vocabulary import SIL
from training.config import AudioAugmentConfig, VisemeRecognizerConfig
from training.data import augment
from training.data.realspeech import read_speech_manifest

REPO = Path(__file__).resolve().parents[1]
RNG_SEED = 7


@pytest.fixture(scope="module")
def espeak_set(tmp_path_factory) -> Path:
    from training.data.voices import build_espeak

    out = tmp_path_factory.mktemp("espeak")
    build_espeak(out, utterances=24, seed=3)
    return out


@pytest.fixture(scope="module")
def voices_recognizer(espeak_set, tmp_path_factory) -> Path:
    """final.pt of a tiny loudness-normalised recogniser trained on the speech set alone."""
    out = tmp_path_factory.mktemp("voices-run")
    done = subprocess.run([sys.executable, "-m", "training.cli", "train", "visemes", "--config",
                           str(REPO / "configs/train/visemes-voices-tiny.yaml"), "--speech",
                           str(espeak_set), "--out", str(out)], capture_output=True, text=True,
                          cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    return out / "final.pt"


def _tone(seconds: float = 1.0, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_espeak_set_has_exact_labels_with_silence_around_each_utterance(espeak_set):
    speech = read_speech_manifest(espeak_set)
    assert len(speech.clips) == 24 and all(c.source == "espeak-ng" for c in speech.clips)
    assert len({c.speaker for c in speech.clips}) > 5  # a voice per utterance
    for clip in speech.clips[:6]:
        audio, truth = speech.load(clip)
        assert truth[0] == SIL and truth[-1] == SIL and (truth != SIL).mean() > 0.5
        assert abs(len(truth) - len(audio) * 25 / SAMPLE_RATE) <= 1


def test_held_out_sentences_are_never_spoken():
    from training.data.ttsset import held_out_sentence

    assert held_out_sentence("Go forward ten meters.")
    assert not held_out_sentence("Go forward nine meters.")


def test_speed_change_shortens_and_keeps_the_signal():
    tone = _tone()
    faster = augment.change_speed(tone, 1.25)
    assert len(faster) == pytest.approx(len(tone) / 1.25, abs=2)
    freqs, power = welch(faster, SAMPLE_RATE, nperseg=2048)
    assert freqs[power.argmax()] == pytest.approx(440 * 1.25, abs=10)  # pitch moves with it


def test_room_reverberation_adds_a_decaying_tail():
    rng = np.random.default_rng(RNG_SEED)
    response = augment.room_response(rng, 0.5)
    assert response[0] == 1.0 and len(response) == SAMPLE_RATE // 2
    early, late = (np.abs(response[a:b]).mean() for a, b in ((100, 1600), (6400, 8000)))
    assert late < early / 5
    click = np.zeros(SAMPLE_RATE, np.float32)
    click[100] = 1.0
    heard = augment.reverberate(click, response)
    assert len(heard) == len(click) and np.abs(heard[2000:]).sum() > 0


def test_band_limit_removes_what_a_cheap_microphone_cannot_hear():
    low, mid, high = (augment.band_limit(_tone(hz=hz), 300, 3400) for hz in (60, 1000, 6000))
    level = [float(np.sqrt(np.mean(x[4000:] ** 2))) for x in (low, mid, high)]
    assert level[1] > 0.15 and level[0] < level[1] / 8 and level[2] < level[1] / 8


@pytest.mark.parametrize("kind", augment.NOISE_KINDS)
def test_every_background_has_unit_level(kind):
    rng = np.random.default_rng(RNG_SEED)
    noise = augment.background(rng, kind, SAMPLE_RATE, lambda r, n: _tone(n / SAMPLE_RATE))
    assert noise.shape == (SAMPLE_RATE,) and np.sqrt(np.mean(noise ** 2)) == pytest.approx(1, 0.01)


def test_degrade_is_reproducible_and_stays_in_range():
    config = AudioAugmentConfig(noise_probability=1.0, gain_db=(6.0, 6.0))
    speech = _tone()
    other = lambda r, n: _tone(n / SAMPLE_RATE, 300.0)  # noqa: E731
    a = augment.degrade(speech, np.random.default_rng(1), config, other)
    b = augment.degrade(speech, np.random.default_rng(1), config, other)
    c = augment.degrade(speech, np.random.default_rng(2), config, other)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.abs(a).max() <= 1.0 and not np.array_equal(a, speech)


def test_spectrum_masks_hide_bands_and_stretches_behind_the_mean():
    mel = np.random.default_rng(0).standard_normal((48, 80)).astype(np.float32)
    config = AudioAugmentConfig(freq_masks=2, freq_mask_width=8, time_masks=1,
                                time_mask_width=4)
    masked = augment.mask_spectrum(mel, np.random.default_rng(3), config)
    hidden = masked != mel
    assert 0 < hidden.mean() < 0.35 and np.allclose(masked[hidden], mel.mean())
    assert np.array_equal(augment.mask_spectrum(mel, np.random.default_rng(0),
                                                AudioAugmentConfig()), mel)


def test_vocal_tract_warp_moves_formants_and_keeps_the_band_edges():
    """A tone at 1 kHz heard through the filterbank warped by 1.1 lands in the band a 1.1 kHz
    tone lands in unwarped; 1.0 is the runtime's own filterbank; Nyquist stays in place."""
    from edge_runtime.audio.features import MelConfig, log_mel, mel_filterbank

    cfg = MelConfig()
    assert np.array_equal(augment.warped_filterbank(cfg, 1.0), mel_filterbank(cfg))
    freqs = np.array([0.0, 1000.0, 7999.0, 8000.0])
    for alpha in (0.9, 1.1):
        moved = augment.vtlp_frequencies(freqs, alpha, 8000.0)
        assert moved[0] == 0 and moved[1] == pytest.approx(1000 * alpha) and moved[3] == 8000
        assert np.all(np.diff(augment.vtlp_frequencies(np.linspace(0, 8000, 257), alpha,
                                                        8000.0)) > 0)
    peak = lambda audio, bank=None: int(log_mel(audio, cfg, bank)[5].argmax())  # noqa: E731
    warped = augment.warped_filterbank(cfg, 1.1)
    assert peak(_tone(hz=1000.0), warped) == peak(_tone(hz=1100.0)) != peak(_tone(hz=1000.0))


def test_augment_config_rejects_reversed_ranges():
    from training.errors import UserError

    with pytest.raises(UserError, match="speed"):
        AudioAugmentConfig(speed=(1.2, 0.8)).validate("augment")
    with pytest.raises(UserError, match="vtlp"):
        AudioAugmentConfig(vtlp=(0.3, 1.1)).validate("augment")


def test_loudness_normalisation_makes_the_graph_blind_to_microphone_gain(espeak_set):
    from training.models.visemes import VisemeRecognizer

    speech = read_speech_manifest(espeak_set)
    audio = speech.load(speech.clips[0])[0][6400:18400]  # after the lead silence: speech
    audio = audio + 1e-3 * np.random.default_rng(0).standard_normal(len(audio))  # a room
    torch.manual_seed(0)
    normalised = VisemeRecognizer(VisemeRecognizerConfig(mel_floor=1e-9,
                                                         loudness_norm=True)).eval()
    plain = VisemeRecognizer(VisemeRecognizerConfig(mel_floor=1e-9)).eval()
    mel = MelConfig(floor=1e-9)

    def logits(model, gain: float) -> torch.Tensor:
        window = log_mel(audio * gain, mel)[:36]
        with torch.no_grad():
            return model(torch.from_numpy(window[None].astype(np.float32)))

    assert log_mel(audio * 0.05, mel)[:36].min() > np.log(1e-9)  # nothing floored
    moved = {name: float((logits(model, 1.0) - logits(model, 0.05)).abs().max())
             for name, model in (("normalised", normalised), ("plain", plain))}
    assert moved["normalised"] < moved["plain"] / 100, moved


def test_training_on_speech_sets_alone_records_what_it_learnt_from(voices_recognizer):
    state = torch.load(voices_recognizer, map_location="cpu", weights_only=False)
    assert state["config"]["model"]["loudness_norm"] is True
    assert len(state["data"]) == 1 and "espeak-ng" in state["data"][0]
    assert "train utterances" in state["data"][0]


def test_speech_sets_are_refused_for_other_models(espeak_set, tmp_path):
    done = subprocess.run([sys.executable, "-m", "training.cli", "train", "ae", "--config",
                           str(REPO / "configs/train/ae-tiny.yaml"), "--speech",
                           str(espeak_set), "--out", str(tmp_path)], capture_output=True,
                          text=True, cwd=REPO)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "--speech" in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def swapped(tiny_bundle, voices_recognizer, espeak_set, tmp_path_factory):
    """(bundle folder before, after tsd bundle-visemes put the tiny voices recogniser in)."""
    bundle_dir = tmp_path_factory.mktemp("swap") / "bundle"
    shutil.copytree(tiny_bundle, bundle_dir)
    done = subprocess.run([sys.executable, "-m", "training.cli", "bundle-visemes", "--bundle",
                           str(bundle_dir), "--visemes", str(voices_recognizer), "--speech",
                           str(espeak_set)], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "fused with pocketsphinx: weight" in done.stdout
    return tiny_bundle, bundle_dir


def test_bundle_visemes_swaps_the_recogniser_and_the_device_runs_it(swapped, espeak_set):
    before, _ = load_bundle(swapped[0])
    after, root = load_bundle(swapped[1])
    assert after.audio.floor == pytest.approx(1e-9) and after.recognizer.window == 28
    assert "espeak-ng" in after.recognizer.trained_on[0]
    assert set(after.variants) == set(before.variants)
    assert after.variants["onnx-fp32"]["step"] == before.variants["onnx-fp32"]["step"]
    assert after.variants["onnx-fp32"]["visemes"].sha256 != \
        before.variants["onnx-fp32"]["visemes"].sha256
    assert all(p["visemes"] == "fp32" for p in after.int8_plan.values())
    assert not any(p.name.startswith(".") for p in swapped[1].parent.iterdir())

    from edge_runtime.backends import open_graph

    session = open_graph(after, root, "onnx-fp32", "visemes", threads=1)
    stream = VisemeStream(LearnedRecognizer(session, after.recognizer, after.audio))
    speech = read_speech_manifest(espeak_set)
    audio = speech.load(speech.clips[0])[0]
    events = stream.push(audio) + stream.finish()
    assert len(events) == int(np.ceil(len(audio) / 640))


def test_the_fusion_weight_counts_each_speech_set_alike(swapped, espeak_set):
    """The weight's curve is the mean of each set's curve, not pooled over frames, so a
    small set (the one real speaker's) weighs as much as a large synthetic one."""
    from export.recognizer import held_out_sets, measure_fusion
    from training.eval.visemes import EvalSet, fusion_curve

    bundle, root = load_bundle(swapped[1])
    whole = held_out_sets((espeak_set,))[0]
    one = EvalSet("one utterance", whole.clips[:1])
    weight, curve = measure_fusion(bundle, root, [whole, one])
    a, b = fusion_curve(bundle, root, [whole]), fusion_curve(bundle, root, [one])
    assert curve == pytest.approx({w: (a[w] + b[w]) / 2 for w in a})
    assert curve[weight] == max(curve.values())


def test_the_measured_weight_is_the_best_of_the_curve_and_fused_runs_it(swapped, caplog,
                                                                       monkeypatch):
    import logging
    import sys as system

    from edge_runtime.cli import _recognizer
    from edge_runtime.visemes.fusion import FusedRecognizer

    bundle, root = load_bundle(swapped[1])
    curve = bundle.evaluation["fusion_accuracy_by_pocketsphinx_weight"]["accuracy"]
    weight = bundle.recognizer.pocketsphinx_weight
    assert curve[str(weight)] == max(curve.values())
    with caplog.at_level(logging.INFO, logger="edge-run"):
        chosen = _recognizer("fused", bundle, root, "onnxruntime", "fp32", 1)
    assert isinstance(chosen, FusedRecognizer) and chosen.weight == weight
    assert "fused with pocketsphinx" in caplog.text
    caplog.clear()
    monkeypatch.setitem(system.modules, "pocketsphinx", None)  # not installed
    with caplog.at_level(logging.INFO, logger="edge-run"):
        alone = _recognizer("fused", bundle, root, "onnxruntime", "fp32", 1)
    assert isinstance(alone, LearnedRecognizer)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "pip install pocketsphinx" in warnings[0]


def test_fusion_weight_moves_the_decision_from_one_recogniser_to_the_other(swapped,
                                                                           espeak_set):
    from edge_runtime.backends import open_graph
    from edge_runtime.visemes.fusion import FusedRecognizer
    from edge_runtime.visemes.sphinx import PocketsphinxRecognizer

    bundle, root = load_bundle(swapped[1])
    session = open_graph(bundle, root, "onnx-fp32", "visemes", threads=1)
    speech = read_speech_manifest(espeak_set)
    audio = speech.load(speech.clips[1])[0]

    def tokens(recognizer) -> list[int]:
        stream = VisemeStream(recognizer)
        return [e.token for e in stream.push(audio) + stream.finish()]

    def learned():
        return LearnedRecognizer(session, bundle.recognizer, bundle.audio)

    alone, heard = tokens(learned()), tokens(PocketsphinxRecognizer(25, 3))
    assert alone != heard
    assert tokens(FusedRecognizer(learned(), PocketsphinxRecognizer(25, 3), 0.0)) == alone
    assert tokens(FusedRecognizer(learned(), PocketsphinxRecognizer(25, 3), 1000.0)) == heard


def test_bundle_visemes_with_a_bad_checkpoint_leaves_the_bundle_untouched(
        tiny_bundle, espeak_set, tmp_path):
    bundle_dir = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle_dir)
    text = (bundle_dir / "bundle.yaml").read_text()
    bad = tmp_path / "final.pt"
    bad.write_bytes(b"not a checkpoint")
    done = subprocess.run([sys.executable, "-m", "training.cli", "bundle-visemes", "--bundle",
                           str(bundle_dir), "--visemes", str(bad), "--speech", str(espeak_set)],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert (bundle_dir / "bundle.yaml").read_text() == text


def test_fused_needs_a_measured_weight(tiny_bundle):
    from edge_runtime.bundle import BundleError
    from edge_runtime.cli import _recognizer

    bundle, root = load_bundle(tiny_bundle)
    assert bundle.recognizer.pocketsphinx_weight is None
    with pytest.raises(BundleError, match="tsd bundle-visemes"):
        _recognizer("fused", bundle, root, "onnxruntime", "fp32", 1)
