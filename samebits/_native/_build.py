"""Compile the kernel library: one object per ISA path from one source, linked into one file.

This module imports nothing but the standard library, so ``setup.py`` uses it to build
the wheel's prebuilt library (no torch in the build environment) and the loader uses it
to build into the cache where no prebuilt library fits (an editable install whose C
sources changed, a platform without one). Both therefore use the same flags.

Never the compiling machine's own ISA: each path names exactly the instruction sets it may use, and
the loader runs a path only on a CPU that has all of them (``ISA_NEEDS``).
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
LIB_NAME = "libsamebits_kernels.so"

# Paths per target architecture. x86-64: the portable ISA paths (the same bits on each),
# worst to best, which "auto" picks among; "amx" (bfloat16 products on AMX tiles:
# batch-invariant on a CPU with AMX, its bits not reproducible elsewhere), chosen only
# with SAMEBITS_ISA=amx or batch_invariant(isa="amx"); and "amx_sim", a test double of
# it (the AMX kernel, its tile instructions computed in C with the portable order's
# steps), which only samebits._native.use_isa selects. aarch64: portable (plain C, no
# Advanced SIMD) and neon (ASIMD, which every ARMv8-A Linux CPU has).
ARCH_PATHS: dict[str, dict[str, tuple[str, ...]]] = {
    "x86_64": {
        "isas": ("portable", "avx2", "avx512", "avx512_bf16"),
        "explicit": ("amx",),
        "test": ("amx_sim",),
    },
    "aarch64": {"isas": ("portable", "neon"), "explicit": (), "test": ()},
}


def host_arch() -> str:
    """The architecture this Python runs on, as ARCH_PATHS names it."""
    m = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m, m)


def _arch_key(arch: str) -> str:
    if arch not in ARCH_PATHS:
        raise BuildError(
            f"samebits' kernels have no build for the {arch!r} architecture "
            f"(built for: {', '.join(ARCH_PATHS)})"
        )
    return arch


def built_paths(arch: str) -> tuple[str, ...]:
    """Every path the library for ``arch`` holds, in build order."""
    a = ARCH_PATHS[_arch_key(arch)]
    return a["isas"] + a["explicit"] + a["test"]


_HOST = ARCH_PATHS.get(host_arch(), ARCH_PATHS["x86_64"])
ISAS = _HOST["isas"]
EXPLICIT = _HOST["explicit"]
TEST_PATHS = _HOST["test"]
BUILT = ISAS + EXPLICIT + TEST_PATHS

# -ffp-contract=off: only explicit fma() / fmadd intrinsics fuse, identically on every
# path. -fno-trapping-math and -fno-math-errno let GCC if-convert and vectorize;
# neither changes an IEEE result. -march: the baseline every path of the architecture
# starts from (x86-64; ARMv8-A, whose Advanced SIMD the portable path turns off).
COMMON_FLAGS = (
    "-O3",
    "-ffp-contract=off",
    "-fno-fast-math",
    "-fno-trapping-math",
    "-fno-math-errno",
    "-fPIC",
    "-fopenmp",
    "-fvisibility=hidden",
    "-g0",
)
ARCH_FLAGS = {
    "x86_64": ("-march=x86-64", "-mtune=generic"),
    "aarch64": ("-march=armv8-a", "-mtune=generic"),
}
_AVX2 = ("-mavx", "-mavx2", "-mfma", "-mf16c")
_AVX512 = _AVX2 + ("-mavx512f", "-mavx512dq", "-mavx512cd", "-mavx512bw", "-mavx512vl")
ISA_FLAGS: dict[str, tuple[str, ...]] = {
    "portable": (),
    "avx2": _AVX2,
    "avx512": _AVX512,
    "avx512_bf16": _AVX512 + ("-mavx512bf16",),
    # AMX: the avx512 path (which emulates VDPBF16PS, so the amx path never depends on
    # that instruction) plus the tile kernel, written in inline asm: no -mamx flags,
    # only an assembler that knows the mnemonics (binutils 2.36 or later)
    "amx": _AVX512 + ("-DSB_AMX=1",),
    "amx_sim": _AVX512 + ("-DSB_AMX=1", "-DSB_AMX_SIM=1"),
    # ARMv8-A's Advanced SIMD is on by default; the portable path is scalar C
    "neon": (),
}
# per architecture where a path's flags differ from ISA_FLAGS
ARCH_ISA_FLAGS = {"aarch64": {"portable": ("-march=armv8-a+nosimd",)}}
# CPU features (names from dispatch.c's bits) each path needs, the OS's register
# state included
ISA_NEEDS: dict[str, tuple[str, ...]] = {
    "portable": (),
    "avx2": ("avx", "avx2", "fma", "f16c", "os_avx"),
    "avx512": (
        "avx",
        "avx2",
        "fma",
        "f16c",
        "os_avx",
        "avx512f",
        "avx512dq",
        "avx512cd",
        "avx512bw",
        "avx512vl",
        "os_avx512",
    ),
    "neon": ("fp", "asimd"),
}
ISA_NEEDS["avx512_bf16"] = ISA_NEEDS["avx512"] + ("avx512_bf16",)
ISA_NEEDS["amx"] = ISA_NEEDS["avx512"] + ("amx_tile", "amx_bf16", "os_amx")
ISA_NEEDS["amx_sim"] = ISA_NEEDS["avx512"]
# Paths a toolchain may fail to build (an assembler without the AMX mnemonics): the
# library is then linked without them, and the loader reports the path as not built.
OPTIONAL = ("amx",)
# The OpenMP runtime is not linked: the loader binds the GOMP symbols to the libgomp
# torch already loaded, so one thread pool serves both (torch.set_num_threads sizes ours).
LINK_FLAGS = ("-shared", "-lm")


def flags(arch: str, isa: str) -> tuple[str, ...]:
    """The compile flags of one path's object for ``arch``."""
    base = COMMON_FLAGS[:1] + ARCH_FLAGS[_arch_key(arch)] + COMMON_FLAGS[1:]
    return base + ARCH_ISA_FLAGS.get(arch, {}).get(isa, ISA_FLAGS[isa])


