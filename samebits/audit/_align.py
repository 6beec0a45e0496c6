"""Matching one item's part of a tensor between two runs (through batch folding,
transposes and padding), and sizing a difference in the output's own scale."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from samebits.record.compare import compare


@dataclass
class Size:
    """The worst difference over a check's comparisons, in the output's own scale:
    max abs, max abs relative to the largest element, and ULPs at that element
    (a per-element ULP count near zero is large and says little about size)."""

    max_abs: float = 0.0
    max_ulp: int = 0  # per element, the largest
    max_rel: float = 0.0
    ulp_at_max: float = 0.0
    largest: float = 0.0

    def add(self, max_abs: float, max_ulp: int, largest: float, ulp: float) -> None:
        self.max_abs, self.max_ulp = max(self.max_abs, max_abs), max(self.max_ulp, max_ulp)
        self.largest = max(self.largest, largest)
        if largest > 0 and math.isfinite(max_abs):
            self.max_rel = max(self.max_rel, max_abs / largest)
        if ulp > 0 and math.isfinite(max_abs):
            self.ulp_at_max = max(self.ulp_at_max, max_abs / ulp)

    def headline(self) -> str:
        if not math.isfinite(self.max_abs):
            return f"outputs differ by up to {self.max_abs} (non-finite values differ)"
        return (
            f"outputs differ by up to {self.max_abs:.3g} "
            f"({self.max_rel:.2g} of the largest element, |x| = {self.largest:.3g}: "
            f"{self.ulp_at_max:.3g} ulp at that scale)"
        )


def item_of(t: torch.Tensor, p: Any) -> torch.Tensor:
    """Item ``p.pos``'s rows of ``t`` (batch dim 0, or n * k rows folded into dim 0)."""
    if p.pos is None or t.dim() == 0:
        return t
    if t.shape[0] == p.n:
        return t[p.pos]
    if p.n > 1 and t.shape[0] % p.n == 0:
        k = t.shape[0] // p.n
        return t[p.pos * k : (p.pos + 1) * k]
    return t


def aligned(a: torch.Tensor, pa: Any, b: torch.Tensor, pb: Any):
    """The item's part of an op's tensor in both runs, with padded positions dropped
    along every dim where one run has the padded length and the other the real one
    (after a transpose the sequence dim moves; attention scores have two of them).
    None when the two cannot be matched up."""
    x, y = item_of(a, pa), item_of(b, pb)
    for p, flip in ((pb, False), (pa, True)):
        if p.where is None:
            continue
        u, v = (y, x) if not flip else (x, y)  # u: the padded run's part
        n_real, top = len(p.where), int(p.where.max())
        if u.dim() != v.dim():
            return None
        for d in range(u.dim()):
            if u.shape[d] != v.shape[d] and v.shape[d] == n_real and u.shape[d] > top:
                u = u.index_select(d, p.where)
        x, y = (v, u) if not flip else (u, v)
    if x.shape != y.shape or x.dtype != y.dtype:
        return None
    return x, y


def differ(xs: list[torch.Tensor], ys: list[torch.Tensor], pair: Any) -> bool:
    for a, b in zip(xs, ys, strict=False):
        if a.shape == b.shape and a.dtype == b.dtype and compare(a, b).equal_bits:
            continue  # the same tensor in both runs (a weight, or a batch that did not change)
        got = aligned(a, pair.ref, b, pair.test)
        if got is not None and not compare(*got).equal_bits:
            return True
    return False


def spacing(x: float, dtype: torch.dtype) -> float:
    """The distance from |x| to the next float of ``dtype`` (one ULP at x)."""
    t = torch.tensor(abs(x), dtype=dtype)
    return float(torch.nextafter(t, torch.tensor(float("inf"), dtype=dtype)) - t)


def scale(a: list[tuple[str, torch.Tensor]], b: list[tuple[str, torch.Tensor]]):
    """(largest |element|, ULP at it) over the leaves that differ, for the headline size."""
    largest, ulp = 0.0, 0.0
    for (_na, ta), (_nb, tb) in zip(a, b, strict=False):
        if ta.shape != tb.shape or ta.dtype != tb.dtype or not ta.dtype.is_floating_point:
            continue
        if ta.numel() == 0 or compare(ta, tb).equal_bits:
            continue
        finite = ta[torch.isfinite(ta)]
        m = float(finite.abs().max()) if finite.numel() else 0.0
        if m >= largest:
            largest, ulp = m, spacing(m, ta.dtype)
    return largest, ulp
