"""The mode's fixed costs: `python benchmarks/bench_overhead.py`.

* the first entry in a process (a fresh interpreter per sample: `import samebits`
  done, then the first `with batch_invariant(): pass`), and the steady enter + exit;
* per-op dispatch cost on tiny tensors (8 floats), where the kernel's arithmetic is
  negligible: an op the mode leaves to torch (`add`, `view`), an op of the pointwise
  engine (`exp`), a covered reduction (`sum`) and a small `linear`.

Times are medians (microseconds unless stated). The per-op table also gives native
time / invariant time, interleaved in one process as every benchmark here does.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from _harness import header, interleaved, table  # noqa: E402

import samebits  # noqa: E402

_FIRST = """
import time, torch, samebits
t = time.perf_counter()
with samebits.batch_invariant():
    pass
print(time.perf_counter() - t)
"""


def first_entry_ms(samples: int = 5) -> float:
    times = []
    for _ in range(samples):
        out = subprocess.run(
            [sys.executable, "-c", _FIRST], capture_output=True, text=True, check=True
        )
        times.append(float(out.stdout.strip().splitlines()[-1]) * 1e3)
    return statistics.median(times)


def steady_entry_us(n: int = 2000) -> float:
    with samebits.batch_invariant():
        pass
    times = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            with samebits.batch_invariant():
                pass
        times.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(times)


def per_op(fn, n: int = 2000) -> tuple[float, float, float]:
    """(native us, invariant us, native/invariant) per call, interleaved."""
    fn()
    with samebits.batch_invariant():
        fn()

    def loop() -> float:
        t = time.perf_counter()
        for _ in range(n):
            fn()
        return time.perf_counter() - t

    def inv() -> float:
        with samebits.batch_invariant():
            return loop()

    nat_t, inv_t = [], []

    def nat_rec() -> float:
        nat_t.append(loop())
        return nat_t[-1]

    def inv_rec() -> float:
        inv_t.append(inv())
        return inv_t[-1]

    r = interleaved(nat_rec, inv_rec, 7)
    return statistics.median(nat_t) / n * 1e6, statistics.median(inv_t) / n * 1e6, r


def main() -> None:
    print(header("bench_overhead: the mode's entry and per-op dispatch costs"))
    rows = [
        ["first entry in a process (ms)", f"{first_entry_ms():.1f}"],
        ["enter + exit, steady (us)", f"{steady_entry_us():.1f}"],
    ]
    print(table(rows, ["cost", "median"]))
    x, y = torch.randn(8), torch.randn(8)
    w, b = torch.randn(8, 8), torch.randn(8)
    ops = {
        "add (torch's, 8 floats)": lambda: x + y,
        "view (torch's)": lambda: x.view(2, 4),
        "exp (pointwise engine, 8 floats)": lambda: torch.exp(x),
        "softplus (engine, two parameters, 8 floats)": lambda: F.softplus(x, 2.0, 10.0),
        "add alpha=0.3 (engine fma, 8 floats)": lambda: torch.add(x, y, alpha=0.3),
        "sum (8 floats)": lambda: x.sum(),
        "linear (1x8 @ 8x8)": lambda: F.linear(x[None], w, b),
    }
    rows = []
    for name, fn in ops.items():
        nat, inv, r = per_op(fn)
        rows.append([name, f"{nat:.1f}", f"{inv:.1f}", f"{r:.2f}"])
    print(table(rows, ["op", "native us", "invariant us", "native/invariant"]))


if __name__ == "__main__":
    main()
