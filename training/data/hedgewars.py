"""Real recorded English voice lines for the recogniser: Hedgewars' hedgehog voices
(``tsd data hedgewars``).

Debian's ``hedgewars-data`` (the Hedgewars game's data, its sounds GFDL-1.3) ships voice packs,
each one person acting a character ("Pirate", "Surfer", "Mobster", ...), about 45 short lines
each ("Take cover!", "I'll get you!"). A file's name is its line (``Takecover.ogg``); the
lines are the transcripts (LINES), the cries and grunts (``Ooff1``, ``Laugh``) are not speech
and are left out. Acted, shouted and sung, with accents, they are the variety of real voices
the recogniser lacks; they are labelled by pocketsphinx forced alignment as the real-speech
set is, after silence is added around each line (the recordings start and end on the sound,
and alignment fails on about half of them without it), and a line it cannot place is left
out. Training speech only: the labels of acted speech are less sure than a reader's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from training.data.media import read_audio
from training.data.realspeech import Recording, align_recordings, with_silence
from training.errors import UserError

VOICES = Path("/usr/share/games/hedgewars/Data/Sounds/voices")
INSTALL = "apt-get install hedgewars-data"
ENGLISH = ("British", "Classic", "Default", "HillBilly", "Mobster", "Pirate", "Russian",
           "Singer", "Surfer")
"""The packs that speak English ("Russian" with a Russian accent); Default_es, _pl, _ru and
_uk speak other languages and Robot is a vocoder."""
LINES = {
    "Amazing": "amazing", "Boring": "boring", "Brilliant": "brilliant", "Bugger": "bugger",
    "Byebye": "bye bye", "Comeonthen": "come on then", "Coward": "coward",
    "Cutitout": "cut it out", "Enemydown": "enemy down", "Excellent": "excellent",
    "Fire": "fire", "Firstblood": "first blood", "Flawless": "flawless",
    "Gonnagetyou": "gonna get you", "Grenade": "grenade", "Hello": "hello", "Hurry": "hurry",
    "Illgetyou": "i'll get you", "Incoming": "incoming", "Justyouwait": "just you wait",
    "Kamikaze": "kamikaze", "Leavemealone": "leave me alone", "Melon": "melon",
    "Missed": "missed", "Nutter": "nutter", "Ohdear": "oh dear", "Oops": "oops",
    "Reinforcements": "reinforcements", "Revenge": "revenge", "Runaway": "run away",
    "Sameteam": "same team", "Solong": "so long", "Stupid": "stupid", "Takecover": "take cover",
    "Thisoneismine": "this one is mine", "Traitor": "traitor", "Victory": "victory",
    "Watchit": "watch it", "Watchthis": "watch this", "Whatthe": "what the",
    "Yessir": "yes sir", "Youllregretthat": "you'll regret that"}
"""File name -> the words spoken, for every line that is words (CMUdict knows each)."""


def read_line(path: Path) -> np.ndarray:
    """A line's Ogg Vorbis file -> mono audio [N] float32 at 16 kHz, silence around it."""
    audio = read_audio(path)
    if audio is None:
        raise UserError(f"{path}: no audio")
    return with_silence(audio)


def recordings(voices: Path) -> list[Recording]:
    """Every recording of the English packs, in name order; those not in LINES without words."""
    out = []
    for pack in ENGLISH:
        for path in sorted((voices / pack).glob("*.ogg")):
            words = LINES.get(path.stem)
            out.append(Recording(f"hedgewars-{pack}-{path.stem}", f"hedgewars-{pack}", path,
                                 words.split() if words else None, "not words"))
    return out


def build_hedgewars(out: Path, voices: Path = VOICES, fps: int = 25) -> dict:
    """OUT/speech.jsonl: every line of the English packs that aligns, with its visemes -> a
    report of what was used and what was left out."""
    missing = [pack for pack in ENGLISH if not (voices / pack).is_dir()]
    if missing:
        raise UserError(f"{voices}: no Hedgewars voice pack {', '.join(missing)} ({INSTALL})")
    lines = recordings(voices)
    return align_recordings(out, tqdm(lines, desc="hedgewars", unit="line"), read_line,
                            "hedgewars", fps)
