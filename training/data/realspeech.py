"""Labelled speech without video, for the viseme recognisers: the speech manifest, and the
real-speech evaluation set built from the recordings Debian's ``pocketsphinx-testdata`` ships
(``tsd data real-speech``).

The recordings: five LibriVox utterances of one reader (``librivox/``, 24.7 s), five
"cards" utterances (``cards/``, 9.6 s) and "go forward ten meters" (``goforward.raw``, the
sentence of its grammar), 16 kHz mono, BSD-2 (CMU). Their word transcripts are force-aligned
with pocketsphinx (training.data.alignment.align_transcript) and the phones mapped through
the one viseme map. pocketsphinx's dictionary has no stress, so its ``AH`` is the schwa and
the vowel of "cut" alike; the stressed CMU lexicon that Festival ships
(``festlex-cmu``) tells them apart (schwa -> ``E``, the project's convention, as espeak-ng's
``@``).

Speech manifest (``speech.jsonl``, paths relative to its folder), one utterance a row:
``id``, ``speaker``, ``source``, ``labels`` (``forced-alignment`` or ``exact``), ``text``,
``fps``, ``frame_count``, ``audio`` (16 kHz mono 16-bit wav), ``visemes`` (``.npy`` int16
[frame_count], the viseme at each frame centre), ``alignment`` (JSON: words and phones with
their times).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.visemes.vocabulary import ARPABET_SCHWA, arpabet_to_viseme
from training.atomic import atomic_path, write_text
from training.data.alignment import Segment, align_transcript, frame_visemes
from training.data.media import SAMPLE_RATE, read_wav, write_wav
from training.errors import UserError

TESTDATA = Path("/usr/share/pocketsphinx/test/data")
FESTIVAL_LEXICON = Path("/usr/share/festival/dicts/cmu/cmudict-0.4.out")
SPEECH_MANIFEST = "speech.jsonl"
RAW_UTTERANCES = {"goforward": "go forward ten meters"}
"""Headerless 16 kHz recordings of the test data whose words are known (its grammar)."""
PERTURBATION_SNR_DB = 20.0
PERTURBATION_LEAD_S = 0.05


@dataclass(frozen=True)
class SpeechClip:
    id: str
    speaker: str
    source: str
    labels: str
    text: str
    fps: int
    frame_count: int
    audio: str
    visemes: str
    alignment: str


@dataclass(frozen=True)
class SpeechSet:
    path: Path
    clips: tuple[SpeechClip, ...]

    def resolve(self, relative: str) -> Path:
        return self.path.parent / relative

    def load(self, clip: SpeechClip) -> tuple[np.ndarray, np.ndarray]:
        """-> (audio [N] float32 16 kHz, visemes [frame_count] int)."""
        audio, rate = read_wav(self.resolve(clip.audio))
        if rate != SAMPLE_RATE:
            raise UserError(f"{self.resolve(clip.audio)}: {rate} Hz, expected {SAMPLE_RATE}")
        return audio, np.load(self.resolve(clip.visemes)).astype(int)


def write_speech_manifest(folder: Path, clips: list[SpeechClip]) -> Path:
    path = folder / SPEECH_MANIFEST
    lines = [json.dumps(dataclasses.asdict(c), sort_keys=True)
             for c in sorted(clips, key=lambda c: c.id)]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path


def write_speech_clip(out: Path, cid: str, audio: np.ndarray, truth: np.ndarray,
                      alignment: dict, speaker: str, source: str, labels: str, text: str,
                      fps: int) -> SpeechClip:
    """One utterance's files in ``out`` (wav, visemes .npy, alignment JSON; atomically) ->
    its manifest row."""
    write_wav(out / f"{cid}.wav", audio)
    with atomic_path(out / f"{cid}.visemes.npy") as tmp, open(tmp, "wb") as f:
        np.save(f, truth.astype(np.int16))
    write_text(out / f"{cid}.alignment.json", json.dumps(alignment, indent=1))
    return SpeechClip(cid, speaker, source, labels, text, fps, len(truth), f"{cid}.wav",
                      f"{cid}.visemes.npy", f"{cid}.alignment.json")


@dataclass(frozen=True)
class Recording:
    """A packaged recording to label by forced alignment."""

    id: str
    path: Path
    words: list[str] | None
    """The transcript's words; None where it is left out (``why``)."""
    why: str = ""
    """Why a recording without words is left out."""


Labeller = Callable[[np.ndarray, list[str], int], tuple[np.ndarray, dict] | None]
"""(audio, words, fps) -> (frame visemes, alignment record), None where alignment fails."""


