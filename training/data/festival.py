"""Speech with exact phone times from Festival's voices (``tsd data festival``).

Debian's ``festival`` with ``festvox-kallpc16k`` (kal_diphone, an American man) and
``festvox-kdlpc16k`` (ked_diphone, another) concatenates diphones cut from real recordings, at
16 kHz; ``festvox-us-slt-hts`` (cmu_us_slt_arctic_hts, an American woman) is a statistical
parametric voice trained on CMU ARCTIC recordings, at 32 kHz (resampled to 16 kHz).
``utt.save.segs`` lists each phone's end time, so the labels are exact: other kinds of voice
than espeak-ng's formant synthesis, and the place where pocketsphinx forced
alignment (the labels of the real-speech set) can be checked against the truth.

Sentences, the held-out rule and the set's files are training/data/ttsset.py's.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from edge_runtime.visemes.vocabulary import festival_to_viseme
from training.data.alignment import Segment
from training.data.media import read_wav, resample
from training.data.ttsset import TtsUtterance, build_tts_set
from training.errors import UserError

VOICES = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")
"""Debian packages festvox-kallpc16k, festvox-kdlpc16k and festvox-us-slt-hts."""
INSTALL = "apt-get install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"
BATCH = 20
"""Utterances per festival process."""


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", " ").replace('"', " ") + '"'


def synthesize_batch(texts: list[str], voice: str, language: str = "english",
                     encoding: str = "utf-8", install: str = INSTALL) -> list[TtsUtterance]:
    """Speak each text with one festival process; ``language`` names the voice's phone set
    (vocabulary.festival_to_viseme), ``encoding`` the text encoding its front end reads and
    ``install`` the packages that provide it."""
    if shutil.which("festival") is None:
        raise UserError(f"festival is not installed ({install})")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        script = [f"(voice_{voice})"]
        for i, text in enumerate(texts):
            script += [f"(set! u (Utterance Text {_scheme_string(text)}))", "(utt.synth u)",
                       f'(utt.save.wave u "{folder}/{i}.wav" \'riff)',
                       f'(utt.save.segs u "{folder}/{i}.segs")']
        (folder / "script.scm").write_bytes(("\n".join(script) + "\n").encode(encoding))
        done = subprocess.run(["festival", "-b", str(folder / "script.scm")],
                              capture_output=True, text=True, timeout=600)
        if done.returncode or not (folder / f"{len(texts) - 1}.segs").is_file():
            reason = (done.stderr.strip() or done.stdout.strip()).splitlines()
            raise UserError(f"festival voice {voice} failed: {reason[-1] if reason else '?'} "
                            f"({install})")
        return [_read(folder / f"{i}.wav", folder / f"{i}.segs", language)
                for i in range(len(texts))]


def _read(wav: Path, segs: Path, language: str) -> TtsUtterance:
    audio = resample(*read_wav(wav))
    phones, start = [], 0.0
    for line in segs.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) != 3 or line.startswith("#"):
            continue
        end = float(parts[0])
        phones.append(Segment(parts[2], start, end, festival_to_viseme(parts[2], language)))
        start = end
    return TtsUtterance(audio, phones)


def build_festival(out: Path, utterances: int, seed: int = 0, fps: int = 25,
                   check: int = 20) -> dict:
    """OUT/speech.jsonl: ``utterances`` sentences per voice with exact labels, and
    OUT/alignment-check.json (training.data.ttsset.build_tts_set)."""
    return build_tts_set(out, "festival", VOICES, synthesize_batch, utterances, seed, fps,
                         check, BATCH)
