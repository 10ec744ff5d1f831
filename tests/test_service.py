"""The Pi service: sd_notify against a socket the test binds, signals to a running edge-run,
the unit files and the install script's dry run."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.service.sdnotify import Notifier

REPO = Path(__file__).resolve().parent.parent


def bind(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    return sock, path


def test_notifier_speaks_the_datagram_protocol(tmp_path):
    sock, path = bind(tmp_path)
    now = [0.0]
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"}, lambda: now[0])
    notifier.ready("loaded")
    assert sock.recv(256) == b"READY=1\nSTATUS=loaded"
    notifier.heartbeat()
    notifier.heartbeat()  # too soon: one pet per half watchdog period
    now[0] = 0.6
    notifier.heartbeat()
    sock.settimeout(0.2)
    got = []
    while True:
        try:
            got.append(sock.recv(256))
        except TimeoutError:
            break
    assert got == [b"WATCHDOG=1", b"WATCHDOG=1"]
    Notifier({}).ready()  # not under systemd: a no-op, no error


def test_abstract_socket_addresses_are_understood():
    notifier = Notifier({"NOTIFY_SOCKET": "@temposync-test"})
    assert notifier.address == "\0temposync-test"


def _messages(sock: socket.socket, until: bytes, seconds: float = 30) -> list[bytes]:
    got, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            message = sock.recv(512)
        except TimeoutError:
            continue
        got.append(message)
        if until in message:
            return got
    raise AssertionError(f"no {until!r} in {got}")


def test_edge_run_notifies_pets_the_watchdog_reloads_and_stops_fast(tiny_bundle, tiny_dataset,
                                                                   tmp_path):
    from tests.test_runtime import tone, write_wav

    sock, path = bind(tmp_path)
    wav = write_wav(tmp_path / "long.wav", np.tile(tone(0.5, 220), 40))  # 20 s, real time
    photo = sorted((tiny_dataset / "clips").glob("*/frames/*.png"))[0]
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="400000",
               XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_runtime.cli", "--bundle", str(tiny_bundle), "--audio",
         str(wav), "--reference", str(photo), "--sink", "null", "--threads", "1"],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert any(m.startswith(b"READY=1") for m in _messages(sock, b"READY=1"))
        assert _messages(sock, b"WATCHDOG=1", 5)
        time.sleep(0.5)  # frames rendered: a run stopped before its first frame exits 1
        process.send_signal(signal.SIGHUP)  # reload without a new process
        after = _messages(sock, b"READY=1")
        assert any(m.startswith(b"RELOADING=1") for m in after)
        assert _messages(sock, b"WATCHDOG=1", 5)
        time.sleep(0.5)
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=5)
        assert time.monotonic() - began < 1.0
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0
    assert any(b"STOPPING=1" in m for m in _messages(sock, b"STOPPING=1", 2))


def _unit(name: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in (REPO / "systemd" / name).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def test_the_service_unit_is_a_hardened_notify_service():
    unit = _unit("edge-run.service")
    assert unit["Type"] == ["notify"] and unit["Restart"] == ["on-failure"]
    assert unit["User"] == ["temposync"] and unit["Group"] == ["temposync"]
    assert "audio video" in unit["SupplementaryGroups"][0]
    assert unit["WatchdogSec"] and unit["WantedBy"] == ["multi-user.target"]
    assert "sound.target" in unit["After"][0] and unit["ExecReload"]
    for key in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp",
                "DevicePolicy", "CapabilityBoundingSet", "RestrictAddressFamilies"):
        assert key in unit, key
    assert unit["DevicePolicy"] == ["closed"] and "char-alsa rw" in unit["DeviceAllow"]
    assert "edge-run --config /etc/temposync/edge.yaml" in unit["ExecStart"][0]
    receive = _unit("edge-receive.service")
    assert "--listen 127.0.0.1:5599" in receive["ExecStart"][0]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed here")
def test_systemd_analyze_verify_accepts_the_units():
    for name in ("edge-run.service", "edge-receive.service"):
        result = subprocess.run(["systemd-analyze", "verify", str(REPO / "systemd" / name)],
                                capture_output=True, text=True)
        assert "error" not in result.stderr.lower(), result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed here")
def test_the_units_keep_an_ok_exposure_score():
    """systemd/README.md quotes the scores (1.5 and 2.4); 'OK' ends at 4.9. --threshold is in
    tenths and makes systemd-analyze exit non-zero above it."""
    for name in ("edge-run.service", "edge-receive.service"):
        result = subprocess.run(["systemd-analyze", "security", "--offline=true",
                                 "--threshold=25", str(REPO / "systemd" / name)],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stdout[-300:] + result.stderr


def test_the_default_config_is_valid_edge_run_settings():
    from edge_runtime.dataio import from_dict, read_yaml
    from edge_runtime.service.settings import EdgeSettings

    settings = from_dict(EdgeSettings, read_yaml(REPO / "systemd" / "edge.yaml", "config"))
    assert settings.audio == "mic" and settings.bundle.startswith("/var/lib/temposync")


def test_install_dry_run_shows_every_step_and_changes_nothing():
    result = subprocess.run(["bash", str(REPO / "systemd" / "install.sh"), "--dry-run"],
                            capture_output=True, text=True, check=True)
    out = result.stdout
    for step in ("useradd --system", "--groups audio,video", "python3 -m venv /opt/temposync",
                 "[runtime,c2pa]", "/etc/temposync/edge.yaml", "/var/lib/temposync/bundles",
                 "systemctl daemon-reload", "systemctl enable edge-run.service"):
        assert step in out, step
    assert not Path("/opt/temposync").exists() or "mkdir" in out
    bad = subprocess.run(["bash", str(REPO / "systemd" / "install.sh"), "--bogus"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown option --bogus" in bad.stderr
    removal = subprocess.run(["bash", str(REPO / "systemd" / "uninstall.sh"), "--dry-run"],
                             capture_output=True, text=True, check=True).stdout
    assert "disable --now edge-run.service" in removal and "/etc/temposync" not in removal
