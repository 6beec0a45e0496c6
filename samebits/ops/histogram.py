"""Invariant ``histc``: equal-width bins, exact integer counts.

Why a kernel: torch's histc places each element by comparing it with bin edges from
``linspace``, whose values torch's vector and scalar loops round differently (so the
mode refuses ``linspace.out``, and histc with it). MoE routers call histc to count the
tokens per expert (transformers' grouped_mm experts path).

Definition: edge i is ``lo + i * ((hi - lo) / bins)`` in double (edge ``bins`` is ``hi``);
an element x (widened exactly) with ``lo <= x <= hi`` falls in the last bin whose edge
is ``<= x`` (``hi`` itself in the last bin); NaN and elements outside are not counted.
(torch rounds its edges to the input's dtype first: in bfloat16 an element near an
edge can land in the neighbouring bin there; integer data with integer ``lo``/``hi``,
the routers' case, is counted alike.) Counts are integers, exact in any order; the result
has the input's dtype. With ``min == max`` the range is the data's (min, max), widened
by 1 each way if those are equal, as torch does.
"""

from __future__ import annotations

import math

import torch

from samebits.errors import UnsupportedInputError
from samebits.ops._common import check_float, is_exact_dtype


def histc(x: torch.Tensor, bins: int = 100, min=0, max=0) -> torch.Tensor:  # noqa: A002
    if is_exact_dtype(x.dtype):
        return NotImplemented
    dtype = check_float("aten::histc", x)
    lo, hi = float(min), float(max)
    if bins <= 0:
        raise UnsupportedInputError(f"aten::histc: bins must be > 0, got {bins}")
    if lo == hi and x.numel():
        lo, hi = float(x.min()), float(x.max())
    if lo == hi:
        lo, hi = lo - 1, hi + 1
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise UnsupportedInputError(f"aten::histc: range [{lo}, {hi}] is not finite and ordered")
    step = (hi - lo) / bins
    edges = torch.arange(bins + 1, dtype=torch.float64) * step + lo  # (bins + 1,)
    edges[bins] = hi
    v = x.reshape(-1).double()  # exact
    v = v[(v >= lo) & (v <= hi)]  # NaN fails both
    pos = (torch.searchsorted(edges, v, right=True) - 1).clamp_(0, bins - 1)
    return torch.bincount(pos, minlength=bins).to(dtype)


def _reference(x: torch.Tensor, bins: int = 100, min=0, max=0) -> torch.Tensor:  # noqa: A002
    """torch's histc of the data widened to float64 (edges in double, as ours)."""
    return torch.histc(x.double(), bins, min, max).to(x.dtype)
