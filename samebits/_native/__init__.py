"""Build and load the native kernels (``kernels.c``) through ctypes.

The library is compiled once per (source, compiler, flags, torch) on first use and
cached under ``$SAMEBITS_CACHE`` (default ``~/.cache/samebits``). It links against
the OpenMP runtime that torch itself loaded, so our threads and torch's threads are
one pool and ``torch.set_num_threads`` sizes both.
"""

from __future__ import annotations

import ctypes
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch

from samebits.errors import NativeBuildError

_SRC = Path(__file__).with_name("kernels.c")
# -ffp-contract=off: only explicit fma() fuses. -fno-trapping-math and -fno-math-errno
# let GCC if-convert and vectorize; neither changes an IEEE result.
_FLAGS = [
    "-O3",
    "-march=native",
    "-ffp-contract=off",
    "-fno-fast-math",
    "-fno-trapping-math",
    "-fno-math-errno",
    "-fPIC",
    "-fopenmp",
]
_lock = threading.Lock()
_lib: ctypes.CDLL | None = None

F32, BF16 = 0, 1
I64, INT, P, DBL = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p, ctypes.c_double

_SIGNATURES = {
    "sb_gemm": (
        [
            P,
            I64,
            I64,
            I64,
            P,
            I64,
            I64,
            I64,
            P,
            I64,
            I64,
            I64,
            I64,
            I64,
            I64,
            P,
            INT,
            INT,
            INT,
            INT,
        ],
        INT,
    ),
    "sb_sum": ([P, I64, I64, I64, P, INT, P, INT, INT], None),
    "sb_sum_all": ([P, I64, INT, INT], DBL),
    "sb_unary": ([P, P, I64, INT, INT, INT], None),
    "sb_unary_scalar": ([P, P, I64, INT], None),
    "sb_softmax": ([P, P, I64, I64, INT, INT, INT, INT], None),
    "sb_attention": ([P, P, P, P, P, INT, P, ctypes.c_float, INT, INT], INT),
    "sb_norm": ([P, P, P, P, P, P, I64, I64, DBL, INT, INT, INT, INT], None),
    "sb_exact_acc": ([P, I64, I64, I64, INT, P, P, INT], None),
    "sb_exact_dot": ([P, P, I64, INT, P, P], None),
    "sb_abi_version": ([], INT),
}


def _cache_dir() -> Path:
    root = os.environ.get("SAMEBITS_CACHE") or os.path.join(Path.home(), ".cache", "samebits")
    return Path(root)


def _torch_openmp() -> str | None:
    """Path of the OpenMP runtime shipped inside the torch wheel, if any."""
    hits = sorted(glob.glob(os.path.join(os.path.dirname(torch.__file__), "lib", "libgomp*.so*")))
    return hits[0] if hits else None


def _compiler() -> str:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise NativeBuildError(
            "samebits needs a C compiler to build its kernels once: none found "
            "(set CC, or install gcc, e.g. `apt-get install gcc`)."
        )
    return cc


def _build() -> Path:
    cc = _compiler()
    omp = _torch_openmp()
    src = _SRC.read_bytes()
    key = hashlib.sha256(
        src + repr((cc, _FLAGS, omp, torch.__version__, sys.platform)).encode()
    ).hexdigest()[:16]
    out = _cache_dir() / f"samebits_kernels_{key}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    link = [omp, f"-Wl,-rpath,{os.path.dirname(omp)}"] if omp else ["-lgomp"]
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        obj, so = os.path.join(tmp, "k.o"), os.path.join(tmp, "k.so")
        cmds = [
            [cc, *_FLAGS, "-c", str(_SRC), "-o", obj],
            [cc, "-shared", obj, "-o", so, *link, "-lm"],
        ]
        for cmd in cmds:
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise NativeBuildError(
                    f"building samebits kernels failed: {' '.join(cmd)}\n{proc.stderr.strip()}"
                )
        os.replace(so, out)  # atomic: concurrent builders race safely
    return out


def lib() -> ctypes.CDLL:
    """The loaded kernel library, built on first call."""
    global _lib
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is None:
            handle = ctypes.CDLL(str(_build()))
            for name, (args, res) in _SIGNATURES.items():
                fn = getattr(handle, name)
                fn.argtypes, fn.restype = args, res
            _lib = handle
    return _lib


def dtype_code(dtype: torch.dtype) -> int:
    if dtype == torch.float32:
        return F32
    if dtype == torch.bfloat16:
        return BF16
    raise ValueError(f"no native kernel for {dtype}")


def nthreads() -> int:
    return max(1, torch.get_num_threads())
