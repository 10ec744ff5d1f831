"""Real recorded English letters and words for the recogniser: KLettres' (``tsd data
klettres``).

Debian's ``klettres-data`` (KDE's alphabet tutor, GPL-2+) ships, per language, each letter's
name and a few short words spoken by one person: an American speaker (``en``: 26 letters,
17 words) and a British one (``en_GB``: 26 letters, 23 words), 44.1 kHz Ogg Vorbis. A file's
name is what it says (``alpha/B.ogg`` "b", ``syllab/dog.ogg`` "dog"; CMUdict spells out each
letter's name); the bare sounds ``ch`` and ``th`` are not words and are left out. Labelled by
pocketsphinx forced alignment as the real-speech set is, after silence is added around each
recording (they start and end on the sound); training speech: two more real voices, vowels
above all (the letters' names are mostly a consonant and a long vowel).
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from training.data.hedgewars import read_line
from training.data.realspeech import Recording, align_recordings
from training.errors import UserError

SOUNDS = Path("/usr/share/klettres")
INSTALL = "apt-get install klettres-data"
LANGUAGES = ("en", "en_GB")
SPOKEN = {("en_GB", "z"): "zed"}
"""(language, file name) -> the word spoken, where the name is not it."""
NOT_WORDS = ("ch", "th")
"""Recordings of a bare consonant sound."""


def spoken(language: str, name: str) -> list[str] | None:
    """What a recording says (lower-case file name), None for a bare sound."""
    if name in NOT_WORDS:
        return None
    return [SPOKEN.get((language, name), name)]


def recordings(sounds: Path) -> list[Recording]:
    out = []
    for language in LANGUAGES:
        for folder in ("alpha", "syllab"):
            for path in sorted((sounds / language / folder).glob("*.ogg")):
                name = path.stem.lower()
                out.append(Recording(f"klettres-{language}-{folder}-{name}",
                                     f"klettres-{language}", path, spoken(language, name),
                                     "not a word"))
    return out


def build_klettres(out: Path, sounds: Path = SOUNDS, fps: int = 25) -> dict:
    """OUT/speech.jsonl: every English letter and word that aligns, with its visemes -> a
    report of what was used and what was left out."""
    missing = [lang for lang in LANGUAGES if not (sounds / lang / "alpha").is_dir()]
    if missing:
        raise UserError(f"{sounds}: no KLettres recordings for {', '.join(missing)} ({INSTALL})")
    items = recordings(sounds)
    return align_recordings(out, tqdm(items, desc="klettres", unit="word"), read_line,
                            "klettres", fps)
