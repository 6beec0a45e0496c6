"""Load the native kernels (one library, one object per ISA path) and pick a path.

Where the library comes from, in order:

1. the prebuilt ``libsamebits_kernels.so`` beside this file (a wheel carries one), unless
   the C sources beside it have changed since it was built (an editable checkout);
2. ``$SAMEBITS_CACHE`` (default ``~/.cache/samebits``), built there once with the C
   compiler, under a name that is the build id: a hash of the sources, the flags of
   every path and the compiler's version and target.

Which path runs: ``SAMEBITS_ISA`` = ``auto`` (default: the best portable path this CPU
has), ``portable``, ``avx2``, ``avx512``, ``avx512_bf16``, or ``amx`` on x86-64;
``portable`` or ``neon`` on aarch64. The portable
paths give the same bits; the choice among them is about speed, and ``native_info()``
reports it. ``amx`` runs bfloat16 products on AMX tiles: invariant on the CPU, but its
bits differ from the portable paths' (TDPBF16PS rounds in an undocumented way), so
only an explicit request selects it and ``native_info()["portable"]`` says so. The CPU's
features come from CPUID (x86-64) or the kernel's HWCAP words (aarch64), read by the
library's baseline code before a path is chosen.

OpenMP: the library is not linked against an OpenMP runtime. torch's own libgomp is
made global before the library is opened, so the library's parallel regions run in
torch's thread pool and ``torch.set_num_threads`` sizes both.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import glob
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from samebits._native import _build, _decls
from samebits._native._build import BUILT, EXPLICIT, ISA_NEEDS, ISAS
from samebits.errors import NativeBuildError

F32, BF16 = 0, 1

# The exported functions of each path (name -> (argtypes, restype)) and the ABI
# version, both from the one list in _decls.py that sb_kernels.h is generated from.
ABI_VERSION = _decls.abi_version()
SIGNATURES: dict[str, tuple[list, object]] = {
    name: ([getattr(ctypes, a) for a in args], res and getattr(ctypes, res))
    for name, (args, res) in _decls.signatures().items()
}
# bit i of sb_cpu_features() (dispatch.c's CF_* enum, in order)
FEATURE_BITS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512cd", "avx512bw",
    "avx512vl", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_fp16", "os_avx",
    "os_avx512", "os_amx", "fp", "asimd", "asimddp", "bf16", "sve",
)  # fmt: skip

_lock = threading.Lock()
_state: dict[str, object] = {}  # "dll", "path", "build", "source", "features", "paths", "isa"
_forced = threading.local()


class Kernels:
    """One ISA path's functions, bound by their plain names (``k.sb_gemm(...)``)."""

    def __init__(self, dll: ctypes.CDLL, isa: str) -> None:
        self.isa = isa
        for name, (args, res) in SIGNATURES.items():
            fn = getattr(dll, f"{name}_{isa}")
            fn.argtypes, fn.restype = args, res
            setattr(self, name, fn)


def _cache_dir() -> Path:
    root = os.environ.get("SAMEBITS_CACHE") or os.path.join(Path.home(), ".cache", "samebits")
    return Path(root)


def _bind_openmp() -> None:
    """Make torch's OpenMP runtime global, so the library's GOMP symbols bind to it."""
    hits = sorted(glob.glob(os.path.join(os.path.dirname(torch.__file__), "lib", "libgomp*.so*")))
    for path in hits + ["libgomp.so.1"]:
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            return
        except OSError:
            continue
    raise NativeBuildError(
        "no OpenMP runtime (libgomp) found: torch's wheel ships one in torch/lib; "
        "install libgomp1 (e.g. `apt-get install libgomp1`) if this torch has none"
    )


def _open(path: Path) -> tuple[ctypes.CDLL, str]:
    dll = ctypes.CDLL(str(path))
    dll.sb_abi_version.restype = ctypes.c_int
    dll.sb_build_id.restype = ctypes.c_char_p
    abi = dll.sb_abi_version()
    if abi != ABI_VERSION:
        raise NativeBuildError(
            f"{path} has kernel ABI {abi}, this samebits expects {ABI_VERSION}: "
            f"delete it (or the cache {_cache_dir()}) so it is rebuilt"
        )
    return dll, dll.sb_build_id().decode()


