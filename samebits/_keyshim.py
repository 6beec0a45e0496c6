"""C++ kernels for the mode key's hottest per-call checks (samebits/_native/mode_key.cpp).

A Python kernel on the mode key costs ~4 us per call before it does anything. For the
ops whose call usually ends in torch's own kernel (add/sub/mul/div, the ops that need a
kernel only to redispatch) or in one call of the pointwise engine, ``_mode`` puts a C++
kernel over its Python one. The C++ kernel decides the common case and hands every
other case to the Python kernel it replaced, so what each op does is still defined once,
in Python; tests hold the two paths to the same bits (``disabled()``).

The library is compiled against the running torch's headers (C++ has no stable ABI
across torch versions) into ``$SAMEBITS_CACHE``, once per torch build and source, in a
few seconds. Without a C++ compiler, or with ``SAMEBITS_KEY_SHIM=0``, the Python kernels
run alone: the same bits, more time per call. ``status()`` says which.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import torch

from samebits import _native
from samebits.ops import norms

SOURCE = Path(__file__).resolve().parent / "_native" / "mode_key.cpp"
# what it includes from samebits: the kernels' prototypes, its non-elementwise fast paths
HEADERS = (SOURCE.parent / "sb_kernels.h", SOURCE.parent / "mode_key_ops.hpp")

# the kinds of mode_key.cpp's kernels (its enum Kind)
KINDS = {
    "pass": 0, "alpha_one": 1, "not_reduced": 2, "engine": 3, "linear": 4, "sum": 5,
    "mean": 6, "range": 7, "norm": 8, "attention": 9,
}  # fmt: skip

# covered ops (samebits/_policy.py's table) whose functional form has a C++ kernel for
# the common case of the Python function, as (kind, code): matmul.linear's
# _linear_direct, reductions.sum/mean over one run of dims or all of a contiguous tensor,
# norms._norm (the code: its LAYER or RMS), attention's _fused
COVERED = {
    "scaled_dot_product_attention": ("attention", 0),
    "linear": ("linear", 0),
    "sum.dim_IntList": ("sum", 0),
    "mean.dim": ("mean", 0),
    "sum": ("sum", 0),
    "mean": ("mean", 0),
    "native_layer_norm": ("norm", norms.LAYER),
    "rms_norm": ("norm", norms.RMS),
}

# guarded ops' checks (samebits/_policy.py's _GUARDED, by the check's name) that have a
# C++ twin deciding the calls it lets through
GUARDS = {"_fractional_range": "range"}

_lock = threading.Lock()
_state: dict[str, object] = {}


def _compiler() -> str | None:
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    return cxx if cxx and shutil.which(cxx) else None


def _build_key(cxx: str) -> str:
    """The sources, torch's build, the compile command's flags, and the compiler binary
    (its path, size and mtime: a stat, where running ``--version`` would cost every
    process a few ms)."""
    h = hashlib.sha256()
    for path in (SOURCE, *HEADERS):
        h.update(path.read_bytes())
    h.update(f"{torch.__version__} {torch.version.git_version} {sys.platform}".encode())
    h.update(_native._build.binary_stamp(cxx).encode())
    h.update(" ".join(_command(cxx, "")).encode())  # the flags
    return h.hexdigest()[:16]


def _command(cxx: str, out: str) -> list[str]:
    tdir = Path(torch.__file__).resolve().parent
    abi = int(torch.compiled_with_cxx11_abi())
    return [
        cxx, "-O2", "-std=c++20", "-w", "-shared", "-fPIC",
        f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
        f"-I{tdir / 'include'}", f"-I{tdir / 'include' / 'torch' / 'csrc' / 'api' / 'include'}",
        str(SOURCE), f"-L{tdir / 'lib'}", "-lc10", "-ltorch_cpu",
        f"-Wl,-rpath,{tdir / 'lib'}", "-o", out,
    ]  # fmt: skip


def _build() -> tuple[ctypes.CDLL | None, str]:
    """(the library, how it was found), or (None, why not)."""
    if os.environ.get("SAMEBITS_KEY_SHIM", "1") == "0":
        return None, "off (SAMEBITS_KEY_SHIM=0)"
    if not SOURCE.exists():
        return None, f"off (no {SOURCE.name} in this install)"
    cxx = _compiler()
    if cxx is None:
        return None, "off (no C++ compiler: install g++ or set CXX)"
    path = _native._cache_dir() / f"mode_key-{_build_key(cxx)}.so"
    how = "cache"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            out = os.path.join(tmp, path.name)
            proc = subprocess.run(_command(cxx, out), capture_output=True, text=True)
            if proc.returncode != 0:
                lines = proc.stderr.strip().splitlines() or ["?"]
                first = next((ln for ln in lines if "error" in ln), lines[-1])
                return None, f"off (the C++ build failed: {first})"
            os.replace(out, path)
        how = "built"
    dll = ctypes.CDLL(str(path))
    dll.sbk_install.argtypes = [
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_char_p,
    ]
    dll.sbk_install.restype = ctypes.c_int
    dll.sbk_fallthroughs.argtypes = [ctypes.c_char_p]
    dll.sbk_fallthroughs.restype = ctypes.c_int
    dll.sbk_error.restype = ctypes.c_char_p
    dll.sbk_kernel_names.restype = ctypes.c_char_p
    dll.sbk_unboxed.argtypes = [ctypes.c_char_p]
    dll.sbk_set_table.argtypes = [ctypes.c_void_p, ctypes.c_int]
    dll.sbk_set_enabled.argtypes = [ctypes.c_int]
    dll.sbk_enabled.restype = ctypes.c_int
    dll.sbk_fast_calls.argtypes = [ctypes.c_int]
    dll.sbk_fast_calls.restype = ctypes.c_uint64
    dll.sbk_entry_calls.argtypes = [ctypes.c_int]
    dll.sbk_entry_calls.restype = ctypes.c_uint64
    dll.sbk_thread_pointwise.restype = ctypes.c_void_p
    return dll, f"on ({how}: {path})"


def _entries(dll: ctypes.CDLL) -> list[str]:
    """The kernel entry points the C++ kernels call, in mode_key.cpp's order."""
    return [n for n in dll.sbk_kernel_names().decode().split(",") if n]


