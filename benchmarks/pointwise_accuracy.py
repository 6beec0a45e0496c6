"""Accuracy of the pointwise engine's functions against float64 references: one markdown
row per case of samebits.testing._pointwise (the cases tests/native/test_pointwise_math.py
asserts), with the max error in ulps, the operands where it occurs, and torch float32's
max error on the same samples for comparison.

    python benchmarks/pointwise_accuracy.py [samples per case, default 200000]

Every ISA path gives the same bits (the tests check it), so one path's errors are every
path's.
"""

from __future__ import annotations

import sys

from _harness import cpu_model, table

from samebits import _native
from samebits.testing._pointwise import CASES, measure


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    info = _native.native_info()
    print(
        f"# pointwise engine accuracy\ncpu: {cpu_model()}, path: {info['isa']}, samples: {n} per case"
    )
    print("(mpmath references: a tenth of that)\n")
    rows = []
    for case in CASES:
        r = measure(case, n)
        params = f" ({', '.join(f'{v:.4g}' for v in case.params)})" if case.params else ""
        where = ", ".join(f"{w:.9g}" for w in r.where)
        rows.append(
            [
                f"{case.op}{params}",
                case.domain,
                f"{r.max_error:.3f}",
                f"({where})",
                f"{r.torch_error:.3g}",
            ]
        )
    print(table(rows, ["function", "domain sampled", "max ulp", "where", "torch float32"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