def align_recordings(out: Path, recordings: Iterable[Recording],
                     read: Callable[[Path], np.ndarray], speaker: str, source: str,
                     fps: int, labeller: Labeller | None = None,
                     labels: str = "forced-alignment") -> dict:
    """OUT/speech.jsonl: every recording that has words, audio (``read`` -> 16 kHz mono) and
    a forced alignment (``labeller``, by default ``label``: English through CMUdict), with its
    visemes -> a report: utterances, seconds, and how many were left out for each reason."""
    labeller = labeller or label
    out.mkdir(parents=True, exist_ok=True)
    clips: list[SpeechClip] = []
    skipped: dict[str, int] = {}
    for item in recordings:
        why = item.why if item.words is None else "" if item.path.is_file() else "no audio"
        if not why:
            audio = read(item.path)
            labelled = labeller(audio, item.words, fps)
            if labelled is None:
                why = "alignment failed"
            else:
                clips.append(write_speech_clip(out, item.id, audio, *labelled, speaker, source,
                                               labels, " ".join(item.words), fps))
        if why:
            skipped[why] = skipped.get(why, 0) + 1
    if not clips:
        raise UserError(f"{out}: no {source} recording could be aligned")
    write_speech_manifest(out, clips)
    return {"utterances": len(clips), "seconds": sum(c.frame_count for c in clips) / fps,
            "skipped": skipped}


def read_speech_manifest(data: str | Path) -> SpeechSet:
    """A speech manifest, or a folder holding ``speech.jsonl``; every row and file checked."""
    data = Path(data)
    path = data / SPEECH_MANIFEST if data.is_dir() else data
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise UserError(f"{path}: cannot read speech manifest ({exc.strerror}; make one with "
                        "tsd data real-speech)") from None
    fields = {f.name for f in dataclasses.fields(SpeechClip)}
    clips = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
        if not isinstance(row, dict) or set(row) != fields:
            raise UserError(f"{path}:{number}: expected the fields {sorted(fields)}")
        clip = SpeechClip(**row)
        for name in ("audio", "visemes"):
            if not (path.parent / getattr(clip, name)).is_file():
                raise UserError(f"{path}:{number}: field {name!r}: missing file "
                                f"{path.parent / getattr(clip, name)}")
        clips.append(clip)
    if not clips:
        raise UserError(f"{path}: speech manifest has no utterances")
    return SpeechSet(path, tuple(clips))


def packaged_utterances(root: Path = TESTDATA) -> list[tuple[str, str, np.ndarray, list[str]]]:
    """(id, speaker, audio, words) of the test data's transcribed recordings."""
    if not root.is_dir():
        raise UserError(f"{root}: no pocketsphinx test recordings (apt-get install "
                        "pocketsphinx-testdata)")
    out = []
    for folder, transcript, speaker in (("librivox", "transcription", "librivox-austen"),
                                        ("cards", "cards.transcription", "cards")):
        for line in (root / folder / transcript).read_text().splitlines():
            match = re.match(r"\s*<s>(.*)</s>\s*\((\S+)\)", line)
            if match is None:
                continue
            audio, rate = read_wav(root / folder / f"{match.group(2)}.wav")
            if rate != SAMPLE_RATE:
                raise UserError(f"{root / folder}: {rate} Hz recordings, expected {SAMPLE_RATE}")
            out.append((f"{folder}-{match.group(2)}", speaker, audio, match.group(1).split()))
    for name, text in RAW_UTTERANCES.items():
        pcm = np.fromfile(root / f"{name}.raw", dtype="<i2")
        out.append((name, name, pcm.astype(np.float32) / 32768.0, text.split()))
    return out


@functools.lru_cache(maxsize=1)
def festival_lexicon() -> dict[str, tuple[str, ...]]:
    """word -> Festival phones of its first entry in the stressed CMU lexicon (``ax`` the
    schwa)."""
    if not FESTIVAL_LEXICON.is_file():
        raise UserError(f"{FESTIVAL_LEXICON}: no stressed CMU lexicon (apt-get install "
                        "festlex-cmu, which festival installs)")
    table: dict[str, tuple[str, ...]] = {}
    entry = re.compile(r'^\("([^"]+)" \S+ \((.*)\)\)$')
    for line in FESTIVAL_LEXICON.read_text(encoding="latin-1").splitlines():
        match = entry.match(line)
        if match and match.group(1) not in table:
            table[match.group(1)] = tuple(re.findall(r"[a-z]+", match.group(2)))
    return table


