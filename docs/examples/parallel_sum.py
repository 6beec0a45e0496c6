"""The classic "parallel sum varies with the number of processes" program, and the fix.

Each worker sums its part of the data; the parent adds the partial sums. With plain
floats the answer depends on how many parts there are. With samebits each worker
returns its exact partial sum as an integer state, and the integers add exactly:
the correctly rounded result is the same for 1 to 8 processes.

Run: python docs/examples/parallel_sum.py
"""

from __future__ import annotations

import math
from multiprocessing import Pool

import numpy as np

from samebits.exact import exact_sum
from samebits.exact._core import states
from samebits.exact._round import FORMATS, SCALE, round_int, state_to_int


def plain_part(part: np.ndarray) -> float:
    return float(np.sum(part))


def exact_part(part: np.ndarray) -> tuple[int, int]:
    """This part's exact sum as (integer in units of 2^-1074, special-value flags)."""
    import torch

    st, fl, _, _ = states(torch.from_numpy(part), [0])
    return state_to_int(st[0]), int(fl[0])


def main() -> None:
    rng = np.random.default_rng(0)
    data = rng.standard_normal(2_000_000) * np.exp(rng.uniform(-20, 20, 2_000_000))
    print(f"{'processes':>9}  {'plain np.sum of parts':>26}  {'samebits':>26}")
    results = set()
    for procs in range(1, 9):
        parts = np.array_split(data, procs)
        with Pool(procs) as pool:
            plain = sum(pool.map(plain_part, parts))
            exact_parts = pool.map(exact_part, parts)
        n = sum(p[0] for p in exact_parts)  # integers: exact, in any order
        flags = 0
        for p in exact_parts:
            flags |= p[1]
        ours = round_int(n, SCALE, FORMATS["float64"]) if not flags else math.nan
        results.add(ours)
        print(f"{procs:>9}  {plain!r:>26}  {ours!r:>26}")
    assert len(results) == 1 and results == {float(exact_sum(data))}
    print("samebits: identical for 1 to 8 processes, and equal to exact_sum(data)")


if __name__ == "__main__":
    main()
