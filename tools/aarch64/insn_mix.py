"""The instruction mix of the aarch64 kernel objects (ARM speed cannot be measured under
qemu): cross-compiles kernels.c for the neon and portable paths with _build.py's flags
and counts, per exported kernel family, the ASIMD vector instructions (on .4s/.2d/.8h
registers), scalar FP and the FMAs among them. ``python tools/aarch64/insn_mix.py``"""

import collections
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from samebits._native import _build  # noqa: E402

CC = "aarch64-linux-gnu-gcc"
OBJDUMP = "aarch64-linux-gnu-objdump"


def disasm(isa: str, tmp: str) -> str:
    obj = f"{tmp}/k_{isa}.o"
    src = _build.HERE / "kernels.c"
    flags = _build.flags("aarch64", isa)
    subprocess.run([CC, *flags, f"-DSB_ISA={isa}", "-c", str(src), "-o", obj], check=True)
    return subprocess.run(
        [OBJDUMP, "-d", "--no-show-raw-insn", obj], capture_output=True, text=True, check=True
    ).stdout


def mix(text: str) -> dict[str, collections.Counter]:
    out: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    fn = "?"
    for line in text.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.+)>:", line)
        if m:
            fn = m.group(1)
            continue
        m = re.match(r"^\s+[0-9a-f]+:\s+(\S+)\s*(.*)", line)
        if not m:
            continue
        op, args = m.groups()
        c = out[fn]
        c["all"] += 1
        vec = bool(re.search(r"\bv\d+\.(4s|2d|8h|16b|2s|4h)", args))
        if vec:
            c["asimd"] += 1
            if op in ("fmla", "fmls"):
                c["asimd_fma"] += 1
        elif re.match(r"f(madd|msub|nmadd|nmsub)$", op):
            c["scalar_fma"] += 1
            c["scalar_fp"] += 1
        elif op.startswith("f") and re.search(r"\b[sdh]\d+\b", args):
            c["scalar_fp"] += 1
    return out


def family(fn: str) -> str:
    for fam in ("gemm_map", "gemm", "sum_all", "sum", "unary", "pointwise", "softmax",
                "attention", "norm", "affine", "exact", "depthwise", "im2col", "pad_cl"):  # fmt: skip
        if fn.startswith(f"sb_{fam}"):
            return f"sb_{fam}"
    return "(static helpers)"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for isa in ("neon", "portable"):
            fams: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
            for fn, c in mix(disasm(isa, tmp)).items():
                fams[family(fn)].update(c)
            total = sum(fams.values(), collections.Counter())
            print(f"== {isa}: {total['all']} instructions, {total['asimd']} ASIMD "
                  f"({total['asimd_fma']} vector FMLA), {total['scalar_fp']} scalar FP "
                  f"({total['scalar_fma']} scalar FMADD)")  # fmt: skip
            print(
                f"{'function group':<18} {'insns':>7} {'ASIMD':>7} {'FMLA.v':>7} {'scal.FP':>8} {'FMADD':>6}"
            )
            for name, c in sorted(fams.items(), key=lambda kv: -kv[1]["all"]):
                print(f"{name:<18} {c['all']:>7} {c['asimd']:>7} {c['asimd_fma']:>7} "
                      f"{c['scalar_fp']:>8} {c['scalar_fma']:>6}")  # fmt: skip


if __name__ == "__main__":
    main()
