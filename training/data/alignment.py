"""Phone timing: word times -> phones (CMUdict), pocketsphinx forced alignment, frame visemes.

CMUdict and the acoustic model come from the ``pocketsphinx`` wheel; words CMUdict lacks get
their phonemes from espeak-ng.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import re
from dataclasses import dataclass

import numpy as np

from edge_runtime.audio.features import SAMPLE_RATE
from edge_runtime.visemes.vocabulary import (
    SIL,
    VISEME_INDEX,
    arpabet_to_viseme,
    espeak_to_viseme,
    ipa_to_viseme,
)

log = logging.getLogger(__name__)

VOWEL_VISEMES = frozenset(VISEME_INDEX[v] for v in ("aa", "E", "I", "O", "U", "RR"))
_VOWEL_WEIGHT = 2.0
"""Vowels last about twice as long as consonants; used to place phones inside a word."""


@dataclass(frozen=True)
class Segment:
    """A labelled time span in seconds; phones also carry their viseme id."""

    label: str
    start: float
    end: float
    viseme: int = SIL

    def to_dict(self) -> dict:
        return {"label": self.label, "start": round(self.start, 4), "end": round(self.end, 4),
                "viseme": self.viseme}


def frame_visemes(phones: list[Segment], n_frames: int, fps: int) -> np.ndarray:
    """Viseme of the phone active at each frame centre, ``sil`` elsewhere -> [n_frames] int16."""
    out = np.full(n_frames, SIL, dtype=np.int16)
    centres = (np.arange(n_frames) + 0.5) / fps
    for seg in phones:
        out[(centres >= seg.start) & (centres < seg.end)] = seg.viseme
    return out


POCKETSPHINX_FRAME_S = 0.01
"""pocketsphinx's frames (alignment times are counted in them)."""
ALIGN_SILPROB = 1.0
"""pocketsphinx's silence transition probability in forced alignment (its default, 0.005,
left pauses and leading silence inside the neighbouring phones): against exact labels
(Festival's and flite's voices) 1.0 agrees best (docs/decisions.md, "Pauses in the forced
alignment")."""


def pocketsphinx_model_dir() -> str:
    import pocketsphinx

    return os.path.join(pocketsphinx.get_model_path(), "en-us")


