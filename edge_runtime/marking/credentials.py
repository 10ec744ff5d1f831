"""C2PA Content Credentials for mp4 recordings (the optional ``c2pa`` extra:
``c2pa-python`` and ``cryptography``).

The mp4 sink signs each finished recording once, at close: a manifest whose ``c2pa.actions``
assertion says ``c2pa.created`` with the IPTC digital source type ``trainedAlgorithmicMedia``
by this generator and version, and an ``org.temposync.bundle`` assertion with the bundle's
name and sha256 (edge_runtime.marking.provenance). The signature comes from a device key made
on first use: a local EC P-256 CA and an end-entity certificate it issues (c2pa refuses a
bare self-signed certificate). The CA's private key is discarded once the certificate is
issued; the end-entity key and the chain are kept in one file, ``device.pem`` (0600, in a
0700 folder):

- the ``c2pa_keys`` setting / ``--c2pa-keys`` flag, else
- ``$STATE_DIRECTORY/c2pa`` (systemd's StateDirectory=: /var/lib/temposync/c2pa), else
- ``$XDG_STATE_HOME/temposync/c2pa``, else ``~/.local/state/temposync/c2pa``.

Readers validate the manifest's structure and hashes and report the signer as untrusted
(``signingCredential.untrusted``), as for any key that is not on a public trust list.
Without the extra the recording keeps its container tags and no manifest is written (logged
once).
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.util import find_spec
from pathlib import Path

from edge_runtime.marking.formats import SOURCE_TYPE
from edge_runtime.marking.provenance import GENERATOR, Provenance

log = logging.getLogger(__name__)

KEY_FILE = "device.pem"
BUNDLE_ASSERTION = "org.temposync.bundle"
VALID_YEARS = 20
_warned = False


def available() -> bool:
    """Whether the ``c2pa`` extra is installed."""
    return find_spec("c2pa") is not None and find_spec("cryptography") is not None


def note_unavailable() -> None:
    """Log, once per process, that recordings get no C2PA manifest."""
    global _warned
    if not _warned:
        _warned = True
        log.info("c2pa-python is not installed (pip install 'temposync-edge[c2pa]'): mp4 "
                 "recordings carry the provenance tags but no C2PA manifest")


def key_folder(setting: str | None = None) -> Path:
    """Where the device key lives (see the module's docstring)."""
    if setting:
        return Path(setting).expanduser()
    if os.environ.get("STATE_DIRECTORY"):  # systemd: the first of StateDirectory=
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0]) / "c2pa"
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "temposync" / "c2pa"


def _new_key_file() -> bytes:
    """A fresh EC P-256 CA, an end-entity certificate it signs -> PEM: the end-entity key,
    its certificate, the CA certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME,
                                             f"{GENERATOR} device (local, untrusted)")])

    def usage(sign: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=sign, content_commitment=False,
                             key_encipherment=False, data_encipherment=False,
                             key_agreement=False, key_cert_sign=not sign, crl_sign=not sign,
                             encipher_only=False, decipher_only=False)

    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def certificate(subject: str, issuer: x509.Name, public, is_ca: bool):
        return (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(issuer)
                .public_key(public).serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(hours=1))
                .not_valid_after(now + timedelta(days=365 * VALID_YEARS))
                .add_extension(x509.BasicConstraints(ca=is_ca, path_length=0 if is_ca else None),
                               critical=True)
                .add_extension(usage(not is_ca), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public),
                               critical=False))

    ca = certificate(f"{GENERATOR} device CA", name(f"{GENERATOR} device CA"),
                     ca_key.public_key(), True).sign(ca_key, hashes.SHA256())
    signer = (certificate(f"{GENERATOR} device signer", ca.subject, key.public_key(), False)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                             critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                  ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return (key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
            + signer.public_bytes(pem) + ca.public_bytes(pem))


def device_key(folder: Path) -> tuple[str, str]:
    """The device's (private key PEM, certificate chain PEM), made on first use. Two
    processes making it at once agree on one: the file appears atomically (link), the
    loser reads the winner's."""
    path = folder / KEY_FILE
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=f".{KEY_FILE}.", dir=folder)  # 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_new_key_file())
            try:
                os.link(tmp, path)
                log.info("made the device's C2PA signing key and certificate in %s", path)
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
    text = path.read_text()
    split = text.index("-----BEGIN CERTIFICATE-----")
    return text[:split], text[split:]


