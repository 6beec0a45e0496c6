#!/usr/bin/env bash
# Cross-build samebits' aarch64 wheel on an x86-64 host with Debian's
# gcc-aarch64-linux-gnu, check that its library needs nothing newer than glibc 2.17
# (manylinux2014), then install it in the arm64 root (setup.sh) in a venv of its own
# and run it there with no C compiler on PATH and an empty kernel cache: the kernels
# must come from the wheel, and give x86's bits (tools/kernel_hashes.py --check).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
HOME_DIR=${SAMEBITS_AARCH64_HOME:-$HOME/.cache/samebits-aarch64}
PY=${PY:-$REPO/.venv/bin/python}
command -v aarch64-linux-gnu-gcc >/dev/null || {
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q gcc-aarch64-linux-gnu >/dev/null
}
OUT=$REPO/dist
mkdir -p "$OUT"
rm -f "$OUT"/samebits-*aarch64*.whl
# build/ would carry an x86 library from an earlier build: a fresh copy of the tree
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
git -C "$REPO" ls-files -z | (cd "$REPO" && xargs -0 cp --parents -t "$TMP")
(cd "$TMP" && CC=aarch64-linux-gnu-gcc "$PY" -m pip wheel --no-deps --no-build-isolation -q -w "$OUT" .)
WHL=$(ls "$OUT"/samebits-*-py3-none-manylinux2014_aarch64.whl)
echo "built $WHL"
"$PY" - "$WHL" <<'PY'
import re, subprocess, sys, tempfile, zipfile
whl = sys.argv[1]
with tempfile.TemporaryDirectory() as d:
    so = zipfile.ZipFile(whl).extract("samebits/_native/libsamebits_kernels.so", d)
    head = subprocess.run(["aarch64-linux-gnu-readelf", "-h", so], capture_output=True, text=True).stdout
    assert "AArch64" in head, head
    syms = subprocess.run(["aarch64-linux-gnu-objdump", "-T", so], capture_output=True, text=True).stdout
    vers = sorted({tuple(map(int, v.split("."))) for v in re.findall(r"GLIBC_([0-9.]+)", syms)})
    assert vers and vers[-1] <= (2, 17), f"needs glibc {vers[-1]}: not manylinux2014"
    need = subprocess.run(["aarch64-linux-gnu-readelf", "-d", so], capture_output=True, text=True).stdout
    libs = re.findall(r"Shared library: \[(.*?)\]", need)
    print(f"library: AArch64, newest glibc symbol {'.'.join(map(str, vers[-1]))}, needs {libs}")
PY
bash "$HERE/setup.sh"
ROOT=$HOME_DIR/root
cp "$WHL" "$ROOT/tmp/"
# a venv of its own that sees torch and numpy from /opt/venv (a .pth line), the wheel
# installed without dependencies; run from / (not the checkout), PATH without /usr/bin
bash "$HERE/enter.sh" bash -c "
    set -e
    rm -rf /opt/wheelvenv /root/.cache/samebits-wheel
    python3 -m venv /opt/wheelvenv
    /opt/venv/bin/python -c 'import site; print(site.getsitepackages()[0])' \
        > /opt/wheelvenv/lib/python3.11/site-packages/opt-venv.pth
    /opt/wheelvenv/bin/python -m pip install -q --no-deps /tmp/$(basename "$WHL")
    cp /src/tools/kernel_hashes.py /src/tools/kernel_hashes.x86.json /tmp/
    cd /
    env -i HOME=/root PATH=/opt/wheelvenv/bin SAMEBITS_CACHE=/root/.cache/samebits-wheel \
        /opt/wheelvenv/bin/python -c '
import shutil, samebits
assert shutil.which(\"cc\") is None and shutil.which(\"gcc\") is None, \"a compiler is on PATH\"
info = samebits.native_info()
assert info[\"source\"] == \"prebuilt\", info
assert samebits.__file__.startswith(\"/opt/wheelvenv/\"), samebits.__file__
print(\"wheel:\", samebits.__file__, info[\"isa\"], info[\"available\"], info[\"source\"])
'
    env -i HOME=/root PATH=/opt/wheelvenv/bin SAMEBITS_CACHE=/root/.cache/samebits-wheel \
        /opt/wheelvenv/bin/python /tmp/kernel_hashes.py --check /tmp/kernel_hashes.x86.json
"