def _has_sources() -> bool:
    return (_build.HERE / "kernels.c").exists()


def _load_library() -> None:
    _bind_openmp()
    prebuilt = _build.HERE / _build.LIB_NAME
    if prebuilt.exists():
        dll, bid = _open(prebuilt)
        # an editable checkout whose C sources changed since the prebuilt was made
        # builds anew; an installed wheel (sources unchanged or absent) uses it
        if not _has_sources() or bid.split("-")[0] == _build.source_hash():
            _state.update(dll=dll, path=str(prebuilt), build=bid, source="prebuilt")
            return
    try:
        cc = _build.compiler()
        bid = _build.build_id(_build.compiler_version(cc, _cache_dir()))
        out = _cache_dir() / f"samebits_kernels_{bid}.so"
        if not out.exists():
            _build.compile_library(out, cc)
    except _build.BuildError as err:
        raise NativeBuildError(str(err)) from None
    except OSError as err:
        raise NativeBuildError(
            f"cannot write samebits' kernel cache {_cache_dir()} ({err.strerror}): "
            "set SAMEBITS_CACHE to a writable directory"
        ) from None
    dll, bid = _open(out)
    _state.update(dll=dll, path=str(out), build=bid, source="cache")


def _cpu_features(dll: ctypes.CDLL) -> frozenset[str]:
    dll.sb_cpu_features.restype = ctypes.c_uint64
    bits = dll.sb_cpu_features()
    return frozenset(n for i, n in enumerate(FEATURE_BITS) if bits >> i & 1)


def _missing(isa: str, features: frozenset[str]) -> list[str]:
    return [f for f in ISA_NEEDS[isa] if f not in features]


def _requested() -> str:
    want = os.environ.get("SAMEBITS_ISA", "auto").strip().lower() or "auto"
    if want != "auto" and want not in ISAS + EXPLICIT:
        raise NativeBuildError(
            f"SAMEBITS_ISA={want!r} is not a kernel path: expected auto or one of "
            f"{', '.join(ISAS + EXPLICIT)}"
        )
    return want


def _check_path(isa: str, features: frozenset[str]) -> None:
    """Raise NativeBuildError naming the CPU features ``isa`` needs and ``features`` lacks."""
    missing = _missing(isa, features)
    if missing:
        have = [p for p in ISAS + EXPLICIT if not _missing(p, features)]
        raise NativeBuildError(
            f"the {isa!r} kernel path needs CPU features this CPU lacks: {', '.join(missing)} "
            f"(paths available here: {', '.join(have)})"
        )
    why = _state.get("refused", {}).get(isa)
    if why:
        raise NativeBuildError(f"the {isa!r} kernel path is not used on this CPU: {why}")


PAIR_MISMATCH = (
    "its VDPBF16PS does not give the bits of the bfloat16 PAIR order on the probe's edge "
    "operands (denormals, underflowing or overflowing products); the avx512 path computes "
    "the same order with FMAs"
)


def _pair_probe(dll: ctypes.CDLL) -> bool:
    """Whether this CPU's VDPBF16PS gives the PAIR order's bits (gemm_bf16.c) on
    operands that reach every edge of its arithmetic: denormals, products that
    underflow or overflow float32, signed zeros, a ragged K. Measured equal on AMD Zen 5;
    a CPU whose instruction rounds otherwise keeps the emulating avx512 path, so the
    bits stay the same everywhere and only speed is lost."""
    M, N, K = 9, 11, 77
    state = 0x9E3779B97F4A7C15

    def bits() -> int:
        nonlocal state
        state ^= (state << 13) & 0xFFFFFFFFFFFFFFFF
        state ^= state >> 7
        state ^= (state << 17) & 0xFFFFFFFFFFFFFFFF
        h = state & 0xFFFF
        return h & 0x807F if (h >> 7) & 0xFF == 0xFF else h  # no inf / NaN operands

    a = (ctypes.c_uint16 * (M * K))(*[bits() for _ in range(M * K)])
    b = (ctypes.c_uint16 * (N * K))(*[bits() for _ in range(N * K)])
    outs = []
    for isa in ("avx512", "avx512_bf16"):
        c = (ctypes.c_float * (M * N))()
        fn = getattr(dll, f"sb_gemm_{isa}")
        fn.argtypes, fn.restype = SIGNATURES["sb_gemm"]
        status = fn(a, K, 1, 0, b, 1, K, 0, c, N, M * N, 1, M, N, K, None, 0, 1, 1, 1)
        outs.append((status, bytes(c)))
    return outs[0] == outs[1] and outs[0][0] == 0


