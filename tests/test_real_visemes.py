"""Visemes on real speech: the packaged real-speech set and its forced-alignment labels,
Festival's exact labels, pocketsphinx streaming against its whole-utterance decode, rest on
non-speech, and the recogniser edge-run picks by default."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.audio.features import MelConfig
from edge_runtime.visemes.sphinx import PocketsphinxRecognizer
from edge_runtime.visemes.stream import VisemeStream
from edge_runtime.visemes.vocabulary import SIL, VISEME_INDEX, festival_to_viseme
from training.data.realspeech import FESTIVAL_LEXICON, TESTDATA

needs_testdata = pytest.mark.skipif(
    not TESTDATA.is_dir() or not FESTIVAL_LEXICON.is_file(),
    reason="needs Debian's pocketsphinx-testdata and festlex-cmu (apt-get install "
           "pocketsphinx-testdata festival)")
needs_festival = pytest.mark.skipif(
    shutil.which("festival") is None
    or not Path("/usr/share/festival/voices/english/kal_diphone").is_dir()
    or not Path("/usr/share/festival/voices/us/cmu_us_slt_arctic_hts").is_dir(),
    reason="needs Debian's festival and festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts")
needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="needs Debian's flite")
needs_multilingual = pytest.mark.skipif(
    shutil.which("festival") is None
    or not Path("/usr/share/festival/voices/finnish/hy_fi_mv_diphone").is_dir()
    or not Path("/usr/share/festival/voices/russian/msu_ru_nsh_clunits").is_dir(),
    reason="needs Debian's festival voices in other languages (training.data.multilingual)")


def _stream(recognizer, audio: np.ndarray) -> np.ndarray:
    stream = VisemeStream(recognizer)
    events = []
    for start in range(0, len(audio), 320):
        events += stream.push(audio[start:start + 320])
    events += stream.finish()
    return np.array([e.token for e in events])


def test_festival_phones_map_through_the_one_map():
    names = ["pau", "hh", "ax", "ah", "axr", "el", "em", "en", "ch"]
    assert [festival_to_viseme(p) for p in names] == [
        VISEME_INDEX[v] for v in ("sil", "kk", "E", "aa", "RR", "nn", "PP", "nn", "CH")]
    with pytest.raises(KeyError):
        festival_to_viseme("qq")


def test_phones_of_other_languages_map_by_their_own_phone_set():
    """Stress digits and length marks fall away; a phone of one language's set is unknown in
    another's; English stays the default."""
    assert festival_to_viseme("a1", "italian") == festival_to_viseme("a:", "finnish") \
        == VISEME_INDEX["aa"]
    assert festival_to_viseme("@:", "finnish") == VISEME_INDEX["aa"]  # a-umlaut, open
    assert festival_to_viseme("y", "finnish") == VISEME_INDEX["U"]  # rounded
    assert festival_to_viseme("y", "russian") == VISEME_INDEX["I"]  # unrounded
    assert festival_to_viseme("r~*", "czech") == VISEME_INDEX["RR"]
    assert festival_to_viseme("pp", "russian") == VISEME_INDEX["PP"]
    assert festival_to_viseme("nf", "italian") == VISEME_INDEX["FF"]
    assert festival_to_viseme("##", "finnish") == festival_to_viseme("pau", "catalan") == SIL
    with pytest.raises(KeyError, match="unknown italian"):
        festival_to_viseme("c~", "italian")  # Czech's


@needs_multilingual
def test_voices_of_other_languages_give_exact_labels_from_pseudo_words(tmp_path):
    from training.data.multilingual import VOICES, build_multilingual, pseudo_sentences, speak
    from training.data.realspeech import read_speech_manifest

    report = build_multilingual(tmp_path, utterances=2, seed=3)
    speech = read_speech_manifest(tmp_path)
    assert report["utterances"] == 2 * len(VOICES) == len(speech.clips)
    assert {c.speaker for c in speech.clips} == set(VOICES)
    assert report["forced_alignment_vs_exact"]["utterances"] == 0  # English-only check
    for clip in speech.clips:
        audio, truth = speech.load(clip)
        assert abs(len(truth) - len(audio) * 25 / 16000) <= 1
        assert (truth != SIL).mean() > 0.5
        # a voice that spelled a letter it could not read would say "unknown" in its
        # language; pseudo-words of the language's own spellings give many visemes
        assert len(set(truth.tolist())) >= 6, clip.id
    # the spellings reach each voice in its encoding: a Finnish a-umlaut is spoken as its
    # phone (@), a Czech r-caron as r~, not read out as the name of an unknown character
    for voice, letter, phone in (("suo_fi_lj_diphone", "\u00e4", "@"),
                                 ("czech_dita", "\u0159", "r~")):
        text = next(t for t in pseudo_sentences(VOICES[voice], 40, 0) if letter in t)
        spoken = speak([text], voice)[0]
        assert phone in {p.label.rstrip(":*") for p in spoken.phones}, (voice, text)