def mark_schwas(words: list[Segment], phones: list[Segment]) -> tuple[list[Segment], int]:
    """Unstressed ``AH`` -> ``AH0`` (the schwa) where the stressed lexicon has ``ax`` at the
    same place of the word -> (phones, number of AH left unresolved)."""
    lexicon = festival_lexicon()
    out, unresolved = [], 0
    for word in words:
        inside = [p for p in phones if word.start <= p.start < word.end]
        known = lexicon.get(re.sub(r"\(\d+\)$", "", word.label))
        same = known is not None and len(known) == len(inside)
        for i, phone in enumerate(inside):
            if phone.label == "AH" and same and known[i] == "ax":
                phone = Segment(ARPABET_SCHWA, phone.start, phone.end,
                                arpabet_to_viseme(ARPABET_SCHWA))
            elif phone.label == "AH" and not (same and known[i] == "ah"):
                unresolved += 1
            out.append(phone)
    return out, unresolved


def frame_count(audio: np.ndarray, fps: int) -> int:
    return len(audio) * fps // SAMPLE_RATE


def label(audio: np.ndarray, words: list[str], fps: int) -> tuple[np.ndarray, dict] | None:
    """Forced alignment -> (frame visemes, alignment record), None where it fails."""
    try:
        word_segs, phones = align_transcript(audio, words)
    except RuntimeError:  # pocketsphinx found no path through the transcript
        return None
    if not phones:
        return None
    phones, unresolved = mark_schwas(word_segs, phones)
    return (frame_visemes(phones, frame_count(audio, fps), fps),
            {"words": [w.to_dict() for w in word_segs], "phones": [p.to_dict() for p in phones],
             "unresolved_ah": unresolved})


def agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(frames equal, frames equal to b within +-1 frame) as fractions of a's frames."""
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    near = (a == b) | (a == np.roll(b, 1)) | (a == np.roll(b, -1))
    return float((a == b).mean()), float(near.mean())


def perturbations(audio: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Versions of an utterance the labels should not depend on (the lead-in is removed
    from the labels afterwards)."""
    rng = np.random.default_rng(seed)
    power = float(np.mean(audio ** 2))
    noise = rng.normal(0, np.sqrt(power / 10 ** (PERTURBATION_SNR_DB / 10)), len(audio))
    lead = np.zeros(int(PERTURBATION_LEAD_S * SAMPLE_RATE), np.float32)
    return {f"noise {PERTURBATION_SNR_DB:g} dB SNR": (audio + noise).astype(np.float32),
            "gain -12 dB": audio * np.float32(10 ** (-12 / 20)),
            f"{1000 * PERTURBATION_LEAD_S:g} ms lead-in": np.concatenate([lead, audio])}


def build_real_speech(out: Path, root: Path = TESTDATA, fps: int = 25) -> dict:
    """Write OUT/speech.jsonl with the packaged recordings and their forced-alignment
    visemes, and OUT/alignment-check.json: how far the labels move when the audio is
    perturbed (self-agreement of the forced alignment) -> that check."""
    out.mkdir(parents=True, exist_ok=True)
    clips, checks = [], {}
    for index, (cid, speaker, audio, words) in enumerate(packaged_utterances(root)):
        labelled = label(audio, words, fps)
        if labelled is None:
            raise UserError(f"{cid}: pocketsphinx could not align {' '.join(words)!r}")
        truth, record = labelled
        for name, perturbed in perturbations(audio, index).items():
            again = label(perturbed, words, fps)
            if again is None:
                checks.setdefault(name, []).append((len(truth), 0.0, 0.0, 1))
                continue
            labels = again[0]
            if name.endswith("lead-in"):
                labels = labels[round(PERTURBATION_LEAD_S * fps):]
            checks.setdefault(name, []).append((len(truth), *agreement(truth, labels), 0))
        clips.append(write_speech_clip(out, cid, audio, truth, record, speaker,
                                       "pocketsphinx-testdata", "forced-alignment",
                                       " ".join(words), fps))
    write_speech_manifest(out, clips)
    report = {"utterances": len(clips), "frames": sum(c.frame_count for c in clips),
              "seconds": sum(c.frame_count for c in clips) / fps,
              "self_agreement": {name: _pooled(rows) for name, rows in checks.items()}}
    write_text(out / "alignment-check.json", json.dumps(report, indent=2))
    return report


def _pooled(rows: list[tuple[int, float, float, int]]) -> dict:
    """Frame-weighted agreement; an utterance that failed to align counts as 0."""
    frames = sum(row[0] for row in rows)
    return {"frames": frames, "agreement": sum(n * a for n, a, _, _ in rows) / frames,
            "agreement_1frame": sum(n * b for n, _, b, _ in rows) / frames,
            "failed_utterances": sum(row[3] for row in rows)}