class BuildError(RuntimeError):
    """A compile failed or no compiler exists (the loader re-raises it as NativeBuildError)."""


def sources() -> list[Path]:
    """Every file the library is built from, in a fixed order."""
    files = sorted(HERE.glob("*.c")) + sorted(HERE.glob("*.h"))
    if not files:
        raise BuildError(f"no kernel sources in {HERE}")
    return files


def source_hash() -> str:
    h = hashlib.sha256()
    for f in sources():
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def compiler() -> str:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc or not shutil.which(cc):
        raise BuildError(
            "no C compiler found to build samebits' kernels"
            + (f" (CC={os.environ['CC']!r} is not an executable)" if os.environ.get("CC") else "")
            + ": install gcc (e.g. `apt-get install gcc`) or set CC, or install samebits"
            " from a wheel, which carries the compiled kernels"
        )
    return cc


def binary_stamp(cmd: str) -> str:
    """A compiler binary's resolved path, size and mtime: what a cache keyed on the
    compiler records instead of running it (a few ms per run)."""
    real = os.path.realpath(shutil.which(cmd) or cmd)
    st = os.stat(real)
    return f"{real} {st.st_size} {st.st_mtime_ns}"


def compiler_version(cc: str, cache: Path | None = None) -> str:
    """The compiler's own version line and target, part of the build id. With ``cache``
    (a directory), the answer is kept there under the compiler binary's path, size and
    mtime, so later processes stat the binary instead of running it twice (~4 ms)."""
    memo = None
    if cache is not None:
        try:
            stamp = binary_stamp(cc)
        except OSError as err:
            raise BuildError(f"cannot run the C compiler {cc!r}: {err}") from err
        memo = cache / f"cc-{hashlib.sha256(stamp.encode()).hexdigest()[:16]}.txt"
        try:
            return memo.read_text()
        except OSError:
            pass
    version = _run_compiler_version(cc)
    if memo is not None:
        try:
            memo.parent.mkdir(parents=True, exist_ok=True)
            tmp = memo.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(version)
            os.replace(tmp, memo)
        except OSError:
            pass  # a read-only cache: asked again next time
    return version