def test_asterisk_transcripts_become_the_words_pocketsphinx_aligns():
    from training.data.asterisk import number_words, spoken_words

    assert spoken_words("Press 1 for sales, * to cancel.") == [
        "press", "one", "for", "sales", "star", "to", "cancel"]
    assert spoken_words("You have 42 new messages.") == [
        "you", "have", "forty", "two", "new", "messages"]
    assert number_words(100) is None and spoken_words("Room 100, please.") is None
    assert spoken_words("[this is a simple beep tone]") is None
    assert spoken_words("Welcome to Zorblaxian Industries.") is None  # not in CMUdict
    assert spoken_words("Go forward ten meters.") == ["go", "forward", "ten", "meters"]


def needs_prompts(language: str):
    return pytest.mark.skipif(
        not Path(f"/usr/share/doc/asterisk-core-sounds-{language}").is_dir()
        or not list(Path("/usr/share/asterisk/sounds").glob(f"{language}_*_*")),
        reason=f"needs Debian's asterisk-core-sounds-{language}-g722 and "
               f"asterisk-core-sounds-{language}")


def _build_prompts(tmp_path: Path, language: str, names: tuple[str, ...]):
    """build_asterisk over copies of a few of the language's prompts -> (report, set)."""
    from training.data.asterisk import PROMPT_SETS, build_asterisk
    from training.data.realspeech import read_speech_manifest

    sounds = tmp_path / "sounds"
    (sounds / "digits").mkdir(parents=True)
    for name in names:
        shutil.copy(PROMPT_SETS[language].sounds / f"{name}.g722", sounds / f"{name}.g722")
    report = build_asterisk(tmp_path / "out", language, sounds)
    return report, read_speech_manifest(tmp_path / "out")


@needs_prompts("en")
def test_asterisk_prompts_are_real_speech_labelled_by_forced_alignment(tmp_path):
    report, speech = _build_prompts(tmp_path, "en", ("agent-pass", "beep", "digits/7"))
    assert report["utterances"] == 2 and report["skipped"]["not speech, unknown word or "
                                                            "held out"] >= 1  # the beep
    texts = {c.id: c.text for c in speech.clips}
    assert texts == {"allison-agent-pass": "please enter your password followed by the pound "
                                           "key", "allison-digits-7": "seven"}
    for clip in speech.clips:
        audio, truth = speech.load(clip)
        assert clip.labels == "forced-alignment" and clip.speaker == "allison"
        assert abs(len(truth) - len(audio) * 25 / 16000) <= 1 and (truth != SIL).mean() > 0.5
    seven = speech.load(next(c for c in speech.clips if c.id.endswith("7")))[1]
    assert VISEME_INDEX["SS"] in seven and VISEME_INDEX["FF"] in seven  # s-e-v-e-n


def test_ipa_phonemes_map_to_one_viseme_and_english_stand_ins_per_symbol():
    from edge_runtime.visemes.vocabulary import (
        ARPABET_TO_VISEME,
        IPA_TO_VISEME,
        ipa_symbols,
        ipa_to_viseme,
    )
    from training.data.alignment import IPA_TO_ARPABET

    assert set(IPA_TO_ARPABET) == set(IPA_TO_VISEME)
    assert {p for ps in IPA_TO_ARPABET.values() for p in ps} <= set(ARPABET_TO_VISEME)
    # stress, length, palatalisation and nasal tilde dropped; affricates kept whole
    assert ipa_symbols("\u02c8\u025b") == ["\u025b"] and ipa_symbols("t\u02d0") == ["t"]
    assert ipa_symbols("v\u02b2") == ["v"] and ipa_symbols("\u0254\u0303") == ["\u0254"]
    assert ipa_symbols("t\u0283") == ["t\u0283"] and ipa_symbols("ss") == ["s", "s"]
    assert ipa_symbols("\u00e7") == ["\u00e7"] and ipa_symbols("\u0294a") == ["a"]
    with pytest.raises(KeyError, match="unknown IPA symbol"):
        ipa_symbols("(en)")
    assert [VISEME_INDEX[v] for v in ("PP", "U", "O", "CH", "RR")] == [
        ipa_to_viseme(s) for s in ("m", "y", "\u00f8", "t\u0283", "\u0281")]


