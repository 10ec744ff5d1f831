#!/usr/bin/env bash
# Install TempoSync Edge as a systemd service on a Raspberry Pi (Raspberry Pi OS Bookworm,
# arm64, Python 3.11). Idempotent: re-running updates the code and units and keeps the
# config and bundles. --dry-run prints every command instead of running it.
#
#   sudo systemd/install.sh [--dry-run] [--no-enable]
set -euo pipefail

DRY_RUN=0
ENABLE=1
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    --no-enable) ENABLE=0 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $arg (--dry-run, --no-enable)" >&2; exit 2 ;;
  esac
done

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX=/opt/temposync
STATE=/var/lib/temposync
CONF=/etc/temposync
USER_NAME=temposync

run() {
  if [ "$DRY_RUN" = 1 ]; then echo "+ $*"; else "$@"; fi
}

if [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then
  echo "install.sh: run as root (sudo), or with --dry-run to see the steps" >&2
  exit 1
fi

# 1. system packages: PortAudio for sounddevice, venv for Python
missing=()
for pkg in python3-venv libportaudio2; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  run apt-get install -y "${missing[@]}"
fi

# 2. the service user, in the audio and video groups
if id "$USER_NAME" >/dev/null 2>&1; then
  run usermod -a -G audio,video "$USER_NAME"
else
  run useradd --system --home-dir "$STATE" --shell /usr/sbin/nologin \
    --groups audio,video "$USER_NAME"
fi

# 3. the code and a venv with only the runtime extra (no torch)
run mkdir -p "$PREFIX/src"
run cp -r "$SRC/pyproject.toml" "$SRC/constraints.txt" "$SRC/README.md" "$SRC/edge_runtime" \
  "$SRC/training" "$SRC/export" "$SRC/calibration" "$SRC/systemd" "$PREFIX/src/"
[ -d "$PREFIX/venv" ] || run python3 -m venv "$PREFIX/venv"
run "$PREFIX/venv/bin/pip" install -q --upgrade pip
# (and the c2pa extra: recordings get a C2PA manifest signed with a key made on first use
# in /var/lib/temposync/c2pa, the unit's StateDirectory)
run "$PREFIX/venv/bin/pip" install -q -c "$PREFIX/src/constraints.txt" \
  "$PREFIX/src[runtime,c2pa]"

# 4. config (kept if present) and state folders
run install -d -m 0755 "$CONF"
if [ ! -f "$CONF/edge.yaml" ]; then
  run install -m 0640 -o root -g "$USER_NAME" "$SRC/systemd/edge.yaml" "$CONF/edge.yaml"
fi
run install -d -m 0750 -o "$USER_NAME" -g "$USER_NAME" "$STATE" "$STATE/bundles"
# the demo bundle and the example face as defaults (yours are kept)
if [ ! -e "$STATE/bundles/current" ] && [ -f "$SRC/bundles/demo/bundle.yaml" ]; then
  run cp -r "$SRC/bundles/demo" "$STATE/bundles/current"
  run chown -R "$USER_NAME:$USER_NAME" "$STATE/bundles/current"
fi
if [ ! -e "$STATE/reference.png" ] && [ -f "$SRC/examples/face.png" ]; then
  run install -m 0640 -o "$USER_NAME" -g "$USER_NAME" "$SRC/examples/face.png" \
    "$STATE/reference.png"
fi

# 5. units
run install -m 0644 "$SRC/systemd/edge-run.service" "$SRC/systemd/edge-receive.service" \
  /etc/systemd/system/
run systemctl daemon-reload
if [ "$ENABLE" = 1 ]; then
  run systemctl enable edge-run.service
fi
echo "installed. Bundle: $STATE/bundles/current, reference photo: $STATE/reference.png"
echo "(replace either with your own), settings: $CONF/edge.yaml; then:"
echo "sudo systemctl start edge-run && journalctl -u edge-run -f"
