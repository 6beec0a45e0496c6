"""Invariant sums and their relatives: sum, mean, var, std, var_mean, vector p-norms,
logsumexp.

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
from samebits.errors import NotInvariantError, UnsupportedInputError
from samebits.ops import pointwise
from samebits.ops._common import check_float, ieee_sqrt, is_exact_dtype, narrow, native_view


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
        return narrow(sum_all(x, keep_f64=True), out_dtype)
    dims = _dims(x, dim)
    return narrow(_restore(_sum_f64(x, dims), x, dims, keepdim), out_dtype)


def nansum(x: torch.Tensor, dim=None, keepdim: bool = False, *, dtype: torch.dtype | None = None):
    """``sum`` with NaN read as 0 (the same orders: SUM along dims, ALL for the whole)."""
    if not x.dtype.is_floating_point:
        return NotImplemented
    return sum(torch.where(x.isnan(), 0.0, x), dim, keepdim, dtype=dtype)


def mean(x: torch.Tensor, dim=None, keepdim: bool = False, *, dtype: torch.dtype | None = None):
    out_dtype = dtype or x.dtype
    x = x if x.dtype.is_floating_point else x.to(out_dtype)
    check_float("aten::mean", x)
    if dim is None and not keepdim:
        n = x.numel()
        return narrow(
            sum_all(x, keep_f64=True) / n if n else torch.tensor(math.nan, dtype=torch.float64),
            out_dtype,
        )
    dims = _dims(x, dim)
    n = math.prod(x.size(d) for d in dims) if x.dim() else 1
    res = _sum_f64(x, dims) / n if n else torch.full(_kept(x, dims), math.nan, dtype=torch.float64)
    return narrow(_restore(res, x, dims, keepdim), out_dtype)


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
    return (
        narrow(_restore(v, x, dims, keepdim), x.dtype),
        narrow(_restore(m, x, dims, keepdim), x.dtype),
    )


def var(x: torch.Tensor, dim=None, *, correction: float = 1, keepdim: bool = False):
    v, _ = var_mean(x, dim, correction=correction, keepdim=keepdim)
    return v


def std(x: torch.Tensor, dim=None, *, correction: float = 1, keepdim: bool = False):
    check_float("aten::std", x)
    v, _, dims = _var_f64(x, dim, correction)
    return narrow(_restore(ieee_sqrt(v), x, dims, keepdim), x.dtype)


def vector_norm(
    x: torch.Tensor,
    ord: float = 2,
    dim=None,
    keepdim: bool = False,
    *,
    dtype: torch.dtype | None = None,
):
    """``linalg_vector_norm``; every ord reduces ``|x|`` (x cast to ``dtype`` first):

    * 2: sqrt of the SUM-order sum of squares (exact in double), rounded once;
    * 1: the SUM-order sum of ``|x|``, rounded once;
    * inf / -inf: the largest / smallest ``|x|`` (exact); 0: the count of non-zeros;
    * any other p: ``pow(s, 1/p)`` by the pointwise engine, s the SUM-order sum of the
      engine's ``pow(|x|, p)`` (float32), rounded to float32 (1/p rounded to float32).
    """
    out_dtype = dtype or x.dtype
    p = float(ord)
    if out_dtype == torch.float64 and x.dtype != torch.float64:
        # exact in double for these ords: the sums of widened values are the same
        if p not in (0.0, 1.0, 2.0, math.inf, -math.inf):
            raise NotInvariantError(
                "aten::linalg_vector_norm", x.dtype, x.shape,
                f"ord={ord} with dtype=float64: the pointwise engine computes |x|^p in "
                "float32; ask for a float32 result",
            )  # fmt: skip
    elif x.dtype != out_dtype:
        x = x.to(out_dtype)
    check_float("aten::linalg_vector_norm", x)
    dims = _dims(x, dim)
    return narrow(_restore(norm_unrounded(x, p, dims), x, dims, keepdim), out_dtype)


def norm_unrounded(x: torch.Tensor, p: float, dims: list[int]) -> torch.Tensor:
    """vector_norm's value before the final rounding (float64, or float32 for inf and
    the engine's general p), reduced dims removed."""
    a = x.abs()
    if p == 2:
        return ieee_sqrt(_sum_f64(x, dims, square=True))
    if p == 1:
        return _sum_f64(a, dims)
    if math.isinf(p):
        return a.amax(dims) if p > 0 else a.amin(dims)
    if p == 0:
        return _sum_f64((x != 0).to(torch.float32), dims)
    s = _sum_f64(pointwise.run("pow", (a.float(), p)), dims).float()
    return pointwise.run("pow", (s, 1.0 / p))


def powsum(x: torch.Tensor, ord: float = 2, dim=None, keepdim: bool = False, *, dtype=None):
    """``linalg__powsum``: ``sum |x|^p``, the inner sum of vector_norm (same orders)."""
    out_dtype = dtype or x.dtype
    x = x if x.dtype == out_dtype else x.to(out_dtype)
    check_float("aten::linalg__powsum", x)
    p = float(ord)
    if math.isinf(p) or p == 0:
        return vector_norm(x, ord, dim, keepdim)
    dims = _dims(x, dim)
    if p == 2:
        res = _sum_f64(x, dims, square=True)
    elif p == 1:
        res = _sum_f64(x.abs(), dims)
    else:
        res = _sum_f64(pointwise.run("pow", (x.abs().float(), p)), dims)
    return narrow(_restore(res, x, dims, keepdim), out_dtype)


def logsumexp(x: torch.Tensor, dim, keepdim: bool = False) -> torch.Tensor:
    """``max + log(s)``, s the SUM-order sum of ``exp(x - max)`` (the engine's exp of the
    float32 difference), rounded to float32 for the engine's log; the add in float32,
    rounded once to the dtype. As torch: an infinite max counts as 0 (a row of -inf
    gives -inf, a row with +inf gives +inf), NaN propagates, an empty row gives -inf.
    A -inf entry (a mask) adds an exact 0, so masked positions change nothing."""
    if not x.dtype.is_floating_point:
        x = x.to(torch.get_default_dtype())
    dtype = check_float("aten::logsumexp", x)
    dims = _dims(x, dim)
    if x.numel() == 0:
        res = torch.full(_kept(x, dims), -math.inf, dtype=dtype)
        return _restore(res, x, dims, keepdim)
    xf = x.float()
    m = xf.amax(dims, keepdim=True)
    m = torch.where(m.abs() == math.inf, 0.0, m)
    s = _sum_f64(pointwise.exp(xf - m), dims).float()
    res = pointwise.log(s) + m.reshape(s.shape)
    return narrow(_restore(res, x, dims, keepdim), dtype)


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
    return res if keep_f64 else narrow(res, x.dtype)


def _reference_sum(x: torch.Tensor, dim=None, keepdim: bool = False) -> torch.Tensor:
    dims = _dims(x, dim)
    return x.double().sum(dim=dims, keepdim=keepdim).to(x.dtype)
