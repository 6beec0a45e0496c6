"""F.linear under the mode vs native over the issue's grid: `python benchmarks/bench_linear.py`.

`--quick` runs a small grid (M 1, 8, 64, 256; two shapes), for comparing kernel paths
(`SAMEBITS_ISA=portable python benchmarks/bench_linear.py --quick`: the portable path
is far slower, bfloat16 most of all).

`--onednn-fp32` times native float32 with oneDNN's linear (AVX-512 code on any CPU that
has AVX-512) instead of torch's default MKL, whose AVX2 code is what runs on AMD CPUs:
on an AMD CPU with AVX-512 it stands in for what a Xeon's MKL (AVX-512) runs.

Ratio = native time / invariant time (median of interleaved repeats); 1.00 is parity,
above 1 the invariant kernel is faster. Also: thread scaling of a large-M linear
under the mode (1 -> 2 threads), checked bitwise identical across thread counts.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import samebits

sys.path.insert(0, str(Path(__file__).parent))
from _harness import _time, geomean, header, interleaved, ratio, table  # noqa: E402

MS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
KNS = ((384, 1536), (1536, 384), (1024, 4096), (4096, 1024), (4096, 11008))


QUICK_MS = (1, 8, 64, 256)
QUICK_KNS = ((384, 1536), (4096, 1024))


def onednn_ratio(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, repeats: int = 5) -> float:
    """oneDNN's float32 linear (operands converted once, outside the timing) against
    F.linear under the mode, interleaved."""
    xm, wm, bm = x.to_mkldnn(), w.to_mkldnn(), b.to_mkldnn()

    def native():
        return torch._C._nn.mkldnn_linear(xm, wm, bm)

    def inv():
        return F.linear(x, w, b)

    native()
    with samebits.batch_invariant():
        inv()
    inner = 1
    while _time(native) * inner < 0.02 and inner < 1 << 12:
        inner *= 2

    def loop(fn):
        def run():
            for _ in range(inner):
                fn()

        return run

    def invariant() -> float:
        with samebits.batch_invariant():
            return _time(loop(inv))

    return interleaved(lambda: _time(loop(native)), invariant, repeats)


def grid(
    ms: tuple[int, ...] = MS, kns: tuple[tuple[int, int], ...] = KNS, onednn: bool = False
) -> list[float]:
    g = torch.Generator().manual_seed(0)
    rows, ratios, per_dtype = [], [], {}
    for dtype in (torch.float32, torch.bfloat16):
        for K, N in kns:
            w = torch.randn(N, K, generator=g).to(dtype)
            b = torch.randn(N, generator=g).to(dtype)
            vs = " vs oneDNN" if onednn and dtype == torch.float32 else ""
            row = [f"{str(dtype).split('.')[1]} K={K} N={N}{vs}"]
            for M in ms:
                x = torch.randn(M, K, generator=g).to(dtype)
                if vs:
                    r = onednn_ratio(x, w, b)
                else:
                    r = ratio(lambda x=x, w=w, b=b: F.linear(x, w, b), repeats=5)
                ratios.append(r)
                per_dtype.setdefault(row[0].split()[0] + vs, []).append(r)
                row.append(f"{r:.2f}")
            rows.append(row)
    print(table(rows, ["shape \\ M", *map(str, ms)]))
    print(
        f"\nlinear over the grid ({len(ratios)} points): geometric mean {geomean(ratios):.2f}, "
        f"minimum {min(ratios):.2f}"
    )
    for name, rs in per_dtype.items():
        print(f"  {name}: geometric mean {geomean(rs):.2f}, minimum {min(rs):.2f}")
    return ratios


def scaling(M: int = 1024, K: int = 1024, N: int = 4096, repeats: int = 5) -> None:
    """Large-M linear under the mode: time at 1 and 2 threads, interleaved."""
    g = torch.Generator().manual_seed(1)
    x, w = torch.randn(M, K, generator=g), torch.randn(N, K, generator=g)
    before = torch.get_num_threads()
    outs, times = {}, {1: [], 2: []}
    try:
        with samebits.batch_invariant():
            for _ in range(repeats):
                for t in (1, 2):
                    torch.set_num_threads(t)
                    s = time.perf_counter()
                    outs[t] = F.linear(x, w)
                    times[t].append(time.perf_counter() - s)
    finally:
        torch.set_num_threads(before)
    same = outs[1].numpy().tobytes() == outs[2].numpy().tobytes()
    speedup = statistics.median(times[1]) / statistics.median(times[2])
    print(
        f"\nthread scaling under the mode, linear M={M} K={K} N={N} fp32: "
        f"1 -> 2 threads speedup {speedup:.2f}x, outputs bitwise identical: {same}"
    )
    if not same:
        raise SystemExit("thread count changed the bits")


def main() -> None:
    print(header("bench_linear: F.linear invariant / native speed ratio"))
    onednn = "--onednn-fp32" in sys.argv[1:]
    if "--quick" in sys.argv[1:]:
        grid(QUICK_MS, QUICK_KNS, onednn)
        return
    grid(onednn=onednn)
    scaling()


if __name__ == "__main__":
    main()
