#!/usr/bin/env bash
# Verify the Raspberry Pi install on arm64 under emulation (no Pi needed).
#
# Builds (or restores from its cache) a Debian bookworm arm64 root filesystem with
# debootstrap and qemu-user-static, installs the project's `runtime` extra there from aarch64
# wheels exactly as systemd/install.sh does on a Pi (a venv, pip -c constraints.txt), then runs
# edge-run on a bundle with a wav file under QEMU_CPU=cortex-a72 (the Pi 4's instruction set):
# E1 with onnxruntime and with LiteRT, and E2 hybrid into edge-receive on 127.0.0.1, and checks
# the mp4s (frame count, audio stream). Emulation proves that the install and the runtime work
# on aarch64; it says nothing about speed.
#
# Needs root (debootstrap, chroot, mounts) and the package registries (apt, pip).
# Building the root filesystem takes about 4 minutes once (it is cached); each run then
# installs the wheels (about 1 minute) and renders under emulation (a few minutes).
set -euo pipefail

usage() {
  cat <<'EOF'
usage: systemd/verify-arm64.sh [--bundle DIR] [--audio WAV] [--reference IMAGE]
                               [--cache DIR] [--out DIR] [--seconds S]

  --bundle DIR       bundle to run (default bundles/demo)
  --audio WAV        speech to render (default examples/speech.wav)
  --reference IMAGE  reference photo (default examples/face.png)
  --cache DIR        where the arm64 root filesystem is kept between runs
                     (default ~/.cache/temposync/arm64-bookworm; delete it to rebuild)
  --out DIR          where the rendered mp4s and the log are copied (default build/arm64)
  --seconds S        render only the first S seconds of the audio (default 2; emulation
                     is slow)
EOF
}

REPO=$(cd "$(dirname "$0")/.." && pwd)
BUNDLE=$REPO/bundles/demo
AUDIO=$REPO/examples/speech.wav
REFERENCE=$REPO/examples/face.png
CACHE=${TEMPOSYNC_ARM64_CACHE:-$HOME/.cache/temposync/arm64-bookworm}
OUT=$REPO/build/arm64
SECONDS_TO_RENDER=2

while [ $# -gt 0 ]; do
  case $1 in
    --bundle) BUNDLE=$(realpath "$2"); shift 2 ;;
    --audio) AUDIO=$(realpath "$2"); shift 2 ;;
    --reference) REFERENCE=$(realpath "$2"); shift 2 ;;
    --cache) CACHE=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --seconds) SECONDS_TO_RENDER=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "verify-arm64: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

say() { echo "verify-arm64: $*"; }
fail() { echo "verify-arm64: error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "needs root (debootstrap, chroot and mounts)"
for f in "$BUNDLE/bundle.yaml" "$AUDIO" "$REFERENCE"; do
  [ -f "$f" ] || fail "$f: not found"
done

ensure_tools() {
  local missing=()
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
  command -v update-binfmts >/dev/null || missing+=(binfmt-support)
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

ensure_binfmt() {
  mountpoint -q /proc/sys/fs/binfmt_misc ||
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  update-binfmts --enable qemu-aarch64 2>/dev/null || true
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] ||
    fail "binfmt_misc has no qemu-aarch64 entry (update-binfmts --enable qemu-aarch64)"
}

mirror() {
  # The Debian mirror this machine's apt uses (deb822 or one-line sources).
  local uri
  uri=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' \
          /etc/apt/sources.list.d/* /etc/apt/sources.list 2>/dev/null |
        head -1 | awk '{print $2}') || true
  echo "${uri:-http://deb.debian.org/debian}"
}

