"""espeak-ng speech: deterministic utterances with phone and word timing."""

from __future__ import annotations

import numpy as np

from training.data.media import SAMPLE_RATE
from training.data.speech import Espeak, Voice, synthesize

A = Voice(base="en-us", variant="m1", rate_wpm=157, pitch=29, pitch_range=33)
B = Voice(base="en", variant="f2", rate_wpm=180, pitch=70, pitch_range=60)


def test_utterances_do_not_depend_on_what_was_spoken_before():
    first = synthesize("the toy is here, such a joy", A)
    synthesize("something else entirely", B)
    Espeak.get().phonemes("interleaved phoneme lookups")
    again = synthesize("the toy is here, such a joy", A)
    assert np.array_equal(first.audio, again.audio)
    assert first.phones == again.phones and first.words == again.words


def test_phones_and_words_cover_the_audio_in_order():
    u = synthesize("hello there, my friend", A)
    duration = len(u.audio) / SAMPLE_RATE
    assert [w.label for w in u.words] == ["hello", "there", "my", "friend"]
    assert all(a.end <= b.start + 1e-9 for a, b in zip(u.words, u.words[1:]))
    assert u.phones[0].start == 0.0 and abs(u.phones[-1].end - duration) < 0.02
    assert all(abs(a.end - b.start) < 1e-9 for a, b in zip(u.phones, u.phones[1:]))
    labels = [p.label for p in u.phones]
    assert "_:" in labels  # the comma is a pause