def _table(isa: str) -> ctypes.Array:
    """Path ``isa``'s entry points, in the order mode_key.cpp names them (the library's
    own symbols: a tool may have wrapped the Kernels' Python bindings); made once per
    path, since push_isa asks for it at every entry of a block that names a path."""
    tables = _state.setdefault("tables", {})
    if isa not in tables:
        addrs = [_native.entry_address(isa, n) for n in _state["entries"]]
        tables[isa] = (ctypes.c_void_p * len(addrs))(*addrs)
    return tables[isa]


def entry_calls() -> dict[str, int]:
    """How many times the C++ kernels called each kernel entry point (sb_pointwise,
    sb_gemm, ...); tools that count kernel calls through the Python bindings add these."""
    dll = load()
    if dll is None:
        return {}
    return {n: dll.sbk_entry_calls(i) for i, n in enumerate(_state["entries"])}


def _on_isa(kernels) -> None:
    """_native's hook: this thread's forced kernel path (None: the process's)."""
    dll = _state.get("dll")
    if dll is not None:
        dll.sbk_set_table(None if kernels is None else _table(kernels.isa), 1)


def load() -> ctypes.CDLL | None:
    """The library (built on first use), or None where it is off or cannot be built."""
    if "status" not in _state:
        with _lock:
            if "status" not in _state:
                dll, status = _build()
                if dll is not None:
                    _state["entries"] = _entries(dll)
                    dll.sbk_set_table(_table(_native.process_kernels().isa), 0)
                    _native.on_isa_change(_on_isa)
                _state.update(dll=dll, status=status)
    return _state["dll"]


def fallthroughs(qualnames: list[str]) -> bool:
    """Register a fallthrough on the mode key for each op, in one C++ call; False where
    the library is off (the caller registers them through torch.library instead)."""
    dll = load()
    if dll is None or not qualnames:
        return False
    if dll.sbk_fallthroughs("\n".join(qualnames).encode()) != 0:
        raise RuntimeError(f"samebits: mode_key.cpp: {dll.sbk_error().decode()}")
    return True


def install(entries: list[tuple[str, str, int, int, str]]) -> int:
    """Put a C++ kernel over the mode key's Python kernel of each (op, kind, engine code,
    arity, parameters as pointwise.param_codes writes them); returns how many were
    installed (0 where the library is off)."""
    dll = load()
    if dll is None:
        return 0
    done = 0
    for qualname, kind, code, arity, params in entries:
        if dll.sbk_install(qualname.encode(), KINDS[kind], code, arity, params.encode()) != 0:
            raise RuntimeError(f"samebits: mode_key.cpp: {dll.sbk_error().decode()}")
        done += 1
    _state["installed"] = done + int(_state.get("installed", 0))
    return done


def status(build: bool = True) -> str:
    """'on (...)' or 'off (why)', and how many kernels are in place (``build=False``:
    'not loaded yet' where nothing has loaded the library)."""
    if build:
        load()
    elif "status" not in _state:
        return "not loaded yet (built or loaded on the first entry into the mode)"
    return f"{_state['status']}, {_state.get('installed', 0)} kernels"


def fast_calls(kind: str | None = None) -> int:
    """How many calls the C++ kernels (of ``kind``, or all) have decided without
    Python (0 where off)."""
    dll = load()
    return 0 if dll is None else dll.sbk_fast_calls(-1 if kind is None else KINDS[kind])


def unboxed(qualname: str) -> bool:
    """Whether ``qualname``'s C++ kernel is called without boxing its arguments."""
    dll = load()
    return dll is not None and bool(dll.sbk_unboxed(qualname.encode()))


def thread_pointwise() -> int | None:
    """The engine entry (an address) this thread's fast calls use now."""
    dll = load()
    return None if dll is None else dll.sbk_thread_pointwise()


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Every C++ kernel calls the Python kernel it replaced (process-wide; tests)."""
    dll = load()
    if dll is None:
        yield
        return
    was = dll.sbk_enabled()
    dll.sbk_set_enabled(0)
    try:
        yield
    finally:
        dll.sbk_set_enabled(was)
