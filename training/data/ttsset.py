"""Speech sets spoken by packaged TTS voices with exact phone times (Festival's in
training/data/festival.py, flite's in training/data/flite.py): their sentences, the rule that
keeps the real-speech evaluation's transcripts out, and the set builder they share.

Each set also reports how far pocketsphinx forced alignment (the labels of the real-speech
set) agrees with the exact labels, on the first ``check`` utterances of each voice.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from training.atomic import write_text
from training.config import SynthConfig
from training.data.alignment import Segment, frame_visemes
from training.data.realspeech import (
    RAW_UTTERANCES,
    agreement,
    frame_count,
    label,
    packaged_utterances,
    write_speech_clip,
    write_speech_manifest,
)


@dataclass
class TtsUtterance:
    audio: np.ndarray
    """[N] float32 16 kHz."""
    phones: list[Segment]
    """The voice's phones with their viseme, contiguous from 0."""


Speaker = Callable[[list[str], str], list[TtsUtterance]]
"""(texts, voice) -> one utterance per text."""


@functools.lru_cache(maxsize=1)
def _held_out() -> frozenset[str]:
    return frozenset({" ".join(words) for _, _, _, words in packaged_utterances()}
                     | set(RAW_UTTERANCES.values()))


def held_out_sentence(text: str) -> bool:
    """Whether ``text`` is a transcript of the real-speech evaluation set (never trained on)."""
    return text.lower().strip(".").replace(",", "") in _held_out()


def sentences(count: int, seed: int) -> list[str]:
    """``count`` sentences of the synthetic dataset's word sampler, none held out."""
    from training.data.synth import sentence

    rng = np.random.default_rng([seed, 22])
    config = SynthConfig()
    out: list[str] = []
    while len(out) < count:
        text = sentence(rng, config)
        if not held_out_sentence(text):
            out.append(text)
    return out


def build_tts_set(out: Path, source: str, voices: tuple[str, ...], speak: Speaker,
                  utterances: int, seed: int, fps: int, check: int, batch: int,
                  texts_of: Callable[[str], list[str]] | None = None) -> dict:
    """OUT/speech.jsonl: ``utterances`` sentences per voice with exact labels, clips named
    VOICE-NNNN; OUT/alignment-check.json: forced alignment (English) against those labels on
    the first ``check`` of each voice. ``texts_of(voice)`` gives a voice its own texts
    (default: the same English sentences for every voice)."""
    out.mkdir(parents=True, exist_ok=True)
    if texts_of is None:
        english = sentences(utterances, seed)

        def texts_of(voice: str) -> list[str]:
            return english
    clips, rows = [], []
    with tqdm(total=utterances * len(voices), desc=source, unit="utt") as bar:
        for voice in voices:
            texts = texts_of(voice)
            spoken = []
            for first in range(0, len(texts), batch):
                spoken += speak(texts[first:first + batch], voice)
                bar.update(min(batch, len(texts) - first))
            for i, (text, utt) in enumerate(zip(texts, spoken, strict=True)):
                truth = frame_visemes(utt.phones, frame_count(utt.audio, fps), fps)
                if i < check:
                    words = text.lower().replace(",", "").strip(".").split()
                    aligned = label(utt.audio, words, fps)
                    rows.append((len(truth),
                                 *(agreement(aligned[0], truth) if aligned else (0, 0)),
                                 aligned is None))
                alignment = {"text": text, "phones": [p.to_dict() for p in utt.phones]}
                clips.append(write_speech_clip(out, f"{voice}-{i:04d}", utt.audio, truth,
                                               alignment, voice, source, "exact", text, fps))
    write_speech_manifest(out, clips)
    frames = sum(n for n, _, _, _ in rows)
    report = {"utterances": len(clips), "seconds": sum(c.frame_count for c in clips) / fps,
              "forced_alignment_vs_exact": {
                  "utterances": len(rows), "frames": frames,
                  "agreement": sum(n * a for n, a, _, _ in rows) / max(frames, 1),
                  "agreement_1frame": sum(n * b for n, _, b, _ in rows) / max(frames, 1),
                  "failed_utterances": sum(int(f) for *_, f in rows)}}
    write_text(out / "alignment-check.json", json.dumps(report, indent=2))
    return report