def _amx_enable(dll: ctypes.CDLL) -> None:
    """Linux lets a process use AMX tiles only once it asks (arch_prctl); ask once."""
    if _state.get("amx_enabled"):
        return
    dll.sb_amx_enable.restype = ctypes.c_int
    err = dll.sb_amx_enable()
    if err == errno.ENOSPC:
        raise NativeBuildError(
            "the 'amx' kernel path is not usable: the OS refused the AMX tile state "
            "(arch_prctl ARCH_REQ_XCOMP_PERM: ENOSPC) because an alternate signal stack "
            "installed in this process is too small for it (e.g. Python 3.10.0-3.10.3's "
            "faulthandler, bpo-46968): enable the path before installing that stack, or "
            "update Python"
        )
    if err:
        raise NativeBuildError(
            f"the 'amx' kernel path is not usable: the OS refused the AMX tile state "
            f"(arch_prctl ARCH_REQ_XCOMP_PERM: {os.strerror(err)}); Linux 5.16 or later "
            "grants it"
        )
    _state["amx_enabled"] = True


def _kernels_for(isa: str) -> Kernels:
    _check_path(isa, _state["features"])
    if isa == "amx":
        _amx_enable(_state["dll"])
    cache = _state.setdefault("kernels", {})
    if isa not in cache:
        cache[isa] = Kernels(_state["dll"], isa)
    return cache[isa]


def _ensure() -> None:
    if "isa" in _state:
        return
    with _lock:
        if "isa" in _state:
            return
        want = _requested()
        _load_library()
        features = _cpu_features(_state["dll"])
        paths = [isa for isa in ISAS if not _missing(isa, features)]
        refused = {}
        if "avx512_bf16" in paths and not _pair_probe(_state["dll"]):
            paths.remove("avx512_bf16")
            refused["avx512_bf16"] = PAIR_MISMATCH
        dll = _state["dll"]
        for p in EXPLICIT:
            if _missing(p, features):
                continue
            if not hasattr(dll, f"sb_gemm_{p}"):
                refused[p] = (
                    "this kernel library was built without it (the assembler lacks the "
                    "AMX instructions: binutils 2.36 or later has them)"
                )
            elif p == "amx":
                dll.sb_amx_palette_ok.restype = ctypes.c_int
                if not dll.sb_amx_palette_ok():
                    refused[p] = "the CPU's tile palette 1 is not 8 tiles of 16 rows x 64 bytes"
        _state.update(features=features, paths=paths, refused=refused)
        isa = paths[-1] if want == "auto" else want
        _state["active"] = _kernels_for(isa)
        _state["isa"] = isa


def lib() -> Kernels:
    """The kernels of the path in use (built or loaded on first call)."""
    forced = getattr(_forced, "kernels", None)
    if forced is not None:
        return forced
    if "isa" not in _state:
        _ensure()
    return _state["active"]


def push_isa(isa: str) -> Kernels | None:
    """Run this thread's kernels on path ``isa`` until ``pop_isa`` gets the token
    returned (NativeBuildError, and no change, if this CPU cannot run it)."""
    _ensure()
    if isa not in BUILT:
        raise NativeBuildError(f"{isa!r} is not a kernel path: expected one of {', '.join(BUILT)}")
    prev = getattr(_forced, "kernels", None)
    _forced.kernels = _kernels_for(isa)
    _tell_isa(_forced.kernels)
    return prev


