"""One training set from several: a manifest whose rows point into the source datasets.

The demo recipe trains on the synthetic set and the real-texture set together; merging
writes no frames, only a manifest with every path rewritten relative to the new folder, so
the sources stay where they are and keep their own splits (identities never change split).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from training.data.manifest import (
    PATH_FIELDS,
    ClipRecord,
    ManifestError,
    read_manifest,
    write_manifest,
)


def _rebase(clip: ClipRecord, source_root: Path, out: Path) -> ClipRecord:
    moved = {field: os.path.relpath((source_root / getattr(clip, field)).resolve(), out.resolve())
             for field in PATH_FIELDS if getattr(clip, field) is not None}
    return dataclasses.replace(clip, **moved)


def merge_datasets(sources: list[Path], out: Path) -> list[ClipRecord]:
    """Write OUT/manifest.jsonl with every clip of every source; clip ids and speakers must
    not repeat across sources (a speaker in two sets could sit in two splits)."""
    out.mkdir(parents=True, exist_ok=True)
    clips: list[ClipRecord] = []
    origin: dict[str, Path] = {}
    speaker_origin: dict[str, Path] = {}
    for source in sources:
        manifest = read_manifest(source)
        for clip in manifest.clips:
            if clip.id in origin:
                raise ManifestError(f"{manifest.path}: clip id {clip.id!r} is also in "
                                    f"{origin[clip.id]}")
            if speaker_origin.setdefault(clip.speaker, manifest.path) != manifest.path:
                raise ManifestError(f"{manifest.path}: speaker {clip.speaker!r} is also in "
                                    f"{speaker_origin[clip.speaker]}")
            origin[clip.id] = manifest.path
            clips.append(_rebase(clip, manifest.root, out))
    write_manifest(out / "manifest.jsonl", clips)
    read_manifest(out)
    return clips
