"""Real recorded English speech for recogniser training: the Asterisk PBX prompts
(``tsd data asterisk``).

Debian's ``asterisk-core-sounds-en-g722`` ships about 570 prompts recorded by Allison Smith (a
professional voice, CC-BY-SA 3.0) as 16 kHz G.722, and ``asterisk-core-sounds-en`` their
transcripts (core-sounds-en.txt). Every other training voice is synthetic; these are a real
person's recordings, read in a studio and coded for the telephone. They are labelled like
the real-speech evaluation set: pocketsphinx forced alignment of the transcript through the
viseme map (agreement with exact labels about 0.85 of frames, 0.97 within one frame,
measured on Festival's and flite's voices). Prompts whose text is not speech ("[beep]") or
holds a word missing from CMUdict are left out, so no frame is labelled from a guess. The
real-speech evaluation set is another speakers' recordings, never trained on.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from training.data.alignment import cmudict, normalise_word
from training.data.realspeech import Recording, align_recordings
from training.data.ttsset import held_out_sentence
from training.errors import UserError

SOUNDS = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
INSTALL = "apt-get install asterisk-core-sounds-en-g722 asterisk-core-sounds-en"
NUMBERS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
           "fourteen fifteen sixteen seventeen eighteen nineteen").split()
TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
SYMBOLS = {"*": "star", "#": "pound", "&": "and", "%": "percent"}


def number_words(number: int) -> list[str] | None:
    """0-99 as spoken words; None beyond (left out rather than guessed)."""
    if number < 20:
        return [NUMBERS[number]]
    if number < 100:
        tens, ones = divmod(number, 10)
        return [TENS[tens - 2]] + ([NUMBERS[ones]] if ones else [])
    return None


def spoken_words(text: str) -> list[str] | None:
    """A prompt's transcript -> the words pocketsphinx aligns, or None where the prompt is
    not speech or has a word CMUdict does not know."""
    if "[" in text or not text.strip():
        return None
    for symbol, word in SYMBOLS.items():
        text = text.replace(symbol, f" {word} ")
    words: list[str] = []
    for token in re.findall(r"[A-Za-z']+|\d+", text.replace("-", " ")):
        spoken = number_words(int(token)) if token.isdigit() else [token.lower().strip("'")]
        if spoken is None or any(normalise_word(w) not in cmudict() for w in spoken):
            return None
        words += spoken
    return words or None


def transcripts(path: Path = TRANSCRIPTS) -> dict[str, str]:
    """Prompt name (``digits/7``, ``agent-pass``) -> its transcript."""
    if not path.is_file():
        raise UserError(f"{path}: no Asterisk prompt transcripts ({INSTALL})")
    out = {}
    for line in gzip.open(path, "rt", encoding="utf-8", errors="replace"):
        name, sep, text = line.partition(":")
        if sep and not line.startswith(";") and " " not in name.strip():
            out[name.strip()] = text.strip()
    return out


def read_g722(path: Path) -> np.ndarray:
    """A raw G.722 file -> audio [N] float32 at 16 kHz (PyAV's decoder, a runtime dependency
    already)."""
    import av

    with av.open(str(path), format="g722") as container:
        stream = container.streams.audio[0]
        frames = [frame.to_ndarray().reshape(-1) for frame in container.decode(stream)]
    if stream.rate != 16000 or not frames:
        raise UserError(f"{path}: not 16 kHz G.722 audio")
    return np.concatenate(frames).astype(np.float32) / 32768.0


def build_asterisk(out: Path, sounds: Path = SOUNDS, fps: int = 25) -> dict:
    """OUT/speech.jsonl: every aligned prompt with its forced-alignment visemes -> a report
    of what was used and what was left out."""
    if not sounds.is_dir():
        raise UserError(f"{sounds}: no Asterisk prompts ({INSTALL})")
    return align_recordings(out, tqdm(list(_prompts(sounds)), desc="asterisk", unit="prompt"),
                            read_g722, "allison", "asterisk", fps)


def _prompts(sounds: Path) -> Iterator[Recording]:
    for name, text in sorted(transcripts().items()):
        words = spoken_words(text)
        if words is not None and held_out_sentence(" ".join(words)):
            words = None
        yield Recording("allison-" + name.replace("/", "-"), sounds / f"{name}.g722", words,
                        "not speech, unknown word or held out")
