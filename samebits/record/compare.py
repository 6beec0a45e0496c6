"""Bitwise and ULP comparison of tensors (shared by verify and the audit)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

_INT = {8: torch.int64, 4: torch.int32, 2: torch.int16, 1: torch.int8}


def raw_bytes(t: torch.Tensor) -> bytes:
    """The tensor's element bytes in row-major order (what hashes cover)."""
    t = t.detach().cpu().contiguous()
    return t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def _ordered(t: torch.Tensor) -> torch.Tensor:
    """Map floats to integers whose order matches the floats' (for ULP distances)."""
    i = t.contiguous().view(_INT[t.element_size()]).to(torch.int64)
    bits = t.element_size() * 8
    sign_mask = 1 << (bits - 1)
    neg = i < 0 if bits == 64 else (i & sign_mask) != 0
    mag = i & (sign_mask - 1) if bits < 64 else i & 0x7FFFFFFFFFFFFFFF
    return torch.where(neg, -mag, mag)


def ulp_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise distance in units in the last place (0 for identical values;
    +0 and -0 are 0 apart). Integer tensors: the absolute difference."""
    if not a.dtype.is_floating_point:
        return (a.to(torch.int64) - b.to(torch.int64)).abs()
    return (_ordered(a) - _ordered(b)).abs()


@dataclass(frozen=True)
class Diff:
    equal_bits: bool
    mismatched: int  # elements whose bits differ
    first_index: tuple[int, ...] | None
    max_abs: float
    max_ulp: int


def compare(a: torch.Tensor, b: torch.Tensor) -> Diff:
    """Bitwise comparison with size measures; shapes and dtypes must already match."""
    a, b = a.detach().cpu(), b.detach().cpu()
    if a.numel() == 0:
        return Diff(True, 0, None, 0.0, 0)
    if a.dtype.is_floating_point:
        ia, ib = (
            a.contiguous().view(_INT[a.element_size()]),
            b.contiguous().view(_INT[b.element_size()]),
        )
        neq = ia != ib
    else:
        neq = a != b
    n = int(neq.sum())
    if n == 0:
        return Diff(True, 0, None, 0.0, 0)
    first = tuple(int(i) for i in neq.nonzero()[0])
    both_nan = a.isnan() & b.isnan() if a.dtype.is_floating_point else torch.zeros_like(neq)
    d = (a.double() - b.double()).abs().masked_fill(both_nan, 0)
    ulp = ulp_distance(a, b).masked_fill(both_nan, 0)
    return Diff(False, n, first, float(d.nan_to_num(nan=float("inf")).max()), int(ulp.max()))
