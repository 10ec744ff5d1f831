"""C2PA Content Credentials on mp4 recordings (edge_runtime.marking.credentials): a real
edge-run on the demo bundle writes an mp4 whose manifest c2pa's own Reader finds, validates
and reads (created, trainedAlgorithmicMedia, the generator, the bundle's sha256); a byte
changed in the video fails validation; the device key is made once, private; without c2pa
the recording keeps its tags and the sink says so once."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import av
import numpy as np
import pytest

from edge_runtime.bundle import BUNDLE_FILE, sha256_file
from edge_runtime.marking import credentials
from edge_runtime.marking.formats import SOURCE_TYPE
from edge_runtime.marking.marker import Marker
from edge_runtime.marking.verify import main as edge_verify
from edge_runtime.output.sinks import Mp4Sink

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "bundles" / "demo"
SPEECH = ROOT / "examples" / "speech.wav"
FACE = ROOT / "examples" / "face.png"

needs_c2pa = pytest.mark.skipif(not credentials.available(),
                                reason="c2pa-python is not installed (the c2pa extra)")


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> tuple[Path, Path]:
    """A real edge-run of the demo bundle to an mp4, its key in a folder of its own."""
    from edge_runtime.cli import main

    folder = tmp_path_factory.mktemp("c2pa")
    out, keys = folder / "demo.mp4", folder / "keys"
    assert main(["--bundle", str(DEMO), "--audio", str(SPEECH), "--reference", str(FACE),
                 "--offline", "--steps", "2", "--c2pa-keys", str(keys),
                 "--sink", str(out)]) == 0
    return out, keys


def _frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


@needs_c2pa
def test_edge_run_signs_the_mp4_with_the_bundle_and_the_source_type(recording):
    import c2pa

    out, keys = recording
    assert not list(out.parent.glob(".*"))  # no hidden file left behind
    with c2pa.Reader(str(out)) as reader:
        assert reader.get_validation_state() == "Valid"
        failures = [r["code"] for r in reader.get_validation_results()["activeManifest"]
                    .get("failure", [])]
        manifest = reader.get_active_manifest()
    assert failures == ["signingCredential.untrusted"]  # a local key: valid, not trusted
    assertions = {a["label"]: a["data"] for a in manifest["assertions"]}
    action = assertions["c2pa.actions.v2"]["actions"][0]
    assert action["action"] == "c2pa.created" and action["digitalSourceType"] == SOURCE_TYPE
    assert action["softwareAgent"]["name"] == "TempoSync Edge"
    assert assertions[credentials.BUNDLE_ASSERTION] == {
        "name": "demo", "sha256": sha256_file(DEMO / BUNDLE_FILE)}
    assert manifest["claim_generator_info"][0]["name"] == "TempoSync Edge"
    assert "TempoSync Edge device" in manifest["signature_info"]["common_name"]
    with av.open(str(out)) as container:  # still the mp4 it was: tags, audio, every frame
        assert container.metadata["ai_generated"] == "true" and container.streams.audio
    assert _frames(out) > 50
    key = keys / credentials.KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700


@needs_c2pa
def test_a_changed_byte_fails_validation(recording, tmp_path):
    import c2pa

    out, _ = recording
    data = bytearray(out.read_bytes())
    data[data.find(b"mdat") + 1000] ^= 0xFF
    tampered = tmp_path / "tampered.mp4"
    tampered.write_bytes(bytes(data))
    with c2pa.Reader(str(tampered)) as reader:
        assert reader.get_validation_state() == "Invalid"
        failures = [r["code"] for r in reader.get_validation_results()["activeManifest"]
                    ["failure"]]
    assert "assertion.bmffHash.mismatch" in failures
    found = credentials.read(tampered)
    assert not found.generated and "assertion.bmffHash.mismatch" in found.failures


@needs_c2pa
def test_edge_verify_prints_the_manifest(recording, capsys):
    out, _ = recording
    assert edge_verify([str(out), "--max-frames", "3"]) == 0
    text = capsys.readouterr().out
    assert "c2pa: manifest Valid (signer untrusted" in text
    assert "c2pa.created (" + SOURCE_TYPE + ")" in text
    assert f"c2pa: bundle demo (sha256 {sha256_file(DEMO / BUNDLE_FILE)})" in text


def _record(path: Path, marker: Marker) -> Mp4Sink:
    sink = Mp4Sink(path, 25, with_audio=False, marker=marker)
    for index in range(3):
        sink.write(index, np.full((64, 64, 3), 40 * index, np.uint8))
    sink.close()
    return sink


@needs_c2pa
def test_the_device_key_is_made_once_and_reused(tmp_path):
    marker = Marker(Marker.unknown().provenance, c2pa_keys=str(tmp_path / "keys"))
    _record(tmp_path / "a.mp4", marker)
    key = (tmp_path / "keys" / credentials.KEY_FILE).read_bytes()
    _record(tmp_path / "b.mp4", marker)
    assert (tmp_path / "keys" / credentials.KEY_FILE).read_bytes() == key
    signers = {credentials.read(tmp_path / name).signer for name in ("a.mp4", "b.mp4")}
    assert len(signers) == 1 and credentials.read(tmp_path / "a.mp4").generated


def test_key_folder_setting_then_systemd_then_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/temposync")
    assert credentials.key_folder(str(tmp_path)) == tmp_path
    assert credentials.key_folder() == Path("/var/lib/temposync/c2pa")
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert credentials.key_folder() == tmp_path / "temposync" / "c2pa"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert credentials.key_folder() == tmp_path / ".local" / "state" / "temposync" / "c2pa"


def test_without_c2pa_the_recording_keeps_its_tags_and_says_so_once(monkeypatch, tmp_path,
                                                                     caplog):
    monkeypatch.setattr(credentials, "available", lambda: False)
    monkeypatch.setattr(credentials, "_warned", False)
    marker = Marker.unknown()
    with caplog.at_level(logging.INFO):
        for name in ("a.mp4", "b.mp4"):
            _record(tmp_path / name, marker)
    said = [r for r in caplog.records if "no C2PA manifest" in r.getMessage()]
    assert len(said) == 1
    with av.open(str(tmp_path / "a.mp4")) as container:
        assert container.metadata["ai_generated"] == "true"
    assert b"c2pa" not in (tmp_path / "a.mp4").read_bytes()
    assert credentials.read(tmp_path / "a.mp4") is None


@needs_c2pa
def test_a_key_folder_it_cannot_make_still_leaves_the_recording(tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    marker = Marker(Marker.unknown().provenance, c2pa_keys=str(blocker / "keys"))
    with caplog.at_level(logging.WARNING):
        sink = _record(tmp_path / "out.mp4", marker)
    assert sink.written == tmp_path / "out.mp4" and _frames(sink.written) == 3
    assert credentials.read(sink.written) is None
    assert any("no C2PA manifest will be written" in r.getMessage() for r in caplog.records)
    assert sorted(os.listdir(tmp_path)) == ["not-a-folder", "out.mp4"]
