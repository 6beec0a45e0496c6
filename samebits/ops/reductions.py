"""Invariant sums and their relatives: sum, mean, var, std, var_mean, vector 2-norm.

Order along reduced dims (the **SUM** order): the reduced dims are flattened in
row-major order and summed one element after another in double precision,
starting from +0, then rounded once to the output dtype. Nothing about the other
rows, the thread count or exact-zero padding can change it.

Whole-tensor ``sum()`` / ``mean()`` (the **ALL** order): fixed 4096-element chunks
in flat row-major order, each summed in eight double lanes then a fixed lane tree;
chunk sums are added left to right. The chunking is a constant, so the result does
not depend on the thread count.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Sequence

import torch

from samebits import _native
from samebits.errors import UnsupportedInputError
from samebits.ops._common import check_float, ieee_sqrt, is_exact_dtype, native_view


def _dims(x: torch.Tensor, dim: int | Sequence[int] | None) -> list[int]:
    if dim is None:
        return list(range(x.dim()))
    dims = [dim] if isinstance(dim, int) else list(dim)
    if not dims:  # torch: an empty dim list reduces everything
        return list(range(x.dim()))
    nd = max(x.dim(), 1)
    out = []
    for d in dims:
        if not -nd <= d < nd:
            raise UnsupportedInputError(
                f"dim {d} out of range for a tensor of shape {tuple(x.shape)}"
            )
        out.append(d % nd)
    if len(set(out)) != len(out):
        raise UnsupportedInputError(f"dim {dims} repeats a dimension")
    return sorted(out)


def _sum_f64(
    x: torch.Tensor, dims: list[int], center: torch.Tensor | None = None, square: bool = False
) -> torch.Tensor:
    """SUM order over ``dims``; returns float64 with the reduced dims removed."""
    if x.dim() == 0:
        x = x.reshape(1)
        dims = [0]
    kept = [d for d in range(x.dim()) if d not in dims]
    kept_shape = [x.size(d) for d in kept]
    R = math.prod(x.size(d) for d in dims)
    if dims == list(range(dims[0], dims[-1] + 1)) and x.is_contiguous():
        # (outer, R, inner) is a view: no copy. inner > 1 runs the column kernel.
        outer, inner = math.prod(x.shape[: dims[0]]), math.prod(x.shape[dims[-1] + 1 :])
        xt = x
    else:
        xt = x.permute(*kept, *dims).contiguous()  # (kept..., reduced...)
        outer, inner = math.prod(kept_shape), 1
    xt, dt = native_view(xt)
    out = torch.empty(outer * inner, dtype=torch.float64)
    if out.numel():
        c = None if center is None else center.reshape(-1).to(torch.float64).contiguous()
        _native.lib().sb_sum(
            xt.data_ptr(),
            outer,
            R,
            inner,
            None if c is None else c.data_ptr(),
            int(square),
            out.data_ptr(),
            dt,
            _native.nthreads(),
        )
    return out.view(kept_shape)


def _restore(res: torch.Tensor, x: torch.Tensor, dims: list[int], keepdim: bool) -> torch.Tensor:
    if keepdim:
        shape = [1 if d in dims else x.size(d) for d in range(x.dim())]
        return res.reshape(shape)
    return res


def sum(x: torch.Tensor, dim=None, keepdim: bool = False, *, dtype: torch.dtype | None = None):
    if is_exact_dtype(x.dtype) and (dtype is None or is_exact_dtype(dtype)):
        return NotImplemented
    out_dtype = dtype or x.dtype
    x = x if x.dtype.is_floating_point else x.to(out_dtype)
    check_float("aten::sum", x)
    if dim is None and not keepdim:  # the double sum rounded once, to out_dtype
        return sum_all(x, keep_f64=True).to(out_dtype)
    dims = _dims(x, dim)
    return _restore(_sum_f64(x, dims), x, dims, keepdim).to(out_dtype)


def mean(x: torch.Tensor, dim=None, keepdim: bool = False, *, dtype: torch.dtype | None = None):
    out_dtype = dtype or x.dtype
    x = x if x.dtype.is_floating_point else x.to(out_dtype)
    check_float("aten::mean", x)
    if dim is None and not keepdim:
        n = x.numel()
        return (
            sum_all(x, keep_f64=True) / n if n else torch.tensor(math.nan, dtype=torch.float64)
        ).to(out_dtype)
    dims = _dims(x, dim)
    n = math.prod(x.size(d) for d in dims) if x.dim() else 1
    res = _sum_f64(x, dims) / n if n else torch.full(_kept(x, dims), math.nan, dtype=torch.float64)
    return _restore(res, x, dims, keepdim).to(out_dtype)


def _kept(x: torch.Tensor, dims: list[int]) -> list[int]:
    return [x.size(d) for d in range(x.dim()) if d not in dims]


def _var_f64(
    x: torch.Tensor, dim, correction: float
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Two passes in SUM order: the mean, then the sum of squared deviations from it.
    Returns (variance, mean) in float64 and the reduced dims."""
    dims = _dims(x, dim)
    n = math.prod(x.size(d) for d in dims) if x.dim() else 1
    m = _sum_f64(x, dims) / n
    ss = _sum_f64(x, dims, center=m, square=True)
    return ss / max(0, n - correction), m, dims  # torch clamps the divisor at 0: inf or nan


def var_mean(x: torch.Tensor, dim=None, *, correction: float = 1, keepdim: bool = False):
    check_float("aten::var_mean", x)
    v, m, dims = _var_f64(x, dim, correction)
    return (_restore(v, x, dims, keepdim).to(x.dtype), _restore(m, x, dims, keepdim).to(x.dtype))


def var(x: torch.Tensor, dim=None, *, correction: float = 1, keepdim: bool = False):
    v, _ = var_mean(x, dim, correction=correction, keepdim=keepdim)
    return v


def std(x: torch.Tensor, dim=None, *, correction: float = 1, keepdim: bool = False):
    check_float("aten::std", x)
    v, _, dims = _var_f64(x, dim, correction)
    return _restore(ieee_sqrt(v), x, dims, keepdim).to(x.dtype)


def vector_norm(
    x: torch.Tensor,
    ord: float = 2,
    dim=None,
    keepdim: bool = False,
    *,
    dtype: torch.dtype | None = None,
):
    """2-norm as sqrt of the SUM-order sum of squares (other orders are not covered)."""
    check_float("aten::linalg_vector_norm", x)
    if ord != 2:
        return NotImplemented
    dims = _dims(x, dim)
    res = ieee_sqrt(_sum_f64(x, dims, square=True))
    return _restore(res, x, dims, keepdim).to(dtype or x.dtype)


def sum_all(x: torch.Tensor, keep_f64: bool = False) -> torch.Tensor:
    """Whole-tensor sum in the ALL order (thread-count independent)."""
    xc, dt = native_view(x.contiguous())
    s = ctypes.c_double()
    status = _native.lib().sb_sum_all(
        ctypes.c_void_p(xc.data_ptr()), xc.numel(), dt, _native.nthreads(), ctypes.byref(s)
    )
    if status == -1:
        raise MemoryError(f"samebits sum: cannot allocate partial sums for {xc.numel()} values")
    res = torch.tensor(s.value, dtype=torch.float64)
    return res if keep_f64 else res.to(x.dtype)


def _reference_sum(x: torch.Tensor, dim=None, keepdim: bool = False) -> torch.Tensor:
    dims = _dims(x, dim)
    return x.double().sum(dim=dims, keepdim=keepdim).to(x.dtype)
