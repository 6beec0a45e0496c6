"""Shared pieces of the benchmarks: the machine header and interleaved timing.

Ratios, not absolute times: native and invariant runs alternate within one
process, and each ratio is the median over repeats (these machines are shared).
"""

from __future__ import annotations

import platform
import re
import statistics
import time
from collections.abc import Callable

import torch

import samebits


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def header(title: str) -> str:
    cfg = torch.__config__.show()
    mkl = re.search(r"Math Kernel Library Version ([\d.]+)", cfg)
    dnn = re.search(r"MKL-DNN v([\d.]+)", cfg)
    return (
        f"# {title}\n"
        f"cpu: {cpu_model()}, torch threads: {torch.get_num_threads()}, "
        f"capability: {torch.backends.cpu.get_cpu_capability()}\n"
        f"torch {torch.__version__}, MKL {mkl.group(1) if mkl else '-'}, "
        f"oneDNN {dnn.group(1) if dnn else '-'}, samebits {samebits.__version__}\n"
        f"samebits kernels: {kernel_path()}\n"
    )


def kernel_path() -> str:
    """The ISA path the mode's kernels run (SAMEBITS_ISA picks another)."""
    info = samebits.native_info()
    return (
        f"{info['isa']} path (CPU has {', '.join(info['available'] + info['explicit'])}; "
        f"SAMEBITS_ISA={info['requested']}), build {info['build']}"
        + ("" if info["portable"] else ", NOT PORTABLE: bits valid on this CPU model only")
    )


def _time(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def ratio(fn: Callable[[], object], repeats: int = 7, min_time: float = 0.02) -> float:
    """Median over repeats of native_time / invariant_time for ``fn``, the two
    runs interleaved (native first, then invariant first, and so on). Above 1
    means the invariant kernel is faster."""
    fn()
    with samebits.batch_invariant():
        fn()
    inner = 1
    while _time(fn) * inner < min_time and inner < 1 << 12:
        inner *= 2

    def loop():
        for _ in range(inner):
            fn()

    def invariant() -> float:
        with samebits.batch_invariant():
            return _time(loop)

    return interleaved(lambda: _time(loop), invariant, repeats)


def interleaved(native: Callable[[], float], invariant: Callable[[], float], repeats: int) -> float:
    """Median over repeats of native() / invariant(), two timings (seconds), the order
    alternating so neither side always runs first."""
    rs = []
    for i in range(repeats):
        if i % 2:
            ti = invariant()
            tn = native()
        else:
            tn = native()
            ti = invariant()
        rs.append(tn / ti)
    return statistics.median(rs)


def table(rows: list[list[str]], head: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]

    def line(r):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |"

    return "\n".join(
        [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]
    )


def geomean(xs: list[float]) -> float:
    return statistics.geometric_mean(xs)
