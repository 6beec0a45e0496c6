"""Invariant vs native, per covered non-matmul op: `python benchmarks/bench_ops.py`.

A second table times every other function of the pointwise engine on 1M float32
elements, each on inputs in its domain (`--engine` prints that table alone;
`--engine cos tan` times only the functions named).
The linear grid is in bench_linear.py, attention in bench_attention.py.

Ratio = native time / invariant time (median of interleaved repeats); 1.00 is parity.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from _harness import header, ratio, table  # noqa: E402

import samebits  # noqa: E402


def _small_ops(x, q, mask, s, y) -> dict:
    """The non-matmul ops on transformer-sized inputs, and the pointwise engine's
    functions on 1M elements (y: 1024 x 1024)."""
    pos = y.abs() + 0.5
    return {
        "softmax (12288, 128)": lambda: torch.softmax(s, -1),
        "log_softmax (12288, 128)": lambda: torch.log_softmax(s, -1),
        "layer_norm (2048, 384)": lambda: F.layer_norm(x, (384,)),
        "rms_norm (2048, 384)": lambda: F.rms_norm(x, (384,)),
        "sum dim=-1 (2048, 384)": lambda: x.sum(-1),
        "mean dim=0 (2048, 384)": lambda: x.mean(0),
        "var dim=-1 (2048, 384)": lambda: x.var(-1),
        "whole sum (2048, 384)": lambda: x.sum(),
        "gelu (1M)": lambda: F.gelu(y),
        "gelu tanh (1M)": lambda: F.gelu(y, approximate="tanh"),
        "silu (1M)": lambda: F.silu(y),
        "exp (1M)": lambda: torch.exp(y),
        "expm1 (1M)": lambda: torch.expm1(y),
        "tanh (1M)": lambda: torch.tanh(y),
        "sigmoid (1M)": lambda: torch.sigmoid(y),
        "erf (1M)": lambda: torch.erf(y),
        "log (1M)": lambda: torch.log(pos),
        "log1p (1M)": lambda: torch.log1p(pos),
        "sin (1M)": lambda: torch.sin(y),
        "softplus (1M)": lambda: F.softplus(y),
        "pow(x, 2.5) (1M)": lambda: torch.pow(pos, 2.5),
        "add alpha=0.3 (1M)": lambda: torch.add(y, pos, alpha=0.3),
        "sqrt (1M)": lambda: torch.sqrt(pos),
        "sdpa causal (8, 12, 128, 64)": lambda: F.scaled_dot_product_attention(
            q, q, q, is_causal=True
        ),
        "sdpa bool mask (8, 12, 128, 64)": lambda: F.scaled_dot_product_attention(
            q, q, q, attn_mask=mask
        ),
    }


def _engine_functions(g: torch.Generator) -> dict:
    """The engine's other functions on 1M float32 elements, inputs in each domain."""
    n = 1 << 20
    x, y = torch.randn(n, generator=g), torch.randn(n, generator=g)
    pos = torch.rand(n, generator=g) * 4 + 0.01
    unit = torch.rand(n, generator=g) * 1.98 - 0.99
    return {
        "cos": lambda: torch.cos(x), "tan": lambda: torch.tan(x),
        "asin": lambda: torch.asin(unit), "acos": lambda: torch.acos(unit),
        "atan": lambda: torch.atan(x), "sinh": lambda: torch.sinh(x),
        "cosh": lambda: torch.cosh(x), "asinh": lambda: torch.asinh(x),
        "acosh": lambda: torch.acosh(pos + 1), "atanh": lambda: torch.atanh(unit),
        "exp2": lambda: torch.exp2(x), "log2": lambda: torch.log2(pos),
        "log10": lambda: torch.log10(pos), "erfc": lambda: torch.erfc(x),
        "erfinv": lambda: torch.erfinv(unit), "lgamma": lambda: torch.lgamma(pos),
        "digamma": lambda: torch.digamma(pos), "rsqrt": lambda: torch.rsqrt(pos),
        "logsigmoid": lambda: F.logsigmoid(x), "mish": lambda: F.mish(x),
        "elu": lambda: F.elu(x), "selu": lambda: F.selu(x),
        "hardswish": lambda: F.hardswish(x), "hardsigmoid": lambda: F.hardsigmoid(x),
        "softshrink": lambda: F.softshrink(x), "logit": lambda: torch.logit(unit.abs()),
        "sinc": lambda: torch.sinc(x), "atan2": lambda: torch.atan2(x, y),
        "logaddexp": lambda: torch.logaddexp(x, y), "xlogy": lambda: torch.xlogy(x, pos),
        "hypot": lambda: torch.hypot(x, y), "pow(x, y)": lambda: torch.pow(pos, y),
        "lerp(x, y, 0.3)": lambda: torch.lerp(x, y, 0.3),
        "addcmul value=0.3": lambda: torch.addcmul(x, x, y, value=0.3),
    }  # fmt: skip


def main() -> None:
    if "--engine" in sys.argv[1:]:
        print(header("bench_ops: the pointwise engine's other functions, 1M float32"))
        _engine_table([a for a in sys.argv[1:] if a != "--engine"])
        return
    print(header("bench_ops: invariant / native speed ratio per op (non-matmul)"))
    g = torch.Generator().manual_seed(0)
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(32 * 64, 384, generator=g).to(dtype)
        q = torch.randn(8, 12, 128, 64, generator=g).to(dtype)
        mask = torch.ones(8, 1, 128, 128, dtype=torch.bool).tril()
        s = torch.randn(8 * 12 * 128, 128, generator=g).to(dtype)
        y = torch.randn(1024, 1024, generator=g).to(dtype)
        ops = _small_ops(x, q, mask, s, y)
        for name, fn in ops.items():
            try:
                r = f"{ratio(fn, repeats=5):.2f}"
            except samebits.NotInvariantError:  # a build that refuses the op
                r = "refused"
            rows.append([name, str(dtype).split(".")[1], r])
    print(table(rows, ["op", "dtype", "invariant/native speed"]))
    print()
    _engine_table()


def _engine_table(only: list[str] | None = None) -> None:
    rows = []
    functions = _engine_functions(torch.Generator().manual_seed(1))
    unknown = sorted(set(only or ()) - set(functions))
    if unknown:
        raise SystemExit(f"bench_ops: no engine function {unknown}; known: {sorted(functions)}")
    for name, fn in functions.items():
        if only and name not in only:
            continue
        rows.append([f"{name} (1M)", f"{ratio(fn, repeats=5):.2f}"])
    print(table(rows, ["engine function, float32", "invariant/native speed"]))


if __name__ == "__main__":
    main()
