"""Invariant layer_norm and rms_norm over the trailing ``normalized_shape``.

Order: mean, and then the sum of squared deviations from it, each in the SUM
order (sequential in double along the normalized elements, from +0);
``rstd = 1 / sqrt(var + eps)`` in double; each output
``(x - mean) * rstd * weight + bias`` is computed in double and rounded once.
A row's bits depend only on that row.
"""

from __future__ import annotations

import math

import torch

from samebits import _native
from samebits.errors import UnsupportedInputError
from samebits.ops._common import check_float, narrow, native_view, ptr

LAYER, RMS = 0, 1


def _norm(op: str, x: torch.Tensor, shape, weight, bias, eps: float, kind: int):
    dtype = check_float(op, x)
    shape = [int(s) for s in shape]
    if list(x.shape[x.dim() - len(shape) :]) != shape or len(shape) > x.dim():
        raise UnsupportedInputError(
            f"{op}: normalized_shape {shape} does not match the end of input shape {tuple(x.shape)}"
        )
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and list(t.shape) != shape:
            raise UnsupportedInputError(
                f"{op}: {name} has shape {tuple(t.shape)}, expected {shape}"
            )
    R = math.prod(shape)
    xc, dt = native_view(x.contiguous())
    rows = xc.numel() // R if R else 0
    wide = torch.float32 if dtype == torch.float16 else dtype
    y = torch.empty(x.shape, dtype=wide)
    mean = torch.empty(rows, dtype=torch.float32)
    rstd = torch.empty(rows, dtype=torch.float32)
    params = [t for t in (weight, bias) if t is not None]
    wdt_t = params[0].dtype if params else torch.float32
    if any(t.dtype != wdt_t for t in params):
        raise UnsupportedInputError(f"{op}: weight and bias dtypes differ")
    w = None if weight is None else native_view(weight.contiguous())[0]
    b = None if bias is None else native_view(bias.contiguous())[0]
    wdt = _native.dtype_code(
        w.dtype if w is not None else (b.dtype if b is not None else torch.float32)
    )
    if rows:
        _native.lib().sb_norm(
            xc.data_ptr(),
            ptr(w),
            ptr(b),
            y.data_ptr(),
            mean.data_ptr(),
            rstd.data_ptr(),
            rows,
            R,
            float(eps),
            kind,
            dt,
            wdt,
            _native.nthreads(),
        )
    stat_shape = list(x.shape[: x.dim() - len(shape)]) + [1] * len(shape)
    # the statistics in the input's dtype, as torch's kernel returns them (its backward
    # takes them in that dtype)
    return (
        narrow(y, dtype),
        narrow(mean.view(stat_shape), dtype),
        narrow(rstd.view(stat_shape), dtype),
    )


def native_layer_norm(x, normalized_shape, weight=None, bias=None, eps: float = 1e-5):
    """Matches ``aten::native_layer_norm``: returns (out, mean, rstd)."""
    return _norm("aten::native_layer_norm", x, normalized_shape, weight, bias, eps, LAYER)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps: float = 1e-5) -> torch.Tensor:
    return native_layer_norm(x, normalized_shape, weight, bias, eps)[0]


def rms_norm(x, normalized_shape, weight=None, eps: float | None = None) -> torch.Tensor:
    if eps is None:
        eps = torch.finfo(x.dtype).eps if x.dtype.is_floating_point else 1e-6
    return _norm("aten::rms_norm", x, normalized_shape, weight, None, eps, RMS)[0]


def _reference_layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    return torch.nn.functional.layer_norm(
        x.double(),
        normalized_shape,
        None if weight is None else weight.double(),
        None if bias is None else bias.double(),
        eps,
    ).to(x.dtype)


def _reference_rms_norm(x, normalized_shape, weight=None, eps=1e-6):
    return torch.nn.functional.rms_norm(
        x.double(), normalized_shape, None if weight is None else weight.double(), eps
    ).to(x.dtype)
