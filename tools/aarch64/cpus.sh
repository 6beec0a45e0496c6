#!/usr/bin/env bash
# The kernel hashes (tools/kernel_hashes.py) under several emulated CPUs: each run
# checks both aarch64 paths against x86's hashes (tools/kernel_hashes.x86.json), so
# equal results here mean every CPU gives x86's bits.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
bash "$HERE/setup.sh"
for cpu in ${SAMEBITS_AARCH64_CPUS:-neoverse-n1 cortex-a57 max}; do
    echo "== QEMU_CPU=$cpu"
    # each path's check line, and any case that differs (pipefail: a failing check fails)
    QEMU_CPU=$cpu bash "$HERE/enter.sh" bash -c "cd /src && PYTHONPATH=/src python tools/kernel_hashes.py --check tools/kernel_hashes.x86.json" |
        grep -E '^(check|  differs)'
done
