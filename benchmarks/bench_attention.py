"""scaled_dot_product_attention under the mode vs native: `python benchmarks/bench_attention.py`.

Prefill (causal, query length = key length) at several lengths, and decode (one
query against a KV cache of 16..1024 keys, as a batched-generation step with a
padding mask). Ratio = native time / invariant time, median of interleaved repeats.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from _harness import geomean, header, ratio, table  # noqa: E402

HEADS, DIM = 8, 64


def main() -> None:
    print(header("bench_attention: sdpa invariant / native speed ratio"))
    g = torch.Generator().manual_seed(0)
    rows, all_r = [], []
    for dtype in (torch.float32, torch.bfloat16):
        name = str(dtype).split(".")[1]
        for batch, L in ((1, 64), (1, 256), (1, 1024), (8, 128)):
            q, k, v = (torch.randn(batch, HEADS, L, DIM, generator=g).to(dtype) for _ in range(3))
            r = ratio(lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v, is_causal=True))
            rows.append([f"prefill causal batch={batch} L={L}", name, f"{r:.2f}"])
            all_r.append(r)
        for batch in (1, 8):
            for S in (16, 64, 256, 1024):
                q = torch.randn(batch, HEADS, 1, DIM, generator=g).to(dtype)
                k, v = (torch.randn(batch, HEADS, S, DIM, generator=g).to(dtype) for _ in range(2))
                mask = torch.ones(batch, 1, 1, S, dtype=torch.bool)
                mask[:, :, :, : S // 8] = False  # left padding of the shorter prompts
                r = ratio(
                    lambda q=q, k=k, v=v, m=mask: F.scaled_dot_product_attention(
                        q, k, v, attn_mask=m
                    )
                )
                rows.append([f"decode batch={batch} cache={S}", name, f"{r:.2f}"])
                all_r.append(r)
    print(table(rows, ["case", "dtype", "invariant/native speed"]))
    print(f"\ngeometric mean {geomean(all_r):.2f}, minimum {min(all_r):.2f}")


if __name__ == "__main__":
    main()