ROOT=""
MOUNTS=()
cleanup() {
  local m
  for ((i=${#MOUNTS[@]}-1; i>=0; i--)); do
    m=${MOUNTS[$i]}
    umount -l "$m" 2>/dev/null || true
  done
}
trap cleanup EXIT

bind() {  # bind SOURCE TARGET (a folder or a file)
  if [ -d "$1" ]; then mkdir -p "$2"; elif [ ! -e "$2" ]; then touch "$2"; fi
  mount --bind "$1" "$2"
  MOUNTS+=("$2")
}

enter() {  # run a command inside the root filesystem with a clean environment
  chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
    PATH=/opt/temposync/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=180 QEMU_CPU=cortex-a72 "$@"
}

mount_system() {
  mount -t proc proc "$ROOT/proc"; MOUNTS+=("$ROOT/proc")
  # qemu passes the host's /proc/cpuinfo through; onnxruntime crashes on an x86 one
  bind "$REPO/systemd/arm64/cpuinfo-cortex-a72" "$ROOT/proc/cpuinfo"
  bind /dev "$ROOT/dev"
  bind /dev/pts "$ROOT/dev/pts"
  # XNNPACK (LiteRT) reads the CPU lists under /sys
  mount -t sysfs sysfs "$ROOT/sys"; MOUNTS+=("$ROOT/sys")
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
}

build_rootfs() {
  if [ -f "$CACHE/.complete" ]; then
    say "reusing the arm64 root filesystem in $CACHE"
    return
  fi
  local tmp=$CACHE.partial
  rm -rf "$tmp"
  mkdir -p "$(dirname "$CACHE")"
  say "debootstrap bookworm arm64 from $(mirror) into $tmp"
  debootstrap --arch=arm64 --foreign --variant=minbase bookworm "$tmp" "$(mirror)" >/dev/null
  cp "$(command -v qemu-aarch64-static)" "$tmp/usr/bin/"
  chroot "$tmp" /debootstrap/debootstrap --second-stage >/dev/null
  ROOT=$tmp
  mount_system
  # pip and apt inside need this machine's CA certificates (it may sit behind a proxy)
  mkdir -p "$ROOT/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/" \
    2>/dev/null || true
  say "python3, venv and PortAudio inside (what Raspberry Pi OS Bookworm has)"
  enter apt-get update -q >/dev/null
  enter apt-get install -y -q --no-install-recommends python3 python3-venv python3-pip \
    ca-certificates libportaudio2 >/dev/null
  enter update-ca-certificates >/dev/null
  cleanup; MOUNTS=()
  touch "$tmp/.complete"
  rm -rf "$CACHE"
  mv "$tmp" "$CACHE"
}

install_project() {
  say "installing the runtime extra from aarch64 wheels"
  rm -rf "$ROOT/opt/temposync"
  mkdir -p "$ROOT/opt/temposync/src" "$ROOT/opt/temposync/bundle" "$ROOT/opt/temposync/in" \
    "$ROOT/opt/temposync/out"
  (cd "$REPO" && git ls-files -z --cached --others --exclude-standard |
     tar --null -T - -cf -) | tar -xf - -C "$ROOT/opt/temposync/src"
  cp -r "$BUNDLE/." "$ROOT/opt/temposync/bundle/"
  cp "$AUDIO" "$ROOT/opt/temposync/in/speech.wav"
  cp "$REFERENCE" "$ROOT/opt/temposync/in/face.${REFERENCE##*.}"
  enter python3 -m venv /opt/temposync/venv
  enter /opt/temposync/venv/bin/pip install -q -c /opt/temposync/src/constraints.txt \
    "/opt/temposync/src[runtime]"
}

run_checks() {
  local face
  face=/opt/temposync/in/face.${REFERENCE##*.}
  enter python3 - "$SECONDS_TO_RENDER" <<'EOF'
import sys, wave
seconds = float(sys.argv[1])
with wave.open("/opt/temposync/in/speech.wav") as f:
    params, frames = f.getparams(), f.readframes(int(seconds * f.getframerate()))
with wave.open("/opt/temposync/in/short.wav", "wb") as f:
    f.setparams(params)
    f.writeframes(frames)
EOF
  enter python3 -c 'import platform; print("verify-arm64: machine", platform.machine())'
  local common=(--bundle /opt/temposync/bundle --audio /opt/temposync/in/short.wav
                --reference "$face" --offline --steps 2 --threads 4)
  say "E1 full, onnxruntime"
  enter edge-run "${common[@]}" --backend onnxruntime --sink /opt/temposync/out/full-onnx.mp4
  say "E1 full, LiteRT"
  enter edge-run "${common[@]}" --backend tflite --sink /opt/temposync/out/full-tflite.mp4
  say "E2 hybrid into edge-receive on 127.0.0.1"
  enter sh -c "edge-receive --bundle /opt/temposync/bundle --listen 127.0.0.1:5599 \
      --sink /opt/temposync/out/hybrid.mp4 & receiver=\$!
    python3 -c 'import socket, time
for _ in range(1200):
    try:
        socket.create_connection((\"127.0.0.1\", 5599), 1).close(); break
    except OSError:
        time.sleep(0.1)'
    edge-run ${common[*]} --mode hybrid --sink latent://127.0.0.1:5599
    kill -TERM \$receiver; wait \$receiver"
  enter python3 - "$SECONDS_TO_RENDER" <<'EOF'
import sys
import av
seconds = float(sys.argv[1])
for name, audio in (("full-onnx", True), ("full-tflite", True), ("hybrid", False)):
    path = f"/opt/temposync/out/{name}.mp4"
    with av.open(path) as container:
        frames = sum(1 for _ in container.decode(video=0))
    with av.open(path) as container:
        has_audio = any(s.type == "audio" for s in container.streams)
    expected = int(seconds * 25)
    ok = (frames >= 10 if name == "hybrid" else abs(frames - expected) <= 2) and \
        has_audio == audio
    print(f"verify-arm64: {name}.mp4: {frames} frames, audio {has_audio}: "
          f"{'ok' if ok else 'WRONG'}")
    if not ok:
        sys.exit(1)
EOF
  mkdir -p "$OUT"
  cp "$ROOT"/opt/temposync/out/*.mp4 "$OUT/"
}

ensure_tools
ensure_binfmt
build_rootfs
ROOT=$CACHE
mount_system
install_project
run_checks
say "passed: the runtime extra installs and edge-run works on aarch64 (Cortex-A72); mp4s in $OUT"
