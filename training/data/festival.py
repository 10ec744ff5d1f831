"""Speech with exact phone times from Festival's voices (``tsd data festival``).

Debian's ``festival`` with ``festvox-kallpc16k`` (kal_diphone, an American man) and
``festvox-kdlpc16k`` (ked_diphone, another) concatenates diphones cut from real recordings, at
16 kHz; ``festvox-us-slt-hts`` (cmu_us_slt_arctic_hts, an American woman) is a statistical
parametric voice trained on CMU ARCTIC recordings, at 32 kHz (resampled to 16 kHz).
``utt.save.segs`` lists each phone's end time, so the labels are exact: other kinds of voice
than espeak-ng's formant synthesis, and the place where pocketsphinx forced
alignment (the labels of the real-speech set) can be checked against the truth.

Sentences come from the synthetic dataset's word sampler (training.data.synth.sentence); any
that equals a transcript of the real-speech evaluation set is skipped, so those utterances
stay out of training.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.visemes.vocabulary import festival_to_viseme
from training.atomic import write_text
from training.config import SynthConfig
from training.data.alignment import Segment, frame_visemes
from training.data.media import SAMPLE_RATE, read_wav, resample
from training.data.realspeech import (
    RAW_UTTERANCES,
    agreement,
    frame_count,
    label,
    packaged_utterances,
    write_speech_clip,
    write_speech_manifest,
)
from training.errors import UserError

VOICES = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")
"""Debian packages festvox-kallpc16k, festvox-kdlpc16k and festvox-us-slt-hts."""
INSTALL = "apt-get install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"
BATCH = 20
"""Utterances per festival process."""


@dataclass
class FestivalUtterance:
    audio: np.ndarray
    """[N] float32 16 kHz."""
    phones: list[Segment]
    """Festival phones with their viseme, contiguous from 0."""


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", " ").replace('"', " ") + '"'


def synthesize_batch(texts: list[str], voice: str) -> list[FestivalUtterance]:
    """Speak each text with one festival process."""
    if shutil.which("festival") is None:
        raise UserError(f"festival is not installed ({INSTALL})")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        script = [f"(voice_{voice})"]
        for i, text in enumerate(texts):
            script += [f"(set! u (Utterance Text {_scheme_string(text)}))", "(utt.synth u)",
                       f'(utt.save.wave u "{folder}/{i}.wav" \'riff)',
                       f'(utt.save.segs u "{folder}/{i}.segs")']
        (folder / "script.scm").write_text("\n".join(script) + "\n")
        done = subprocess.run(["festival", "-b", str(folder / "script.scm")],
                              capture_output=True, text=True, timeout=600)
        if done.returncode or not (folder / f"{len(texts) - 1}.segs").is_file():
            reason = (done.stderr.strip() or done.stdout.strip()).splitlines()
            raise UserError(f"festival voice {voice} failed: {reason[-1] if reason else '?'} "
                            "(apt-get install festvox-kallpc16k festvox-kdlpc16k)")
        return [_read(folder / f"{i}.wav", folder / f"{i}.segs") for i in range(len(texts))]


def _read(wav: Path, segs: Path) -> FestivalUtterance:
    audio, rate = read_wav(wav)
    if rate != SAMPLE_RATE:
        audio = resample(audio, rate, SAMPLE_RATE)
    phones, start = [], 0.0
    for line in segs.read_text().splitlines():
        parts = line.split()
        if len(parts) != 3 or line.startswith("#"):
            continue
        end = float(parts[0])
        phones.append(Segment(parts[2], start, end, festival_to_viseme(parts[2])))
        start = end
    return FestivalUtterance(audio, phones)


@functools.lru_cache(maxsize=1)
def _held_out() -> frozenset[str]:
    return frozenset({" ".join(words) for _, _, _, words in packaged_utterances()}
                     | set(RAW_UTTERANCES.values()))


def held_out_sentence(text: str) -> bool:
    """Whether ``text`` is a transcript of the real-speech evaluation set (never trained on)."""
    return text.lower().strip(".").replace(",", "") in _held_out()


def _sentences(count: int, seed: int) -> list[str]:
    from training.data.synth import sentence

    rng = np.random.default_rng([seed, 22])
    config = SynthConfig()
    out: list[str] = []
    while len(out) < count:
        text = sentence(rng, config)
        if not held_out_sentence(text):
            out.append(text)
    return out


def build_festival(out: Path, utterances: int, seed: int = 0, fps: int = 25,
                   check: int = 20) -> dict:
    """OUT/speech.jsonl: ``utterances`` sentences per voice with exact labels; and
    OUT/alignment-check.json: pocketsphinx forced alignment of the first ``check`` of them
    against those exact labels (how far the real-speech set's labels can be trusted)."""
    out.mkdir(parents=True, exist_ok=True)
    texts = _sentences(utterances, seed)
    clips, rows = [], []
    for voice in VOICES:
        spoken = []
        for first in range(0, len(texts), BATCH):
            spoken += synthesize_batch(texts[first:first + BATCH], voice)
        for i, (text, utt) in enumerate(zip(texts, spoken, strict=True)):
            cid = f"{voice}-{i:04d}"
            truth = frame_visemes(utt.phones, frame_count(utt.audio, fps), fps)
            if i < check:
                aligned = label(utt.audio, text.lower().replace(",", "").strip(".").split(), fps)
                rows.append((len(truth), *(agreement(aligned[0], truth) if aligned else (0, 0)),
                             aligned is None))
            alignment = {"text": text, "phones": [p.to_dict() for p in utt.phones]}
            clips.append(write_speech_clip(out, cid, utt.audio, truth, alignment, voice,
                                           "festival", "exact", text, fps))
    write_speech_manifest(out, clips)
    frames = sum(n for n, _, _, _ in rows)
    report = {"utterances": len(clips), "seconds": sum(c.frame_count for c in clips) / fps,
              "forced_alignment_vs_exact": {
                  "utterances": len(rows), "frames": frames,
                  "agreement": sum(n * a for n, a, _, _ in rows) / frames,
                  "agreement_1frame": sum(n * b for n, _, b, _ in rows) / frames,
                  "failed_utterances": sum(int(f) for *_, f in rows)}}
    write_text(out / "alignment-check.json", json.dumps(report, indent=2))
    return report

