"""The example inputs shipped in examples/ (``tsd data examples``): a reference photo and a
speech wav of a held-out (test-split) identity of a synthetic dataset, so the demo bundle
never saw that face or voice in training.

- face.png: the middle frame of the speaker's first clip, enlarged 2x onto a wider canvas
  (a "photo" of another size and aspect: edge-run must find the face and crop it);
- speech.wav: the audio of another clip of the same speaker (16 kHz mono, espeak-ng);
- PROVENANCE.md: which dataset, clip and frame they came from, and the sentence spoken.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2

from training.atomic import write_text
from training.data.manifest import Manifest
from training.data.media import read_frame
from training.errors import UserError


def write_examples(manifest: Manifest, out: Path, speaker: str | None = None) -> list[Path]:
    test = manifest.split("test")
    if not test:
        raise UserError(f"{manifest.path}: no test clips to take examples from")
    speaker = speaker or test[0].speaker
    clips = [c for c in test if c.speaker == speaker]
    if len(clips) < 2:
        raise UserError(f"{manifest.path}: speaker {speaker!r} needs two test clips")
    photo_clip, speech_clip = clips[0], max(clips[1:], key=lambda c: c.frame_count)
    frame = read_frame(manifest.resolve(photo_clip.frames), photo_clip.frame_count // 2)
    big = cv2.resize(frame, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    photo = cv2.copyMakeBorder(big, 24, 24, 96, 96, cv2.BORDER_REPLICATE)
    out.mkdir(parents=True, exist_ok=True)
    face, speech = out / "face.png", out / "speech.wav"
    tmp = out / ".face.tmp.png"
    cv2.imwrite(str(tmp), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    tmp.replace(face)
    shutil.copyfile(manifest.resolve(speech_clip.audio), out / ".speech.tmp.wav")
    (out / ".speech.tmp.wav").replace(speech)
    provenance = out / "PROVENANCE.md"
    write_text(provenance, (
        "# Example inputs\n\n"
        "Made by `tsd data examples --data DATA --out examples` from the synthetic dataset "
        f"`{manifest.path}` (`make demo`: configs/data/synth-demo.yaml), speaker "
        f"`{speaker}`, a test-split identity the demo models never trained on. Synthetic "
        "media: a procedurally drawn face and an espeak-ng voice, no real person.\n\n"
        f"- `face.png`: frame {photo_clip.frame_count // 2} of clip `{photo_clip.id}`, "
        f"enlarged 2x onto a {photo.shape[1]}x{photo.shape[0]} canvas (edges replicated).\n"
        f"- `speech.wav`: the audio of clip `{speech_clip.id}` "
        f"({speech_clip.frame_count / speech_clip.fps:.1f} s, 16 kHz mono): "
        f"\"{speech_clip.text}\"\n"))
    return [face, speech, provenance]
