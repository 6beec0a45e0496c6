#!/usr/bin/env bash
# Run a command inside the arm64 root (see setup.sh), in a private mount namespace so
# every mount below disappears with it: /proc (with an ARM cpuinfo bound over the
# host's x86 one, which qemu-user would pass through and `import torch` crashes on),
# /sys, /dev, and the repository at /src.
#   QEMU_CPU  the CPU qemu emulates (e.g. neoverse-n1, cortex-a57; default: qemu's max)
#   SAMEBITS_AARCH64_REPO  the checkout bound at /src (default: this script's repo)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
HOME_DIR=${SAMEBITS_AARCH64_HOME:-$HOME/.cache/samebits-aarch64}
ROOT=$HOME_DIR/root
REPO=${SAMEBITS_AARCH64_REPO:-$(cd "$HERE/../.." && pwd)}
[ -d "$ROOT/usr" ] || { echo "no arm64 root at $ROOT: run tools/aarch64/setup.sh" >&2; exit 1; }
mkdir -p "$ROOT/src"
export ROOT REPO HOME_DIR
exec unshare --mount --propagation private bash -c '
    set -e
    mount -t proc proc "$ROOT/proc"
    mount --bind "$HOME_DIR/cpuinfo.arm64" "$ROOT/proc/cpuinfo"
    mount --rbind /sys "$ROOT/sys"
    mount --rbind /dev "$ROOT/dev"
    mount --bind "$REPO" "$ROOT/src"
    exec chroot "$ROOT" /usr/bin/env -i \
        HOME=/root PATH=/opt/venv/bin:/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
        PIP_CERT=/etc/ssl/certs/host-ca-certificates.crt \
        SSL_CERT_FILE=/etc/ssl/certs/host-ca-certificates.crt \
        PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 \
        HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
        ${QEMU_CPU:+QEMU_CPU=$QEMU_CPU} \
        ${SAMEBITS_ISA:+SAMEBITS_ISA=$SAMEBITS_ISA} \
        SAMEBITS_CACHE=/root/.cache/samebits \
        "$@"
' bash "$@"
