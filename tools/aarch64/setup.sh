#!/usr/bin/env bash
# Build, once, a Debian arm64 root that runs under qemu-user on an x86 host, with
# python3 and torch 2.13.0's aarch64 wheel in a venv (/opt/venv), for `make test-aarch64`.
# Idempotent: each step leaves a stamp in $ROOT/.samebits-*, so a re-run only checks.
#
#   SAMEBITS_AARCH64_HOME  where the root lives (default ~/.cache/samebits-aarch64)
#
# Three traps, each solved here once:
# - PyPI's aarch64 torch is the CUDA build: libtorch_cpu.so needs libcudart, so its
#   nvidia-* wheels come too (pip installs them as torch's dependencies; ~3 GB);
# - qemu-user passes the host's x86 /proc/cpuinfo through and `import torch` segfaults
#   parsing it: run.sh bind-mounts the ARM cpuinfo written here (cpuinfo.arm64);
# - pip inside the root needs the host's CA certificates (a TLS-inspecting proxy's CA):
#   the host's bundle is copied into the root and named by PIP_CERT.
set -euo pipefail
HOME_DIR=${SAMEBITS_AARCH64_HOME:-$HOME/.cache/samebits-aarch64}
ROOT=$HOME_DIR/root
SUITE=bookworm
MIRROR=${SAMEBITS_AARCH64_MIRROR:-http://deb.debian.org/debian}
TORCH=2.13.0
HERE=$(cd "$(dirname "$0")" && pwd)
log() { printf '[aarch64-setup %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

need_pkgs=()
command -v debootstrap >/dev/null || need_pkgs+=(debootstrap)
[ -x /usr/bin/qemu-aarch64-static ] || need_pkgs+=(qemu-user-static)
command -v update-binfmts >/dev/null || need_pkgs+=(binfmt-support)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    log "installing ${need_pkgs[*]} (apt)"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_pkgs[@]}" >/dev/null
fi

# binfmt_misc lets the kernel run arm64 ELF files through qemu, so the root's programs
# (and the processes they start: pip, gcc, pytest's subprocesses) run as if native.
# The F flag (fix binary) makes the kernel open the interpreter at registration, so it
# works inside the chroot without a copy of qemu there.
bash "$HERE/binfmt.sh"

mkdir -p "$HOME_DIR"
if [ ! -e "$ROOT/.samebits-debootstrap" ]; then
    log "debootstrap $SUITE arm64 into $ROOT (a few minutes)"
    rm -rf "$ROOT"
    debootstrap --arch=arm64 --variant=minbase \
        --include=python3,python3-venv,python3-dev,gcc,libc6-dev,ca-certificates,libgomp1 \
        "$SUITE" "$ROOT" "$MIRROR" >"$HOME_DIR/debootstrap.log" 2>&1 ||
        { tail -30 "$HOME_DIR/debootstrap.log"; exit 1; }
    touch "$ROOT/.samebits-debootstrap"
fi

# the host's CA bundle, for pip inside the root
install -m 0644 /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/host-ca-certificates.crt"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
install -m 0644 "$HERE/cpuinfo.arm64" "$HOME_DIR/cpuinfo.arm64"

if [ ! -e "$ROOT/.samebits-venv" ]; then
    log "torch $TORCH (aarch64, with its nvidia wheels) and the test dependencies into /opt/venv (~3 GB download)"
    bash "$HERE/enter.sh" bash -c "
        set -e
        python3 -m venv /opt/venv
        /opt/venv/bin/pip install -q --upgrade pip setuptools wheel
        /opt/venv/bin/pip install -q -c /src/constraints.txt torch==$TORCH numpy
        /opt/venv/bin/pip install -q -c /src/constraints.txt -r /src/tools/aarch64/requirements.txt
        /opt/venv/bin/python -c 'import torch; assert torch.__version__.startswith(\"$TORCH\"), torch.__version__'
    " >"$HOME_DIR/pip.log" 2>&1 || { tail -30 "$HOME_DIR/pip.log"; exit 1; }
    touch "$ROOT/.samebits-venv"
fi
log "ready: $ROOT ($(du -sh "$ROOT" 2>/dev/null | cut -f1))"
