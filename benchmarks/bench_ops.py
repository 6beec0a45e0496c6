"""Invariant vs native, per covered op: `python benchmarks/bench_ops.py`.

Ratio = native time / invariant time (median of interleaved repeats); 1.00 is parity.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from _harness import geomean, header, ratio, table  # noqa: E402


def _small_ops(x, q, mask, s) -> dict:
    """The non-matmul ops on transformer-sized inputs."""
    return {
        "softmax (12288, 128)": lambda: torch.softmax(s, -1),
        "log_softmax (12288, 128)": lambda: torch.log_softmax(s, -1),
        "layer_norm (2048, 384)": lambda: F.layer_norm(x, (384,)),
        "rms_norm (2048, 384)": lambda: F.rms_norm(x, (384,)),
        "sum dim=-1 (2048, 384)": lambda: x.sum(-1),
        "mean dim=0 (2048, 384)": lambda: x.mean(0),
        "var dim=-1 (2048, 384)": lambda: x.var(-1),
        "whole sum (2048, 384)": lambda: x.sum(),
        "gelu (2048, 384)": lambda: F.gelu(x),
        "silu (2048, 384)": lambda: F.silu(x),
        "sdpa causal (8, 12, 128, 64)": lambda: F.scaled_dot_product_attention(
            q, q, q, is_causal=True
        ),
        "sdpa bool mask (8, 12, 128, 64)": lambda: F.scaled_dot_product_attention(
            q, q, q, attn_mask=mask
        ),
    }


def main() -> None:
    print(header("bench_ops: invariant / native speed ratio per op"))
    g = torch.Generator().manual_seed(0)
    rows, lin = [], []
    for dtype in (torch.float32, torch.bfloat16):
        for K, N in ((384, 1536), (1536, 384), (1024, 4096), (4096, 1024)):
            w = torch.randn(N, K, generator=g).to(dtype)
            b = torch.randn(N, generator=g).to(dtype)
            for M in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024):
                x = torch.randn(M, K, generator=g).to(dtype)
                r = ratio(lambda x=x, w=w, b=b: F.linear(x, w, b), repeats=5)
                lin.append(r)
                rows.append([f"linear M={M} K={K} N={N}", str(dtype).split(".")[1], f"{r:.2f}"])
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(32 * 64, 384, generator=g).to(dtype)
        q = torch.randn(8, 12, 128, 64, generator=g).to(dtype)
        mask = torch.ones(8, 1, 128, 128, dtype=torch.bool).tril()
        s = torch.randn(8 * 12 * 128, 128, generator=g).to(dtype)
        ops = _small_ops(x, q, mask, s)
        for name, fn in ops.items():
            rows.append([name, str(dtype).split(".")[1], f"{ratio(fn, repeats=5):.2f}"])
    print(table(rows, ["op", "dtype", "invariant/native speed"]))
    print(f"\nlinear over the grid: geometric mean {geomean(lin):.2f}, minimum {min(lin):.2f}")


if __name__ == "__main__":
    main()