@needs_festival
def test_crosslingual_alignment_mostly_matches_exact_labels(tmp_path):
    from edge_runtime.visemes.vocabulary import ipa_symbols
    from training.data.alignment import align_ipa, frame_visemes
    from training.data.festival import build_festival
    from training.data.realspeech import agreement, read_speech_manifest
    from training.data.speech import Espeak, Voice

    build_festival(tmp_path, utterances=1, check=0)
    speech = read_speech_manifest(tmp_path)
    for clip in speech.clips:  # English, aligned as if it were another language
        audio, truth = speech.load(clip)
        words = [[s for p in w for s in ipa_symbols(p)]
                 for w in Espeak.get().ipa_words(clip.text, Voice())]
        phones = align_ipa(audio, words)
        assert [p.label for p in phones] == [s for w in words for s in w]
        assert all(a.end <= b.start + 1e-6 for a, b in zip(phones, phones[1:]))
        exact, near = agreement(truth, frame_visemes(phones, len(truth), 25))
        assert 0.6 < exact < near, clip.id


@needs_prompts("it")
def test_asterisk_prompts_in_other_languages_are_aligned_cross_lingually(tmp_path):
    report, speech = _build_prompts(tmp_path, "it", ("activated", "beep", "digits/7"))
    assert report["utterances"] == 2 and report["skipped"]["not speech, or a phoneme the IPA "
                                                            "map lacks"] >= 1  # the beep
    assert {c.id: c.text for c in speech.clips} == {"carlo-it-activated": "Attivato.",
                                                    "carlo-it-digits-7": "sette"}
    for clip in speech.clips:
        audio, truth = speech.load(clip)
        assert clip.labels == "forced-alignment-ipa" and clip.source == "asterisk-it"
        assert abs(len(truth) - len(audio) * 25 / 16000) <= 1 and (truth != SIL).mean() > 0.5
    seven = speech.load(next(c for c in speech.clips if c.id.endswith("7")))[1]
    assert [v for i, v in enumerate(seven) if v != SIL and (i == 0 or v != seven[i - 1])] == [
        VISEME_INDEX[v] for v in ("SS", "E", "DD", "E")]  # s-e-tt-e


def test_ktuberling_names_become_the_words_spoken():
    from training.data.ktuberling import spoken_words

    assert spoken_words("ball") == ["ball"]
    assert spoken_words("egypt_palmtree") == ["palm", "tree"]
    assert spoken_words("pizzeria_brocolli") == ["broccoli"]
    assert spoken_words("moon_zorblax") is None  # not in CMUdict: left out, not guessed


@pytest.mark.skipif(not Path("/usr/share/ktuberling/sounds/en.soundtheme").is_file(),
                    reason="needs Debian's ktuberling-data")
def test_ktuberling_words_are_real_speech_labelled_by_forced_alignment(tmp_path):
    from training.data.ktuberling import SOUNDS, build_ktuberling
    from training.data.realspeech import read_speech_manifest

    sounds = tmp_path / "sounds"
    (sounds / "en").mkdir(parents=True)
    for name in ("ball", "egypt_palmtree"):
        shutil.copy(SOUNDS / "en" / f"{name}.ogg", sounds / "en" / f"{name}.ogg")
    (sounds / "en.soundtheme").write_text(
        '<language code="en">\n<sound name="ball" file="en/ball.ogg" />\n'
        '<sound name="egypt_palmtree" file="en/egypt_palmtree.ogg" />\n'
        '<sound name="moon_zorblax" file="en/moon_zorblax.ogg" />\n'
        '<sound name="tie" file="en/tie.ogg" />\n</language>\n')
    report = build_ktuberling(tmp_path / "out", sounds)
    assert report["utterances"] == 2
    assert report["skipped"] == {"unknown word": 1, "no audio": 1}
    speech = read_speech_manifest(tmp_path / "out")
    assert {c.id: c.text for c in speech.clips} == {
        "ktuberling-ball": "ball", "ktuberling-egypt_palmtree": "palm tree"}
    for clip in speech.clips:
        audio, truth = speech.load(clip)
        assert clip.labels == "forced-alignment" and clip.speaker == "ktuberling-en"
        assert abs(len(truth) - len(audio) * 25 / 16000) <= 1 and (truth != SIL).mean() > 0.3
    ball = speech.load(next(c for c in speech.clips if c.id.endswith("ball")))[1]
    spoken = [v for v in ball if v != SIL]
    assert spoken[0] == VISEME_INDEX["PP"] and VISEME_INDEX["O"] in spoken  # b-all


@pytest.fixture(scope="module")
def real_speech(tmp_path_factory):
    from training.data.realspeech import build_real_speech, read_speech_manifest

    out = tmp_path_factory.mktemp("real")
    report = build_real_speech(out)
    return read_speech_manifest(out), report


