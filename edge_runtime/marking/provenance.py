"""What every output says about itself: that it is AI-generated, by which generator and
version, from which bundle (its name and the sha256 of its bundle.yaml, which lists the
sha256 of every graph), and when it was made. The same fields go into every file format
(edge_runtime.marking.formats)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from edge_runtime.bundle import BUNDLE_FILE, Bundle, sha256_file

GENERATOR = "TempoSync Edge"
STATEMENT = ("AI-generated: a synthetic talking face rendered by TempoSync Edge; the person "
             "never said or did this")
FIELDS = ("ai_generated", "generator", "bundle", "bundle_sha256", "creation_time", "comment")
"""The metadata keys, in the order they are written."""


def generator_version() -> str:
    try:
        return f"{GENERATOR} {metadata.version('temposync-edge')}"
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return f"{GENERATOR} (not installed)"


@dataclass(frozen=True)
class Provenance:
    bundle: str
    """The bundle's name ("unknown" when frames come without one)."""
    bundle_sha256: str
    """sha256 of the bundle's bundle.yaml ("" when unknown)."""
    generator: str
    created: datetime

    @classmethod
    def of_bundle(cls, bundle: Bundle, root: Path) -> Provenance:
        return cls(bundle.name, sha256_file(root / BUNDLE_FILE), generator_version(),
                   datetime.now(UTC))

    @classmethod
    def unknown(cls) -> Provenance:
        """For frames written without a bundle at hand: still marked as generated."""
        return cls("unknown", "", generator_version(), datetime.now(UTC))

    def fields(self) -> dict[str, str]:
        """FIELDS -> text."""
        return {"ai_generated": "true", "generator": self.generator, "bundle": self.bundle,
                "bundle_sha256": self.bundle_sha256,
                "creation_time": self.created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "comment": STATEMENT}
