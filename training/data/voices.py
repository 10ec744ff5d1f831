"""Speech sets with exact phone times from espeak-ng's voices (``tsd data espeak``): the
training speech of the learned viseme recogniser beside Festival's voices
(training/data/festival.py), in the same speech manifest as the real-speech evaluation set.

Each utterance gets its own voice (base, variant, rate, pitch and range drawn as for the
synthetic talking-face identities) and a short lead and tail of silence, so a recogniser learns
where speech starts and stops. Sentences equal to a real-speech evaluation transcript are
skipped, as in the Festival set.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from training.config import SynthConfig
from training.data.alignment import frame_visemes
from training.data.media import SAMPLE_RATE
from training.data.realspeech import frame_count, write_speech_clip, write_speech_manifest
from training.data.speech import synthesize
from training.data.ttsset import held_out_sentence

LEAD_S = (0.1, 0.4)
"""Silence before and after each utterance (uniform range, seconds)."""


def build_espeak(out: Path, utterances: int, seed: int = 0, fps: int = 25) -> dict:
    """OUT/speech.jsonl: ``utterances`` espeak-ng utterances, each in a voice of its own."""
    from training.data.synth import sample_voice, sentence, shift_segments

    out.mkdir(parents=True, exist_ok=True)
    config = SynthConfig()
    clips = []
    for i in tqdm(range(utterances), desc="espeak-ng", unit="utt"):
        rng = np.random.default_rng([seed, i, 23])
        text = sentence(rng, config)
        while held_out_sentence(text):
            text = sentence(rng, config)
        voice = sample_voice(rng)
        spoken = synthesize(text, voice)
        lead, tail = (int(rng.uniform(*LEAD_S) * SAMPLE_RATE) for _ in range(2))
        audio = np.concatenate([np.zeros(lead, np.float32), spoken.audio,
                                np.zeros(tail, np.float32)])
        phones = shift_segments(spoken.phones, lead / SAMPLE_RATE)
        truth = frame_visemes(phones, frame_count(audio, fps), fps)
        alignment = {"text": text, "voice": asdict(voice),
                     "phones": [p.to_dict() for p in phones]}
        clips.append(write_speech_clip(out, f"espeak-{i:05d}", audio, truth, alignment,
                                       f"{voice.base}+{voice.variant}", "espeak-ng", "exact",
                                       text, fps))
    write_speech_manifest(out, clips)
    return {"utterances": len(clips), "seconds": sum(c.frame_count for c in clips) / fps}
