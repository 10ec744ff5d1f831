"""Speech with exact phone times from Festival's voices of real speakers in other languages
(``tsd data multilingual``).

The recogniser hears English voices of few real speakers (Festival's and flite's). Debian
ships Festival voices cut or trained from recordings of more real people in other languages:
Italian (festvox-italp16k, a woman; festvox-itapc16k, a man: diphones), Finnish
(festvox-suopuhe-lj, a woman; festvox-suopuhe-mv, a man: diphones), Czech
(festvox-czech-dita, a woman; festvox-czech-machac, a man: diphones), Russian (festvox-ru,
a man: unit selection) and Catalan (festvox-ca-ona-hts, a woman: HTS). The mouth shapes of
their phones are the same visemes (vocabulary.FESTIVAL_LANGUAGE_TO_VISEME), so they add
real voices, not new classes.

The texts are pseudo-words spelled by each language's rules (random syllables of its common
spellings): the voice's letter-to-sound rules turn them into its phones, and meaning does not
matter to a recogniser that hears 480 ms at a time. Forced alignment is English-only, so
these sets carry no alignment check.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.data.festival import BATCH, synthesize_batch
from training.data.ttsset import TtsUtterance, build_tts_set


@dataclass(frozen=True)
class Language:
    name: str
    """Key of vocabulary.FESTIVAL_LANGUAGE_TO_VISEME."""
    encoding: str
    """Text encoding the language's Festival front end reads."""
    onsets: tuple[str, ...]
    """Spellings of syllable onsets (consonants and clusters)."""
    vowels: tuple[str, ...]
    """Spellings of syllable nuclei."""


LANGUAGES: dict[str, Language] = {
    "italian": Language(
        "italian", "latin-1",
        ("p", "b", "t", "d", "c", "g", "f", "v", "s", "z", "m", "n", "l", "r", "gn", "gl",
         "ch", "gh", "sc", "ci", "gi", "qu", "tt", "ss", "ll", "rr", "pp", "mm", "nn", "zz",
         "st", "tr", "pr", "br", "sp"),
        ("a", "e", "i", "o", "u", "a", "e", "o", "ia", "uo", "ie")),
    "finnish": Language(
        "finnish", "latin-1",
        ("p", "t", "k", "d", "h", "j", "l", "m", "n", "r", "s", "v", "kk", "tt", "pp", "ss",
         "ll", "nn", "mm", "ng", "nk", "lt", "st"),
        ("a", "e", "i", "o", "u", "y", "\u00e4", "\u00f6", "aa", "ee", "ii", "uu", "yy",
         "\u00e4\u00e4", "ai", "ei", "ou", "uo", "ie", "\u00e4i")),
    "czech": Language(
        "czech", "iso-8859-2",
        ("p", "b", "t", "d", "k", "g", "f", "v", "s", "z", "h", "ch", "j", "l", "m", "n", "r",
         "\u0159", "\u0161", "\u017e", "\u010d", "c", "\u0148", "\u0165", "\u010f", "st", "pr",
         "tr", "kr", "zn"),
        ("a", "e", "i", "o", "u", "y", "\u00e1", "\u00e9", "\u00ed", "\u00fa", "\u016f",
         "\u00fd", "\u011b")),
    "russian": Language(
        "russian", "utf-8",
        tuple("\u043f\u0431\u0442\u0434\u043a\u0433\u0444\u0432\u0441\u0437\u0445\u0448"
              "\u0436\u0447\u0449\u0446\u043c\u043d\u043b\u0440\u0439")
        + ("\u0441\u0442", "\u043f\u0440", "\u0442\u0440", "\u0441\u043a"),
        tuple("\u0430\u043e\u0443\u044b\u0438\u0435\u044d\u044f\u044e\u0451")),
    "catalan": Language(
        "catalan", "latin-1",
        ("p", "b", "t", "d", "c", "g", "f", "v", "s", "z", "x", "j", "ll", "ny", "l", "m", "n",
         "r", "rr", "ss", "qu", "\u00e7", "tr", "pr", "bl"),
        ("a", "e", "i", "o", "u", "\u00e0", "\u00e8", "\u00e9", "\u00ed", "\u00f2", "\u00f3",
         "\u00fa")),
}

VOICES: dict[str, str] = {
    "lp_diphone": "italian", "pc_diphone": "italian",
    "suo_fi_lj_diphone": "finnish", "hy_fi_mv_diphone": "finnish",
    "czech_dita": "czech", "czech_machac": "czech",
    "msu_ru_nsh_clunits": "russian",
    "upc_ca_ona_hts": "catalan",
}
"""Festival voice -> the language it speaks."""
INSTALL = ("apt-get install festival festvox-italp16k festvox-itapc16k festvox-suopuhe-lj "
           "festvox-suopuhe-mv festvox-czech-dita festvox-czech-machac festvox-ru "
           "festvox-ca-ona-hts")


def pseudo_sentence(rng: np.random.Generator, language: Language) -> str:
    """4-9 pseudo-words of 1-4 syllables, some starting with a vowel, a comma now and then
    (for the voice's pauses)."""
    words = []
    for _ in range(int(rng.integers(4, 10))):
        syllables = [str(rng.choice(language.onsets)) + str(rng.choice(language.vowels))
                     for _ in range(int(rng.integers(1, 5)))]
        word = "".join(syllables)
        if rng.random() < 0.25:
            word = str(rng.choice(language.vowels)) + word
        if rng.random() < 0.15:
            word += ","
        words.append(word)
    return " ".join(words).rstrip(",")


def pseudo_sentences(language: str, count: int, seed: int) -> list[str]:
    rng = np.random.default_rng([seed, 23, sorted(LANGUAGES).index(language)])
    return [pseudo_sentence(rng, LANGUAGES[language]) for _ in range(count)]


def speak(texts: list[str], voice: str) -> list[TtsUtterance]:
    language = LANGUAGES[VOICES[voice]]
    return synthesize_batch(texts, voice, language.name, language.encoding, INSTALL)


def build_multilingual(out: Path, utterances: int, seed: int = 0, fps: int = 25) -> dict:
    """OUT/speech.jsonl: ``utterances`` pseudo-sentences per voice with exact labels
    (training.data.ttsset.build_tts_set, without the English alignment check)."""
    return build_tts_set(out, "festival-multilingual", tuple(VOICES), speak, utterances, seed,
                         fps, 0, BATCH,
                         lambda voice: pseudo_sentences(VOICES[voice], utterances, seed))