def _run_compiler_version(cc: str) -> str:
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, check=True)
        machine = subprocess.run([cc, "-dumpmachine"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as err:
        raise BuildError(f"cannot run the C compiler {cc!r}: {err}") from err
    first = out.stdout.strip().splitlines()[0] if out.stdout.strip() else cc
    return f"{first} ({machine.stdout.strip()})"


def target_arch(cc: str) -> str:
    """The architecture ``cc`` compiles for (``cc -dumpmachine``: x86_64-linux-gnu,
    aarch64-linux-gnu), so a cross compiler builds the other architecture's paths."""
    try:
        out = subprocess.run([cc, "-dumpmachine"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as err:
        raise BuildError(f"cannot run the C compiler {cc!r}: {err}") from err
    machine = out.stdout.strip().split("-")[0]
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def build_id(cc_version: str) -> str:
    """``<source hash>-<flags and compiler hash>``: names one compiled library (the
    compiler's target is part of ``cc_version``, so its architecture is too)."""
    every = sorted((a, i, flags(a, i)) for a in ARCH_PATHS for i in built_paths(a))
    blob = repr((every, LINK_FLAGS, cc_version)).encode()
    return f"{source_hash()}-{hashlib.sha256(blob).hexdigest()[:8]}"


def _run(cmds: list[list[str]], optional: tuple[list[str], ...] = ()) -> list[list[str]]:
    """Run compile commands side by side; raise with the failures' stderr if a command
    not in ``optional`` fails; return the optional commands that failed."""
    procs = [(cmd, subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)) for cmd in cmds]
    errors, dropped = [], []
    for cmd, p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            if any(cmd is o for o in optional):
                dropped.append(cmd)
            else:
                errors.append(f"{' '.join(cmd)}\n{err.strip()}")
    if errors:
        raise BuildError("building samebits kernels failed:\n" + "\n".join(errors))
    return dropped


def compile_library(out: Path, cc: str | None = None) -> str:
    """Build the library (every ISA path plus the dispatcher) at ``out``; return its id.

    Written through a temporary file and renamed, so concurrent builders race safely.
    """
    cc = cc or compiler()
    bid = build_id(compiler_version(cc))
    arch = target_arch(cc)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        objs, cmds, optional = [], [], []
        for isa in built_paths(arch):
            obj = os.path.join(tmp, f"kernels_{isa}.o")
            defs = [f"-DSB_ISA={isa}"]
            cmd = [
                cc,
                *flags(arch, isa),
                *defs,
                "-c",
                str(HERE / "kernels.c"),
                "-o",
                obj,
            ]
            (optional if isa in OPTIONAL else cmds).append(cmd)
            objs.append(obj)
        obj = os.path.join(tmp, "dispatch.o")
        cmds.append(
            [
                cc,
                *flags(arch, "portable"),
                f'-DSB_BUILD_ID="{bid}"',
                "-c",
                str(HERE / "dispatch.c"),
                "-o",
                obj,
            ]
        )
        objs.append(obj)
        # an optional path that fails to build is left out of the library
        for cmd in _run(cmds + optional, tuple(optional)):
            objs.remove(cmd[-1])
        so = os.path.join(tmp, LIB_NAME)
        _run([[cc, *objs, "-o", so, *LINK_FLAGS]])
        os.replace(so, out)
    return bid
