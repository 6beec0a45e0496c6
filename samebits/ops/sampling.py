"""An invariant categorical sampler: ``multinomial`` (HF ``generate(do_sample=True)``
draws its next token with ``torch.multinomial(probs, 1)``).

Why: torch's multinomial draws exponentials (``-log(u)``, vectorized with SLEEF by
dispatch level) and takes ``argmax(p / q)``, so the sampled token changed with the
CPU's dispatch level; with replacement it normalizes a float cumulative sum.

Definition (the **SAMPLE** row of docs/design.md), per row of ``probs`` (V categories):

* the draws: one float64 uniform u in [0, 1) per (row, sample), ``torch.rand`` from the
  generator (53 random bits times 2^-53: the same numbers on every CPU), laid out row
  by row, so a row's draws depend on the generator's state and its row index only;
* the row's cumulative sums ``c_k`` in double, sequential from +0 (exact widening of
  float32/bfloat16/float16 probabilities; torch's float64 cumsum, which
  tests/ops/test_reductions.py holds to a sequential scan);
* the sample is the first k with ``c_k > u * c_{V-1}`` (the product rounded once): an
  inverse-CDF draw, never a zero-probability category.

Without replacement each further sample takes a fresh draw over the row with the
categories already drawn set to 0. Rows never mix, and the threads, the dispatch level
and the other rows' probabilities change nothing. (Only the stream position does: a
row at index i of a batch reads the generator's draws i * num_samples onwards.)
"""

from __future__ import annotations

import torch

from samebits.errors import UnsupportedInputError
from samebits.ops._common import check_float


def _draw(p: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """(R, n) indices: per row of p (R, V) float64 and draws u (R, n), the first k
    with cdf_k > u * total."""
    cdf = p.cumsum(-1)  # (R, V), sequential in double
    total = cdf[:, -1:]
    if bool((total <= 0).any()):
        raise UnsupportedInputError(
            "aten::multinomial: a row of probabilities sums to 0 (none left to draw)"
        )
    k = torch.searchsorted(cdf, u * total, right=True)  # (R, n)
    # u * total may round up to total: the last category with mass then
    last = (p > 0).cumsum(-1).argmax(-1, keepdim=True)
    return torch.minimum(k, last)


def multinomial(probs, num_samples: int, replacement: bool = False, *, generator=None):
    """``aten::multinomial``; see the module doc."""
    op = "aten::multinomial"
    check_float(op, probs)
    if probs.dim() not in (1, 2) or probs.size(-1) == 0:
        raise UnsupportedInputError(
            f"{op}: probabilities must be (V,) or (R, V), got {tuple(probs.shape)}"
        )
    n = int(num_samples)
    if n <= 0:
        raise UnsupportedInputError(f"{op}: num_samples must be > 0, got {n}")
    p = probs.reshape(-1, probs.size(-1)).double()  # (R, V), exact
    if not bool(torch.isfinite(p).all()) or bool((p < 0).any()):
        raise UnsupportedInputError(f"{op}: probabilities contain inf, nan or an element < 0")
    R, V = p.shape
    if not replacement and n > V:
        raise UnsupportedInputError(
            f"{op}: cannot draw {n} samples from {V} categories without replacement"
        )
    u = torch.rand(R, n, dtype=torch.float64, generator=generator)  # (R, n)
    if replacement or n == 1:
        out = _draw(p, u)
    else:
        cols = []
        for s in range(n):
            k = _draw(p, u[:, s : s + 1])  # (R, 1)
            cols.append(k)
            p = p.scatter(1, k, 0.0)
        out = torch.cat(cols, 1)
    return out.reshape(*probs.shape[:-1], n)


def _reference_frequencies(probs: torch.Tensor) -> torch.Tensor:
    """The distribution a sampler should follow: probs normalized per row, in float64."""
    p = probs.double()
    return p / p.sum(-1, keepdim=True)