@functools.lru_cache(maxsize=1)
def cmudict() -> dict[str, tuple[str, ...]]:
    """word (lower case) -> ARPAbet phones of its first pronunciation."""
    table: dict[str, tuple[str, ...]] = {}
    with open(os.path.join(pocketsphinx_model_dir(), "cmudict-en-us.dict"), encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and "(" not in parts[0]:
                table.setdefault(parts[0], tuple(parts[1:]))
    return table


_NON_SPEECH = re.compile(r"^\{.*\}$|^\[.*\]$|^<.*>$")


def normalise_word(word: str) -> str:
    return word.strip().lower().strip(".,;:!?\"")


def word_phones(word: str) -> list[tuple[str, int]]:
    """(label, viseme) of each phone of a word: CMUdict, else espeak-ng; [] for noise tags."""
    if _NON_SPEECH.match(word.strip()):
        return []
    key = normalise_word(word)
    if key in cmudict():
        return [(p, arpabet_to_viseme(p)) for p in cmudict()[key]]
    from training.data.speech import Espeak

    phonemes = Espeak.get().phonemes(key)
    log.debug("word %r not in CMUdict; espeak-ng phonemes %s", key, phonemes)
    out = []
    for phoneme in phonemes:
        try:
            viseme = espeak_to_viseme(phoneme)
        except KeyError:
            log.warning("word %r: espeak-ng phoneme %r has no viseme; left out", key, phoneme)
            continue
        if viseme != SIL:
            out.append((phoneme, viseme))
    return out


def phones_from_word_times(words: list[Segment]) -> list[Segment]:
    """Place each word's phones inside its [start, end], vowels weighted longer."""
    phones: list[Segment] = []
    for word in words:
        spec = word_phones(word.label)
        if not spec or word.end <= word.start:
            continue
        weights = np.array([_VOWEL_WEIGHT if v in VOWEL_VISEMES else 1.0 for _, v in spec])
        edges = word.start + (word.end - word.start) * np.concatenate(
            [[0.0], np.cumsum(weights) / weights.sum()])
        phones.extend(Segment(label, float(edges[i]), float(edges[i + 1]), viseme)
                      for i, (label, viseme) in enumerate(spec))
    return phones


def align_transcript(audio: np.ndarray, words: list[str],
                     sample_rate: int = SAMPLE_RATE) -> tuple[list[Segment], list[Segment]]:
    """Forced alignment of a transcript with pocketsphinx -> (word segments, phone segments).

    audio: [N] float32 16 kHz. Words missing from CMUdict are left out of the alignment
    (they become part of the neighbouring spans) with a warning.
    """
    known = [normalise_word(w) for w in words if normalise_word(w) in cmudict()]
    missing = [w for w in words if normalise_word(w) not in cmudict() and not _NON_SPEECH.match(w)]
    if missing:
        log.warning("aligning without words missing from CMUdict: %s", " ".join(missing))
    if not known:
        return [], []
    alignment = _force_align(_aligner(sample_rate), _pcm(audio), " ".join(known))
    if alignment is None:
        log.warning("pocketsphinx could not align %r", " ".join(known))
        return [], []
    frame = POCKETSPHINX_FRAME_S
    word_segs, phone_segs = [], []
    for word in alignment:
        start, end = word.start * frame, (word.start + word.duration) * frame
        if word.name.startswith("<") or word.name == "</s>":
            continue
        word_segs.append(Segment(word.name, start, end))
        for phone in word:
            phone_segs.append(Segment(phone.name, phone.start * frame,
                                      (phone.start + phone.duration) * frame,
                                      arpabet_to_viseme(phone.name)))
    return word_segs, phone_segs


def _aligner(sample_rate: int = SAMPLE_RATE):
    """A pocketsphinx decoder for forced alignment (en-us model, CMUdict)."""
    from pocketsphinx import Decoder

    model = pocketsphinx_model_dir()
    return Decoder(hmm=os.path.join(model, "en-us"),
                   dict=os.path.join(model, "cmudict-en-us.dict"), samprate=sample_rate,
                   silprob=ALIGN_SILPROB, loglevel="FATAL")


def _pcm(audio: np.ndarray) -> bytes:
    """audio [N] float32 -> 16-bit PCM bytes."""
    return (np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes()


def _force_align(decoder, pcm: bytes, text: str):
    """pocketsphinx's alignment of ``text`` (words in the decoder's dictionary) over ``pcm``,
    None where it finds none; raises RuntimeError where no path fits the transcript."""
    decoder.set_align_text(text)
    _decode(decoder, pcm)  # first pass: word alignment
    decoder.set_alignment()
    _decode(decoder, pcm)  # second pass: phone and state alignment
    return decoder.get_alignment()


def _decode(decoder, pcm: bytes) -> None:
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()


# The en-us acoustic model's nearest phones for each IPA symbol of IPA_TO_VISEME: a stand-in
# for the aligner only (the viseme comes from the IPA symbol). Sounds English lacks take the
# closest English manner and place (front rounded vowels a back rounded one, taps a d, uvular
# r the r, x and the palatal fricative an h); affricates English lacks take two phones.
IPA_TO_ARPABET: dict[str, tuple[str, ...]] = {
    "a": ("AA",), "\u0251": ("AA",), "\u0250": ("AH",), "\u028c": ("AH",), "\u00e6": ("AE",),
    "e": ("EY",), "\u025b": ("EH",), "\u0259": ("AH",),
    "i": ("IY",), "\u026a": ("IH",), "\u0268": ("IH",),
    "o": ("OW",), "\u0254": ("AO",), "\u0252": ("AA",), "\u00f8": ("UH",), "\u0153": ("AH",),
    "\u0275": ("UH",),
    "u": ("UW",), "\u028a": ("UH",), "\u026f": ("UW",), "y": ("UW",), "\u028f": ("UH",),
    "\u025c": ("ER",), "\u025a": ("ER",), "\u025d": ("ER",),
    "p": ("P",), "b": ("B",), "m": ("M",), "\u03b2": ("B",),
    "f": ("F",), "v": ("V",), "\u0271": ("M",),
    "\u03b8": ("TH",), "\u00f0": ("DH",),
    "t": ("T",), "d": ("D",),
    "k": ("K",), "g": ("G",), "\u0261": ("G",), "x": ("HH",), "\u0263": ("G",), "h": ("HH",),
    "\u014b": ("NG",), "c": ("K",), "\u025f": ("G",), "q": ("K",),
    "\u0283": ("SH",), "\u0292": ("ZH",), "\u0255": ("SH",), "\u0291": ("ZH",), "\u00e7": ("HH",),
    "t\u0283": ("CH",), "d\u0292": ("JH",), "t\u0255": ("CH",), "d\u0291": ("JH",),
    "s": ("S",), "z": ("Z",), "ts": ("T", "S"), "dz": ("D", "Z"),
    "n": ("N",), "\u0272": ("N",),
    "l": ("L",), "\u028e": ("L",), "\u026d": ("L",), "\u026b": ("L",),
    "r": ("R",), "\u027e": ("D",), "\u0279": ("R",), "\u0281": ("R",), "\u0280": ("R",),
    "j": ("Y",), "\u029d": ("Y",), "w": ("W",), "\u0265": ("W",),
}
ALIGN_PAD_S = 0.3
"""Silence added around a recording before cross-lingual alignment: prompts cut right at the
first sound otherwise find no path through the transcript."""


_WORD_NUMBERS = itertools.count()


@functools.lru_cache(maxsize=1)
def _crosslingual_decoder():
    """One aligner for every utterance: the words of each are added to its dictionary."""
    return _aligner()


def align_ipa(audio: np.ndarray, words: list[list[str]]) -> list[Segment]:
    """Cross-lingual forced alignment: audio [N] float32 16 kHz, each word's IPA symbols (keys
    of IPA_TO_VISEME) -> one segment per symbol with its viseme; [] where pocketsphinx finds
    no path."""
    words = [w for w in words if w]
    if not words:
        return []
    decoder = _crosslingual_decoder()
    names = []
    for i, word in enumerate(words):
        # a dictionary entry per word spoken (pocketsphinx cannot replace an entry)
        names.append(f"ipa-word-{next(_WORD_NUMBERS)}")
        decoder.add_word(names[-1], " ".join(p for s in word for p in IPA_TO_ARPABET[s]),
                         update=i == len(words) - 1)
    pad = np.zeros(int(ALIGN_PAD_S * SAMPLE_RATE), np.float32)
    try:
        alignment = _force_align(decoder, _pcm(np.concatenate([pad, audio, pad])),
                                 " ".join(names))
    except RuntimeError:  # no path through the transcript
        return []
    if alignment is None:
        return []
    by_name = dict(zip(names, words))
    segments = []
    for word in alignment:
        if word.name not in by_name:
            continue
        frame = POCKETSPHINX_FRAME_S
        phones = [(p.start * frame - ALIGN_PAD_S, (p.start + p.duration) * frame - ALIGN_PAD_S)
                  for p in word]
        for symbol in by_name[word.name]:
            size = len(IPA_TO_ARPABET[symbol])
            span, phones = phones[:size], phones[size:]
            if not span:
                return []
            segments.append(Segment(symbol, max(span[0][0], 0.0), span[-1][1],
                                    ipa_to_viseme(symbol)))
    return segments
