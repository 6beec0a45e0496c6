#!/usr/bin/env bash
# Register qemu-aarch64 with binfmt_misc (mounting it first where needed). A sandbox
# that forbids both (no CAP_SYS_ADMIN) cannot run the root's programs transparently:
# the script then says so and fails, rather than running half a suite.
set -euo pipefail
BM=/proc/sys/fs/binfmt_misc
[ -e $BM/register ] || mount -t binfmt_misc binfmt_misc $BM 2>/dev/null || true
if [ ! -e $BM/register ]; then
    echo "binfmt_misc is not available (mount -t binfmt_misc failed): run as root on a host" \
         "or container with CAP_SYS_ADMIN" >&2
    exit 1
fi
[ -e $BM/qemu-aarch64 ] && grep -q enabled $BM/qemu-aarch64 && exit 0
if command -v update-binfmts >/dev/null; then
    update-binfmts --enable qemu-aarch64 2>/dev/null || true
fi
if [ ! -e $BM/qemu-aarch64 ]; then
    # the same entry Debian's qemu-user-static installs, with the F (fix binary) flag
    printf '%s' ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F' >$BM/register
fi
grep -q enabled $BM/qemu-aarch64
