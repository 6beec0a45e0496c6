"""``exact_sum``, ``exact_mean``, ``exact_dot``, ``exact_norm``: correctly rounded,
so independent of order, chunking, thread count and process count by definition."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from samebits import _native
from samebits.errors import UnsupportedInputError
from samebits.exact._round import FORMATS, NCH, finish, normalize
from samebits.ops._common import narrow

_CODES = {"float32": 0, "bfloat16": 1, "float64": 2, "float16": 3}


def _as_tensor(x: Any, what: str) -> tuple[torch.Tensor, str]:
    """(CPU tensor, "numpy" | "torch"); clear errors for everything else."""
    if isinstance(x, torch.Tensor):
        if x.device.type != "cpu":
            raise UnsupportedInputError(
                f"{what}: tensors on {x.device} are not supported yet; move it to the CPU"
            )
        t, kind = x.detach(), "torch"
    elif isinstance(x, np.ndarray) or np.isscalar(x):
        arr = np.asarray(x)
        if arr.dtype.kind == "c":
            raise UnsupportedInputError(f"{what}: complex dtype {arr.dtype} is not supported")
        if arr.dtype.kind not in "biuf":
            raise UnsupportedInputError(f"{what}: dtype {arr.dtype} is not numeric")
        t, kind = torch.from_numpy(np.ascontiguousarray(arr)), "numpy"
    else:
        raise UnsupportedInputError(
            f"{what}: expected a numpy array or a CPU torch tensor, got {type(x).__name__}"
        )
    if t.is_complex():
        raise UnsupportedInputError(f"{what}: complex dtype {t.dtype} is not supported")
    return t, kind


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _dims(t: torch.Tensor, dim) -> list[int]:
    if dim is None:
        return list(range(t.dim()))
    dims = [dim] if isinstance(dim, int) else list(dim)
    nd = max(t.dim(), 1)
    for d in dims:
        if not -nd <= d < nd:
            raise UnsupportedInputError(f"dim {d} is out of range for shape {tuple(t.shape)}")
    out = sorted({d % nd for d in dims})
    if len(out) != len(dims):
        raise UnsupportedInputError(f"dim {dim} repeats a dimension")
    return out


def states(t: torch.Tensor, dims: Sequence[int]) -> tuple[np.ndarray, np.ndarray, list[int], int]:
    """Exact states for reducing float tensor ``t`` over ``dims``:
    (states (nout, NCH), flags (nout,), kept shape, count per output)."""
    if t.dim() == 0:
        t = t.reshape(1)
        dims = [0]
    kept = [d for d in range(t.dim()) if d not in dims]
    x = t.permute(*kept, *dims).contiguous()
    kept_shape = [t.size(d) for d in kept]
    nout = math.prod(kept_shape)
    count = math.prod(t.size(d) for d in dims)
    st = np.zeros((nout, NCH), dtype=np.int64)
    fl = np.zeros(nout, dtype=np.int32)
    if nout and count:
        _native.lib().sb_exact_acc(
            x.data_ptr(),
            nout,
            count,
            1,
            _CODES[_dtype_name(t)],
            st.ctypes.data,
            fl.ctypes.data,
            _native.nthreads(),
        )
    return st, fl, kept_shape, count


def _wrap(
    values: np.ndarray, shape: list[int], like: torch.Tensor, kind: str, keep: list[int] | None
):
    out = narrow(torch.from_numpy(values).reshape(shape), like.dtype)  # canonical NaNs
    if keep is not None:
        out = out.reshape(keep)
    if kind == "numpy":
        return out.numpy() if out.dim() else out.numpy()[()]
    return out


def _reduce(x, dim, keepdim: bool, what: str, *, mean: bool = False, square: bool = False):
    t, kind = _as_tensor(x, what)
    if not t.dtype.is_floating_point:
        if mean:
            t = t.double()
        else:  # integers and bools are exact already
            res = t.sum() if dim is None and not keepdim else t.sum(dim=dim, keepdim=keepdim)
            return res.numpy() if kind == "numpy" else res
    name = _dtype_name(t)
    dims = _dims(t, dim)
    if square:
        return _norm(t, dims, keepdim, kind, name)
    st, fl, shape, count = states(t, dims)
    vals = finish(st, fl, FORMATS[name], divide_by=count if mean else None)
    keep = [1 if d in dims else t.size(d) for d in range(t.dim())] if keepdim else None
    return _wrap(vals, shape, t, kind, keep)


def exact_sum(x, dim: int | Sequence[int] | None = None, keepdim: bool = False):
    """The exact sum of ``x`` over ``dim`` (all dims by default), correctly rounded
    (half to even) to x's dtype. NaN in gives NaN; +inf and -inf together give NaN;
    an exact result beyond the dtype's range gives +-inf; the empty sum is 0.
    Integer inputs are summed exactly as integers."""
    return _reduce(x, dim, keepdim, "exact_sum")


def exact_mean(x, dim: int | Sequence[int] | None = None, keepdim: bool = False):
    """The exact mean (exact sum / count), correctly rounded; NaN for an empty input."""
    return _reduce(x, dim, keepdim, "exact_mean", mean=True)


def _norm(t: torch.Tensor, dims, keepdim: bool, kind: str, name: str):
    """Squares of float16/bfloat16/float32 values are exact in double. float64 rows
    are first scaled by an even power of two that puts their largest magnitude near
    2^500, so squares neither overflow nor underflow (scaling by 2^k is exact), and
    the root is scaled back exactly in the integer domain."""
    from samebits.exact._round import SCALE, round_sqrt, state_to_int

    shape_keep = [1 if d in dims else t.size(d) for d in range(t.dim())] if keepdim else None
    kept = [d for d in range(t.dim()) if d not in dims]
    x = t.permute(*kept, *dims).contiguous()
    nout = math.prod(t.size(d) for d in kept)
    count = math.prod(t.size(d) for d in dims)
    rows = x.reshape(nout, count)
    lib, code, fmt = _native.lib(), _CODES[name], FORMATS[name]
    vals = np.empty(nout, dtype=np.float64)
    for i in range(nout):
        r = rows[i].contiguous()
        k = 0
        if name == "float64":
            r, k = _scale_near_2_500(r)
            r = r.contiguous()
        st = np.zeros((1, NCH), dtype=np.int64)
        fl = np.zeros(1, dtype=np.int32)
        lib.sb_exact_dot(r.data_ptr(), r.data_ptr(), count, code, st.ctypes.data, fl.ctypes.data)
        f = int(fl[0])
        if f & 1:
            vals[i] = math.nan
        elif f & 6:
            vals[i] = math.inf  # (+-inf)^2
        else:
            vals[i] = round_sqrt(state_to_int(normalize(st)[0]), SCALE - 2 * k, fmt)
    return _wrap(vals, [t.size(d) for d in kept], t, kind, shape_keep)


def exact_norm(x, dim: int | Sequence[int] | None = None, keepdim: bool = False):
    """The 2-norm: the correctly rounded square root of the exact sum of squares.
    float64 squares are split exactly into two doubles with a fused multiply-add after
    an exact power-of-two scaling; values more than ~1500 binades below a row's
    largest magnitude only act as sticky bits there, so such rows are faithfully
    rather than correctly rounded in the rare exact-tie case."""
    return _reduce(x, dim, keepdim, "exact_norm", square=True)


def exact_dot(a, b):
    """The exact dot product of two 1-D inputs of equal length, correctly rounded.
    float64 inputs are first scaled exactly by powers of two so that the largest
    products sit near 2^1000, then each product is split exactly into two doubles
    with a fused multiply-add. Only products more than ~1000 binades below the
    largest one can lose low bits there, which affects rounding only in exact-tie
    cases (then the result is faithfully rounded)."""
    ta, kind = _as_tensor(a, "exact_dot")
    tb, _ = _as_tensor(b, "exact_dot")
    if ta.shape != tb.shape or ta.dim() != 1:
        raise UnsupportedInputError(
            f"exact_dot: expected two 1-D inputs of equal length, got shapes {tuple(ta.shape)} and {tuple(tb.shape)}"
        )
    if ta.dtype != tb.dtype:
        raise UnsupportedInputError(f"exact_dot: dtypes differ: {ta.dtype} and {tb.dtype}")
    if not ta.dtype.is_floating_point:
        res = (ta.long() * tb.long()).sum()
        return res.numpy()[()] if kind == "numpy" else res
    name = _dtype_name(ta)
    ka = kb = 0
    if name == "float64":  # keep products and their fma error terms in the normal range
        ta, ka = _scale_near_2_500(ta)
        tb, kb = _scale_near_2_500(tb)
    ta, tb = ta.contiguous(), tb.contiguous()
    st = np.zeros((1, NCH), dtype=np.int64)
    fl = np.zeros(1, dtype=np.int32)
    _native.lib().sb_exact_dot(
        ta.data_ptr(), tb.data_ptr(), ta.numel(), _CODES[name], st.ctypes.data, fl.ctypes.data
    )
    from samebits.exact._round import SCALE, round_int, state_to_int

    f = int(fl[0])
    if f & 1 or (f & 6) == 6:
        val = math.nan
    elif f & 6:
        val = math.inf if f & 2 else -math.inf
    else:
        val = round_int(state_to_int(normalize(st)[0]), SCALE - ka - kb, FORMATS[name])
    return _wrap(np.array([val]), [], ta, kind, None)


def _scale_near_2_500(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """t * 2^k (exact, k chosen so max finite |t| is near 2^500), and k."""
    finite = t[torch.isfinite(t)].abs()
    m = float(finite.max()) if finite.numel() else 0.0
    if m == 0:
        return t, 0
    k = 500 - math.frexp(m)[1]
    return t * 2.0 ** (k // 2) * 2.0 ** (k - k // 2), k
