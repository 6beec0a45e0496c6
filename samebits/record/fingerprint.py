"""What produced an output: ``fingerprint()``, its stable id, and a diff of two.

Fields are grouped by section; ``BIT_FIELDS`` marks the ones that can change output
bits (software versions, BLAS, the samebits kernel build and its compiler, libm,
ISA, threads, determinism flags, the mode, GPU). Under the mode (both sides taken
in ``batch_invariant()``) the thread count, the CPU's ISA flags, torch's dispatch
level and the kernel path (portable, avx2, avx512, avx512_bf16) do not change bits:
every reduction has a fixed order, and every portable kernel path gives the same bits
(tests/native); ``MODE_FREE_FIELDS`` lists them. The non-portable ``amx`` path's bits
hold on one CPU model only: ``kernels.bits`` (a bit field) is ``"portable"``, or
``"amx on <CPU model>"``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import re
import sys
from typing import Any

import numpy as np
import torch

_ISA = re.compile(r"^(avx\w*|amx\w*|fma\w*|f16c|sse4_\d|neon|asimd\w*|sve\w*)$")


def _cpu() -> dict[str, Any]:
    model, flags = platform.processor() or "unknown", []
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = sorted(w for w in value.split() if _ISA.match(w))
    except OSError:
        pass
    return {
        "model": model,
        "machine": platform.machine(),
        "isa": flags,
        "cores": os.cpu_count(),
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
    }


def _build() -> dict[str, Any]:
    cfg = torch.__config__.show()
    get = lambda pat: m.group(1) if (m := re.search(pat, cfg)) else None  # noqa: E731
    return {
        "blas": get(r"BLAS_INFO=(\w+)"),
        "mkl": get(r"Math Kernel Library Version ([\d.]+)"),
        "onednn": get(r"MKL-DNN v([\d.]+)"),
        "openmp": get(r"OpenMP (\d+)"),
        "cxx_compiler": get(r"- GCC ([\d.]+)"),
    }


def _versions() -> dict[str, str | None]:
    import samebits

    try:
        import transformers

        tv = transformers.__version__
    except ImportError:
        tv = None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "transformers": tv,
        "samebits": samebits.__version__,
    }


@functools.lru_cache(maxsize=1)
def _compiler() -> str | None:
    """The C compiler's version line (None where a prebuilt library runs without one)."""
    from samebits._native import _build

    try:
        return _build.compiler_version(_build.compiler()).splitlines()[0]
    except Exception:  # noqa: BLE001 - no compiler, or it would not run
        return None


def _kernels() -> dict[str, Any]:
    """samebits' kernel library: its build id (a hash of the C sources, the flags of
    every path and the compiler's version and target), the path running, the
    compiler, and the C library (libm) the process uses."""
    from samebits._native import native_info

    info = native_info()
    libc, version = platform.libc_ver()
    return {
        "build": info["build"],
        "path": info["isa"],
        # what the path's bits are reproducible across: every CPU, or this CPU model
        "bits": "portable" if info["portable"] else f"{info['isa']} on {_cpu()['model']}",
        "source": info["source"],
        "compiler": _compiler(),
        "libm": f"{libc} {version}".strip() or None,
    }


def _gpu() -> dict[str, Any] | None:
    if not torch.cuda.is_available():
        return None
    return {
        "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "capability": list(torch.cuda.get_device_capability(0)),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }


def fingerprint() -> dict[str, Any]:
    """A JSON-serializable description of everything that can decide output bits."""
    from samebits._mode import is_batch_invariant

    env = {
        k: v
        for k, v in sorted(os.environ.items())
        if k.startswith(("OMP_", "MKL_", "KMP_", "OPENBLAS_"))
    }
    return {
        "versions": _versions(),
        "build": _build(),
        "kernels": _kernels(),
        "cpu": _cpu(),
        "threads": {
            "torch": torch.get_num_threads(),
            "interop": torch.get_num_interop_threads(),
            "env": env,
        },
        "determinism": {
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
            "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
        },
        "samebits": {"batch_invariant": is_batch_invariant()},
        "gpu": _gpu(),
        "os": {
            "system": platform.system(),
            "release": platform.release(),
            "platform": sys.platform,
        },
    }


# Dotted prefixes of fields that can change output bits. Everything else is informative.
BIT_FIELDS = (
    "versions.torch",
    "versions.transformers",
    "versions.samebits",
    "build.",
    "kernels.build",  # the compiled kernels themselves
    "kernels.bits",  # portable, or a non-portable path (amx) and the CPU model
    "kernels.compiler",  # (in the build id too)
    "kernels.libm",  # torch's scalar math outside the kernels (tails, uncovered ops)
    "cpu.isa",
    "cpu.machine",
    "cpu.torch_capability",
    "threads.",
    "determinism.",
    "samebits.",
    "gpu",
)


# Bit-affecting outside the mode, not under it (see the module docstring).
# (kernels.path is in neither list: every portable path gives the same bits, in the mode
# or not; kernels.bits names a non-portable one)
MODE_FREE_FIELDS = ("threads.", "cpu.isa", "cpu.torch_capability")


def _matches(field: str, prefixes: tuple[str, ...]) -> bool:
    return any(
        field == p or field.startswith(p if p.endswith(".") else p + ".") or field == p.rstrip(".")
        for p in prefixes
    )


def affects_bits(field: str, under_mode: bool = False) -> bool:
    """Whether ``field`` can change output bits; ``under_mode``: for outputs made in
    ``batch_invariant()``, where the MODE_FREE_FIELDS cannot."""
    if under_mode and _matches(field, MODE_FREE_FIELDS):
        return False
    return _matches(field, BIT_FIELDS)


def under_mode(fp: dict[str, Any]) -> bool:
    return bool((fp.get("samebits") or {}).get("batch_invariant"))


def flatten(fp: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in fp.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))  # an empty section contributes no field
        else:
            out[key] = v
    return out


def diff(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Fields that differ: [{"field", "a", "b", "affects_bits"}], sorted by field."""
    fa, fb = flatten(a), flatten(b)
    mode = under_mode(a) and under_mode(b)
    rows = []
    for key in sorted(set(fa) | set(fb)):
        if fa.get(key) != fb.get(key):
            rows.append(
                {
                    "field": key,
                    "a": fa.get(key),
                    "b": fb.get(key),
                    "affects_bits": affects_bits(key, mode),
                }
            )
    return rows


def fingerprint_id(fp: dict[str, Any] | None = None) -> str:
    """Short SHA-256 over the bit-affecting fields (under the mode if ``fp`` was
    taken in it): equal ids mean equal bit conditions."""
    fp = fp if fp is not None else fingerprint()
    mode = under_mode(fp)
    relevant = {k: v for k, v in flatten(fp).items() if affects_bits(k, mode)}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]
