#!/usr/bin/env bash
# Remove the TempoSync Edge service. Keeps /etc/temposync and /var/lib/temposync (config,
# bundles, outputs) unless --purge. --dry-run prints every command instead of running it.
set -euo pipefail

DRY_RUN=0
PURGE=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    --purge) PURGE=1 ;;
    -h|--help) sed -n '2,3p' "$0"; exit 0 ;;
    *) echo "uninstall.sh: unknown option $arg (--dry-run, --purge)" >&2; exit 2 ;;
  esac
done

run() {
  if [ "$DRY_RUN" = 1 ]; then echo "+ $*"; else "$@"; fi
}

if [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then
  echo "uninstall.sh: run as root (sudo), or with --dry-run to see the steps" >&2
  exit 1
fi

for unit in edge-run.service edge-receive.service; do
  run systemctl disable --now "$unit" || true
  run rm -f "/etc/systemd/system/$unit"
done
run systemctl daemon-reload
run rm -rf /opt/temposync
if [ "$PURGE" = 1 ]; then
  run rm -rf /etc/temposync /var/lib/temposync
  if id temposync >/dev/null 2>&1; then run userdel temposync; fi
fi
echo "removed."