def pop_isa(token: Kernels | None) -> None:
    """Undo the ``push_isa`` that returned ``token``."""
    _forced.kernels = token
    _tell_isa(token)


_isa_hooks: list[Callable[[Kernels | None], None]] = []


def on_isa_change(hook: Callable[[Kernels | None], None]) -> None:
    """Call ``hook(kernels)`` in a thread whenever push_isa/pop_isa change its path (None:
    back to the process's): the mode key's C++ kernels keep their own copy of it."""
    if hook not in _isa_hooks:
        _isa_hooks.append(hook)


def _tell_isa(kernels: Kernels | None) -> None:
    for hook in _isa_hooks:
        hook(kernels)


def entry_address(isa: str, name: str) -> int:
    """The address of kernel entry ``name`` (``sb_pointwise``...) on path ``isa``, from
    the library itself."""
    _ensure()
    return ctypes.cast(getattr(_state["dll"], f"{name}_{isa}"), ctypes.c_void_p).value


def build_id() -> str:
    """The loaded library's id (its sources' and flags' hashes)."""
    _ensure()
    return _state["build"]


def process_kernels() -> Kernels:
    """The process's kernel path (SAMEBITS_ISA or the best), whatever this thread forces."""
    _ensure()
    return _state["active"]


@contextlib.contextmanager
def use_isa(isa: str) -> Iterator[None]:
    """Run this thread's kernels on one path for a block (tests compare paths with it)."""
    token = push_isa(isa)
    try:
        yield
    finally:
        pop_isa(token)


def native_info() -> dict[str, object]:
    """The kernel library in use: ``isa`` (the path running in this thread),
    ``available`` (the portable paths this CPU supports, which ``auto`` picks from),
    ``explicit`` (the non-portable paths this CPU can run when asked: ``amx``),
    ``requested`` (``SAMEBITS_ISA``), ``build`` (the library's id: source and
    flags/compiler hashes), ``source`` ("prebuilt" or "cache"), ``path``,
    ``cpu_features``, ``refused`` (paths the CPU has but that are not used, with the
    reason: avx512_bf16 where the instruction fails the PAIR order's probe) and
    ``portable`` (whether the running path's bits are the same on every CPU: false
    for ``amx``) and ``mode_key`` (whether the mode's per-call checks run in C++, and
    why not: ``samebits/_keyshim.py``)."""
    _ensure()
    refused = _state.get("refused", {})
    isa = lib().isa
    return {
        "isa": isa,
        "available": list(_state["paths"]),
        "explicit": [
            p for p in EXPLICIT if not _missing(p, _state["features"]) and p not in refused
        ],
        "requested": _requested(),
        "build": _state["build"],
        "source": _state["source"],
        "path": _state["path"],
        "cpu_features": sorted(_state["features"]),
        "refused": dict(refused),
        "portable": isa not in EXPLICIT,
        "mode_key": _mode_key_status(),
    }


def _mode_key_status() -> str:
    """The mode key's C++ kernels (samebits/_keyshim.py): on or off and why, without
    building them (they are built on the first entry into the mode)."""
    from samebits import _keyshim

    return _keyshim.status(build=False)


def parallel_team(n: int) -> int:
    """The team an OpenMP region of the library gets when it asks for ``n`` threads
    (``n <= 0``: asks for nothing, so the runtime's default, which torch sets)."""
    _ensure()
    fn = _state["dll"].sb_parallel_team
    fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
    return fn(n)


def last_kernel_threads() -> int:
    """How many threads the last kernel call chose (1 below the small-work threshold)."""
    _ensure()
    fn = _state["dll"].sb_last_kernel_threads
    fn.restype = ctypes.c_int
    return fn()


def dtype_code(dtype: torch.dtype) -> int:
    if dtype == torch.float32:
        return F32
    if dtype == torch.bfloat16:
        return BF16
    raise ValueError(f"no native kernel for {dtype}")


def nthreads() -> int:
    return max(1, torch.get_num_threads())