@needs_testdata
def test_real_speech_set_is_labelled_by_forced_alignment(real_speech):
    speech, report = real_speech
    assert len(speech.clips) == report["utterances"] == 11
    assert 30 < report["seconds"] < 45
    for clip in speech.clips:
        audio, truth = speech.load(clip)
        assert len(truth) == clip.frame_count == len(audio) * clip.fps // 16000
        assert (truth != SIL).mean() > 0.6  # the recordings are mostly speech
    # the labels do not depend on the level; 20 dB SNR noise moves some boundaries
    agreement = report["self_agreement"]
    assert agreement["gain -12 dB"]["agreement"] > 0.97
    assert 0.7 < agreement["noise 20 dB SNR"]["agreement"] < 1.0
    # a silent lead-in and the pauses between words are silence, not the next phone
    assert agreement["50 ms lead-in"]["agreement_1frame"] > 0.97
    quiet, quiet_sil = 0, 0
    for clip in speech.clips:
        audio, truth = speech.load(clip)
        frames = audio[:len(truth) * 640].reshape(len(truth), 640)
        level = 10 * np.log10((frames ** 2).mean(1) + 1e-10)
        low = level < level.max() - 30
        quiet, quiet_sil = quiet + low.sum(), quiet_sil + (truth[low] == SIL).sum()
    assert quiet > 100 and quiet_sil / quiet > 0.7


@needs_testdata
def test_pocketsphinx_streams_real_speech_as_well_as_the_whole_utterance(real_speech):
    """The stream starts from a measured cepstral mean and re-estimates it as it goes; with
    pocketsphinx's default start it lost about 6 points against the offline decode."""
    from training.eval.visemes import score_set, speech_set

    speech, _ = real_speech
    row = score_set(lambda: PocketsphinxRecognizer(25, 3), speech_set(speech.path), 25,
                    MelConfig())
    assert row["streaming_accuracy"] > row["none_accuracy"] + 0.4
    assert row["streaming_accuracy"] > row["whole_utterance_accuracy"] - 0.03
    assert row["streaming_accuracy_1frame"] > row["streaming_accuracy"]
    assert row["best_shift_frames"] == 0


def test_silence_and_noise_without_speech_rest_the_mouth():
    from training.eval.visemes import BAR_NONSPEECH_SIL, nonspeech_signals

    for name, signal in nonspeech_signals(seconds=6.0).items():
        tokens = _stream(PocketsphinxRecognizer(25, 3), signal)
        assert (tokens == SIL).mean() >= BAR_NONSPEECH_SIL, name


@needs_festival
def test_festival_voices_give_exact_labels_that_forced_alignment_mostly_matches(tmp_path):
    from training.data.festival import build_festival
    from training.data.realspeech import read_speech_manifest

    report = build_festival(tmp_path, utterances=2, check=2)
    speech = read_speech_manifest(tmp_path)
    assert {c.speaker for c in speech.clips} == {"kal_diphone", "ked_diphone",
                                                 "cmu_us_slt_arctic_hts"}
    assert report["utterances"] == 6
    check = report["forced_alignment_vs_exact"]
    assert check["failed_utterances"] == 0
    assert 0.6 < check["agreement"] < check["agreement_1frame"] <= 1.0
    audio, truth = speech.load(speech.clips[0])
    assert truth[0] == SIL and (truth != SIL).mean() > 0.5


@needs_flite
def test_flite_voices_give_exact_labels_at_their_own_speeds(tmp_path):
    from training.data.flite import build_flite
    from training.data.realspeech import read_speech_manifest

    report = build_flite(tmp_path, utterances=2, check=2)
    speech = read_speech_manifest(tmp_path)
    assert {c.speaker for c in speech.clips} == {"awb", "rms", "slt"}
    assert report["forced_alignment_vs_exact"]["failed_utterances"] == 0
    assert report["forced_alignment_vs_exact"]["agreement"] > 0.6
    for clip in speech.clips:
        audio, truth = speech.load(clip)
        assert truth[0] == SIL and truth[-1] == SIL and (truth != SIL).mean() > 0.5
        assert abs(len(truth) - len(audio) * 25 / 16000) <= 1
    # the same sentence, each voice at a speed of its own: the lengths differ
    lengths = [c.frame_count for c in speech.clips if c.id.endswith("-0000")]
    assert len(set(lengths)) == 3


def test_flite_phone_times_parse_into_contiguous_segments():
    from training.data.flite import parse_phones
    from training.errors import UserError

    phones = parse_phones("pau:0.176 dh:0.284 ax:0.331 pau:0.5\n")
    assert [(p.start, p.end) for p in phones] == [(0.0, 0.176), (0.176, 0.284),
                                                   (0.284, 0.331), (0.331, 0.5)]
    assert phones[0].viseme == SIL and phones[1].viseme == festival_to_viseme("dh")
    with pytest.raises(UserError, match="unexpected phone token"):
        parse_phones("pau0.1")
