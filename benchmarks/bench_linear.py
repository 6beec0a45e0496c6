"""F.linear under the mode vs native over the issue's grid: `python benchmarks/bench_linear.py`.

`--quick` runs a small grid (M 1, 8, 64, 256; two shapes), for comparing kernel paths
(`SAMEBITS_ISA=portable python benchmarks/bench_linear.py --quick`: the portable path
is far slower, bfloat16 most of all).

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
from _harness import geomean, header, ratio, table  # noqa: E402

MS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
KNS = ((384, 1536), (1536, 384), (1024, 4096), (4096, 1024), (4096, 11008))


QUICK_MS = (1, 8, 64, 256)
QUICK_KNS = ((384, 1536), (4096, 1024))


def grid(ms: tuple[int, ...] = MS, kns: tuple[tuple[int, int], ...] = KNS) -> list[float]:
    g = torch.Generator().manual_seed(0)
    rows, ratios = [], []
    for dtype in (torch.float32, torch.bfloat16):
        for K, N in kns:
            w = torch.randn(N, K, generator=g).to(dtype)
            b = torch.randn(N, generator=g).to(dtype)
            row = [f"{str(dtype).split('.')[1]} K={K} N={N}"]
            for M in ms:
                x = torch.randn(M, K, generator=g).to(dtype)
                r = ratio(lambda x=x, w=w, b=b: F.linear(x, w, b), repeats=5)
                ratios.append(r)
                row.append(f"{r:.2f}")
            rows.append(row)
    print(table(rows, ["shape \\ M", *map(str, ms)]))
    print(
        f"\nlinear over the grid ({len(ratios)} points): geometric mean {geomean(ratios):.2f}, "
        f"minimum {min(ratios):.2f}"
    )
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
    if "--quick" in sys.argv[1:]:
        grid(QUICK_MS, QUICK_KNS)
        return
    grid()
    scaling()


if __name__ == "__main__":
    main()
