"""Invariant division with rounding: ``div(a, b, rounding_mode="trunc" | "floor")`` and
``floor_divide``.

Why: torch's vector body computes a bfloat16 (and, for trunc, float16) quotient in
float32 and its scalar tail rounds each step to the narrow type, so an element's result
depended on its position in the row (measured: 3 of 300 bfloat16 floor quotients), and
the bits differed between dispatch levels.

Definition (the **DIVMODE** row of docs/design.md): the operands in float32 (bfloat16
and float16 widened exactly, a Python scalar rounded once), then, each step one IEEE
float32 operation:

* trunc: ``trunc(a / b)``;
* floor, torch's ``div_floor_floating``: ``b == 0`` gives ``a / b``; else ``m = fmod(a, b)``,
  ``d = (a - m) / b``, minus 1 when ``m != 0`` and ``b < 0 != m < 0``; then ``floor(d)``,
  plus 1 when ``d - floor(d) > 0.5``; a zero ``d`` gives ``copysign(0, a / b)``;

rounded once to the result dtype (torch's type promotion). Integer operands keep
torch's exact kernels.
"""

from __future__ import annotations

import torch

from samebits.errors import NotInvariantError, UnsupportedInputError
from samebits.ops import pointwise


def _floor(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    m = torch.fmod(a, b)
    d = (a - m) / b
    d = torch.where((m != 0) & ((b < 0) != (m < 0)), d - 1.0, d)
    f = torch.floor(d)
    f = torch.where(d - f > 0.5, f + 1.0, f)
    q = a / b
    out = torch.where(d != 0, f, torch.copysign(torch.zeros_like(q), q))
    return torch.where(b == 0, q, out)


def div_mode(a, b, *, rounding_mode=None):
    """``aten::div.Tensor_mode`` / ``div.Scalar_mode``; see the module doc."""
    if rounding_mode is None:
        return torch.div(a, b)
    if rounding_mode not in ("trunc", "floor"):
        raise UnsupportedInputError(
            f"aten::div: rounding_mode={rounding_mode!r}, expected 'trunc', 'floor' or None"
        )
    res = pointwise.promote((a, b))
    if not res.is_floating_point:
        return NotImplemented  # integer division: torch's exact kernel
    if res not in (torch.float32, torch.bfloat16, torch.float16):
        tensor = a if isinstance(a, torch.Tensor) else b
        raise NotInvariantError(
            "aten::div", res, tensor.shape, f"{res} has no invariant formula: compute in float32"
        )
    af = a.to(res).float() if isinstance(a, torch.Tensor) else pointwise._c(a)
    bf = b.to(res).float() if isinstance(b, torch.Tensor) else pointwise._c(b)
    if not isinstance(af, torch.Tensor):
        af = torch.full_like(bf, af)
    if not isinstance(bf, torch.Tensor):
        bf = torch.full_like(af, bf)
    out = torch.trunc(af / bf) if rounding_mode == "trunc" else _floor(af, bf)
    return out.to(res)


def floor_divide(a, b):
    """``aten::floor_divide``: ``div(a, b, rounding_mode="floor")``."""
    return div_mode(a, b, rounding_mode="floor")


def _reference(a, b, rounding_mode):
    """torch's division of the float64 operands, rounded to the result's dtype."""
    res = pointwise.promote((a, b))
    up = [t.double() if isinstance(t, torch.Tensor) else t for t in (a, b)]
    return torch.div(*up, rounding_mode=rounding_mode).to(res)
