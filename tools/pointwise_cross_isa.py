"""Run every pointwise op on the portable and AVX2 paths natively and on the NEON path
(aarch64, under qemu-user), and compare the bits: the check for the paths the tests
cannot reach on an x86 CPU.

Needs gcc, aarch64-linux-gnu-gcc and qemu-aarch64-static (Debian/Ubuntu:
gcc-aarch64-linux-gnu, qemu-user-static). The inputs are the tests' (operands(): the
whole line, specials, each op's accuracy domains); the op list comes from the library.

    python tools/pointwise_cross_isa.py     # exit 1 if any path differs
"""

from __future__ import annotations

import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from samebits._native import _build
from samebits.testing._pointwise import operands, ops, params_of

HERE = Path(__file__).resolve().parent
FLAGS = ["-O2", "-ffp-contract=off", "-fno-fast-math", "-fno-trapping-math", "-fno-math-errno"]
BUILDS = {  # path: (compiler, flags, runner)
    "portable": ("gcc", ["-march=x86-64"], []),
    "avx2": ("gcc", ["-march=x86-64", *_build.ISA_FLAGS["avx2"]], []),
    "neon": ("aarch64-linux-gnu-gcc", ["-march=armv8-a", "-static"], ["qemu-aarch64-static"]),
}


def build(tmp: Path) -> dict[str, list[str]]:
    cmds = {}
    for isa, (cc, flags, runner) in BUILDS.items():
        exe = tmp / f"pw_{isa}"
        src = HERE / "pointwise_cross_isa.c"
        subprocess.run(
            [
                cc,
                *FLAGS,
                *flags,
                f"-DSB_ISA={isa}",
                f"-I{_build.HERE}",
                str(src),
                "-o",
                str(exe),
                "-lm",
            ],
            check=True,
        )
        cmds[isa] = [*runner, str(exe)]
    return cmds


def write_jobs(path: Path) -> list[tuple[str, tuple[float, ...], int]]:
    jobs = []
    with path.open("wb") as f:
        for name, (code, arity, nparams) in ops().items():
            if nparams and name not in (
                "logit",
                "softplus_backward",
                "elu_backward",
                "logit_backward",
            ):
                sets = [(0.5,) * nparams]  # the older ops: any parameters do
            else:
                sets = params_of(name)
            xs = operands(name, 1 << 15)
            for p in sets:
                m = xs[0].numel()
                f.write(struct.pack("<ii8dqi", code, len(p), *p, *[0.0] * (8 - len(p)), m, arity))
                for x in xs:
                    f.write(x.numpy().astype("<f4").tobytes())
                jobs.append((name, p, m))
    return jobs


def main() -> int:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cmds = build(tmp)
        jobs = write_jobs(tmp / "jobs.bin")
        outs = {}
        for isa, cmd in cmds.items():
            subprocess.run([*cmd, str(tmp / "jobs.bin"), str(tmp / f"{isa}.bin")], check=True)
            outs[isa] = np.fromfile(tmp / f"{isa}.bin", dtype="<u4")
    bad, off = 0, 0
    for name, p, m in jobs:
        ref = outs["portable"][off : off + m]
        for isa, out in outs.items():
            differ = int((out[off : off + m] != ref).sum())
            if differ:
                bad += 1
                print(f"{name}{p}: {isa} differs from portable in {differ} of {m}")
        off += m
    print(f"{len(jobs)} op runs, {off} values, paths {', '.join(outs)}: {bad} differences")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
