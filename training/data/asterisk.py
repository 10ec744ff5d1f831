"""Real recorded speech for recogniser training: the Asterisk PBX prompts
(``tsd data asterisk --language en|fr|it|ru|es``).

Debian's ``asterisk-core-sounds-LANG-g722`` ships about 500-600 prompts per language recorded
by professional voices as 16 kHz G.722, and ``asterisk-core-sounds-LANG`` their transcripts
(core-sounds-LANG.txt): Allison Smith in English and Mexican Spanish and June Wallack in
Canadian French (CC-BY-SA 3.0), Carlo Flora in Italian and a woman's voice from ivrvoice.ru in
Russian (CC-BY 3.0), as the packages' copyright files state. Every other
training voice is synthetic; these are real people's recordings, read in a studio and coded
for the telephone, and the mouth shapes of their phones are the same visemes.

English is labelled like the real-speech evaluation set: pocketsphinx forced alignment of
the transcript through the viseme map (agreement with exact labels about 0.85 of frames,
0.98 within one frame, measured on Festival's and flite's voices); a prompt whose text is not
speech ("[beep]") or holds a word missing from CMUdict is left out, so no frame is labelled
from a guess. The other languages are aligned cross-lingually (alignment.align_ipa: espeak-ng's
IPA for the transcript, each phoneme standing in as its nearest English phones); a prompt with
a phoneme the IPA map lacks, or an English word espeak-ng marks as such, is left out. The
real-speech evaluation set is other speakers' recordings, never trained on.
"""

from __future__ import annotations

import functools
import gzip
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge_runtime.visemes.vocabulary import ipa_symbols
from training.data.alignment import align_ipa, cmudict, frame_visemes, normalise_word
from training.data.realspeech import Recording, align_recordings, frame_count, label
from training.data.ttsset import held_out_sentence
from training.errors import UserError


@dataclass(frozen=True)
class PromptSet:
    """One language's Asterisk prompts."""

    language: str
    """Asterisk's language code (the packages' suffix)."""
    voice: str
    """The prompts' folder under /usr/share/asterisk/sounds."""
    speaker: str
    """Speaker id in the speech manifest."""
    espeak: str | None
    """espeak-ng voice that writes the transcript's IPA for cross-lingual alignment; None for
    English (CMUdict)."""

    @property
    def sounds(self) -> Path:
        return Path("/usr/share/asterisk/sounds") / self.voice

    @property
    def transcripts(self) -> Path:
        return Path(f"/usr/share/doc/asterisk-core-sounds-{self.language}/"
                    f"core-sounds-{self.language}.txt.gz")

    @property
    def install(self) -> str:
        return (f"apt-get install asterisk-core-sounds-{self.language}-g722 "
                f"asterisk-core-sounds-{self.language}")


PROMPT_SETS: dict[str, PromptSet] = {p.language: p for p in (
    PromptSet("en", "en_US_f_Allison", "allison", None),
    PromptSet("fr", "fr_CA_f_June", "june", "fr"),
    PromptSet("it", "it_IT_m_Carlo", "carlo", "it"),
    PromptSet("ru", "ru_RU_f_IvrvoiceRU", "ivrvoice-ru", "ru"),
    PromptSet("es", "es_MX_f_Allison", "allison", "es-419"),
)}
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


def transcripts(prompts: PromptSet) -> dict[str, str]:
    """Prompt name (``digits/7``, ``agent-pass``) -> its transcript."""
    path = prompts.transcripts
    if not path.is_file():
        raise UserError(f"{path}: no Asterisk prompt transcripts ({prompts.install})")
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


def ipa_label(audio: np.ndarray, words: list[str], fps: int, espeak: str
              ) -> tuple[np.ndarray, dict] | None:
    """Cross-lingual forced alignment of a transcript in espeak-ng voice ``espeak``'s language
    -> (frame visemes, alignment record), None where it fails."""
    from training.data.speech import Espeak, Voice

    spoken = Espeak.get().ipa_words(" ".join(words), Voice(base=espeak))
    phones = align_ipa(audio, [_symbols(word) for word in spoken])
    if not phones:
        return None
    return (frame_visemes(phones, frame_count(audio, fps), fps),
            {"words": words, "ipa": spoken, "phones": [p.to_dict() for p in phones]})


def build_asterisk(out: Path, language: str = "en", sounds: Path | None = None,
                   fps: int = 25) -> dict:
    """OUT/speech.jsonl: every aligned prompt of ``language`` with its forced-alignment
    visemes -> a report of what was used and what was left out."""
    if language not in PROMPT_SETS:
        raise UserError(f"--language {language}: no Asterisk prompts known in that language "
                        f"(known: {' '.join(PROMPT_SETS)})")
    prompts = PROMPT_SETS[language]
    sounds = sounds or prompts.sounds
    if not sounds.is_dir():
        raise UserError(f"{sounds}: no Asterisk prompts ({prompts.install})")
    recordings = tqdm(list(_prompts(prompts, sounds)), desc=f"asterisk {language}",
                      unit="prompt")
    if prompts.espeak is None:
        return align_recordings(out, recordings, read_g722, prompts.speaker, "asterisk", fps,
                                label)
    return align_recordings(out, recordings, read_g722, prompts.speaker,
                            f"asterisk-{language}", fps,
                            functools.partial(ipa_label, espeak=prompts.espeak),
                            "forced-alignment-ipa")


def _prompts(prompts: PromptSet, sounds: Path) -> Iterator[Recording]:
    english = prompts.espeak is None
    for name, text in sorted(transcripts(prompts).items()):
        stem = name.replace("/", "-")
        if english:
            words = spoken_words(text)
            if words is not None and held_out_sentence(" ".join(words)):
                words = None
            yield Recording(f"{prompts.speaker}-{stem}", sounds / f"{name}.g722", words,
                            "not speech, unknown word or held out")
        else:
            words = None if "[" in text or not _ipa_known(text, prompts.espeak) else text.split()
            yield Recording(f"{prompts.speaker}-{prompts.language}-{stem}",
                            sounds / f"{name}.g722", words,
                            "not speech, or a phoneme the IPA map lacks")


def _symbols(word: list[str]) -> list[str]:
    return [symbol for phoneme in word for symbol in ipa_symbols(phoneme)]


def _ipa_known(text: str, espeak: str) -> bool:
    """Whether every phoneme espeak-ng writes for ``text`` is in the IPA map (an English word
    inside the prompt, which espeak-ng marks ``(en)``, is not)."""
    from training.data.speech import Espeak, Voice

    spoken = Espeak.get().ipa_words(text, Voice(base=espeak))
    try:
        for word in spoken:
            _symbols(word)
    except KeyError:
        return False
    return bool(spoken)