def manifest(provenance: Provenance, title: str) -> dict:
    """The manifest definition of a recording."""
    version = provenance.generator.removeprefix(f"{GENERATOR} ")
    agent = {"name": GENERATOR, "version": version}
    return {"claim_generator_info": [agent], "title": title,
            "assertions": [
                {"label": "c2pa.actions",
                 "data": {"actions": [{"action": "c2pa.created", "digitalSourceType": SOURCE_TYPE,
                                       "softwareAgent": agent,
                                       "when": provenance.fields()["creation_time"]}]}},
                {"label": BUNDLE_ASSERTION,
                 "data": {"name": provenance.bundle, "sha256": provenance.bundle_sha256}}]}


class Signer:
    """Signs recordings with the device key (loaded, or made, on first use)."""

    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder) if folder is not None else key_folder()
        self._signer = None

    def load(self) -> Signer:
        """Import c2pa and load (or make) the key: done when a recording starts, so that
        its close only signs. -> self"""
        import c2pa

        if self._signer is None:
            key, chain = device_key(self.folder)
            self._signer = c2pa.Signer.from_info(
                c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain.encode(), key.encode(),
                                    None))
        return self

    def sign(self, provenance: Provenance, source: Path, dest, title: str) -> None:
        """Copy the mp4 ``source`` into the open binary stream ``dest`` with the manifest."""
        import c2pa

        self.load()
        with c2pa.Builder(manifest(provenance, title)) as builder, open(source, "rb") as src:
            builder.sign(self._signer, "video/mp4", src, dest)


@dataclass
class Credentials:
    """What a file's C2PA manifest says (edge-verify)."""

    state: str = ""
    """c2pa's validation state: Valid, Invalid, Trusted."""
    signer: str = ""
    generator: str = ""
    actions: list[str] = field(default_factory=list)
    """``action (digitalSourceType)`` of each action."""
    bundle: dict = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    """The validation failure codes (signingCredential.untrusted for a local key)."""
    error: str = ""

    @property
    def generated(self) -> bool:
        """A manifest that holds (hashes and signature) and says trainedAlgorithmicMedia."""
        return (self.state in ("Valid", "Trusted")
                and any(SOURCE_TYPE.rsplit("/", 1)[1] in a for a in self.actions))

    def lines(self) -> list[str]:
        if self.error:
            return [f"c2pa: manifest unreadable ({self.error})"]
        untrusted = "signingCredential.untrusted" in self.failures
        others = [f for f in self.failures if f != "signingCredential.untrusted"]
        lines = [f"c2pa: manifest {self.state}"
                 + (" (signer untrusted: a local device key, as expected)" if untrusted else "")
                 + (f"; FAILED: {', '.join(others)}" if others else ""),
                 f"c2pa: signer {self.signer or '?'}; generator {self.generator or '?'}",
                 f"c2pa: actions {'; '.join(self.actions) or 'none'}"]
        if self.bundle:
            lines.append(f"c2pa: bundle {self.bundle.get('name', '?')} (sha256 "
                         f"{self.bundle.get('sha256') or '?'})")
        return lines


def read(path: str | Path) -> Credentials | None:
    """The C2PA manifest of a file (None: there is none, or c2pa is not installed)."""
    if not available():
        return None
    import c2pa

    try:
        reader = c2pa.Reader.try_create(str(path))
    except c2pa.C2paError.NotSupported:  # a format c2pa does not read (mkv, bmp, ...)
        return None
    except c2pa.C2paError as exc:
        return Credentials(error=str(exc) or type(exc).__name__)
    if reader is None:
        return None
    with reader:
        active = reader.get_active_manifest() or {}
        results = (reader.get_validation_results() or {}).get("activeManifest", {})
        found = Credentials(state=reader.get_validation_state() or "")
    info = active.get("signature_info", {})
    found.signer = ", ".join(v for v in (info.get("common_name"), info.get("issuer")) if v)
    found.generator = " ".join(filter(None, (
        (active.get("claim_generator_info") or [{}])[0].get(k) for k in ("name", "version"))))
    found.failures = [r.get("code", "") for r in results.get("failure", [])]
    for assertion in active.get("assertions", []):
        label = assertion.get("label", "")
        if label.startswith("c2pa.actions"):
            found.actions += [f"{a.get('action')} ({a.get('digitalSourceType', '-')})"
                              for a in assertion.get("data", {}).get("actions", [])]
        elif label == BUNDLE_ASSERTION:
            found.bundle = assertion.get("data", {})
    return found
