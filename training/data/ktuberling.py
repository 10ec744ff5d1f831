"""Real recorded English words for evaluation: KTuberling's spoken object names
(``tsd data ktuberling``).

Debian's ``ktuberling-data`` (KDE's "potato guy" game, GPL-2+) ships the name of each object
a child can place, spoken in English by one person (73 words, 44.1 kHz stereo Ogg Vorbis),
and a sound theme (``en.soundtheme``) that names each recording. The words are the
transcript: a name's theme prefix is dropped and compounds are split (``egypt_palmtree`` ->
"palm tree"). They are labelled as the real-speech set is (pocketsphinx forced alignment
through the viseme map); a word CMUdict lacks is left out rather than guessed. Another
speaker than every training voice and than the real-speech set's readers: isolated words,
not running speech, so it is reported beside that set, never trained on.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from tqdm import tqdm

from training.data.alignment import cmudict, normalise_word
from training.data.media import read_audio
from training.data.realspeech import Recording, align_recordings
from training.errors import UserError

SOUNDS = Path("/usr/share/ktuberling/sounds")
INSTALL = "apt-get install ktuberling-data"
THEMES = ("egypt", "moon", "pizzeria", "tv")
"""Playground prefixes of the sound names; what follows is the object."""
SPOKEN = {"palmtree": "palm tree", "fallingstar": "falling star", "moonwalker": "moon walker",
          "brocolli": "broccoli", "sphynx": "sphinx", "ufo": "u f o"}
"""Sound names that are not the spoken words as written: compounds and misspellings."""


def spoken_words(name: str) -> list[str] | None:
    """A sound's name -> the words spoken, or None where CMUdict lacks one."""
    theme, _, rest = name.partition("_")
    obj = rest if theme in THEMES and rest else name
    words = SPOKEN.get(obj, obj.replace("_", " ")).split()
    if not words or any(normalise_word(w) not in cmudict() for w in words):
        return None
    return words


def sound_names(theme: Path) -> dict[str, str]:
    """name -> recording (relative to the sounds folder) from a ``.soundtheme`` file."""
    text = theme.read_text(encoding="utf-8")
    return dict(re.findall(r'<sound\s+name="([^"]+)"\s+file="([^"]+)"', text))


def read_word(path: Path) -> np.ndarray:
    """A word's Ogg Vorbis file -> mono audio [N] float32 at 16 kHz."""
    audio = read_audio(path)
    if audio is None:
        raise UserError(f"{path}: no audio")
    return audio


def build_ktuberling(out: Path, sounds: Path = SOUNDS, fps: int = 25) -> dict:
    """OUT/speech.jsonl: every English word with its forced-alignment visemes -> a report of
    what was used and what was left out."""
    theme = sounds / "en.soundtheme"
    if not theme.is_file():
        raise UserError(f"{theme}: no KTuberling English sound theme ({INSTALL})")
    names = sorted(sound_names(theme).items())
    words = [Recording(f"ktuberling-{name}", sounds / file, spoken_words(name), "unknown word")
             for name, file in names]
    return align_recordings(out, tqdm(words, desc="ktuberling", unit="word"), read_word,
                            "ktuberling-en", "ktuberling", fps)
