"""Invariant batch norm (eval, and per-instance statistics), group norm, instance norm,
and weight norm.

Statistics: the mean, then the sum of squared deviations from it, in the SUM order
of samebits/ops/reductions.py (sequential in double over the reduced elements in
row-major order, from +0), per channel (batch norm), per (item, group) (group norm)
or per (item, channel) (instance norm, which torch runs as a batch norm over a batch
of one). Normalization: per channel (or per item and channel) a float32 ``scale``
and ``shift`` are computed in double and rounded once, then each element is
``x * scale + shift`` as two IEEE float32 operations (no fused multiply-add, so
every position and vector width computes the same thing); bfloat16 and float16
outputs are rounded once more from float32.

Why not native: ATen's batch-norm and group-norm loops use ``vec::fmadd`` in the
vector body and an unfused ``x * a + b`` in the scalar tail, so an element's bits
depend on where it falls relative to the end of a buffer; and their statistics are
reduced in thread-dependent chunks.
"""

from __future__ import annotations

import math

import torch

from samebits import _native
from samebits.errors import NotInvariantError, UnsupportedInputError
from samebits.ops._common import check_float, ieee_sqrt, is_exact_dtype, narrow
from samebits.ops.reductions import _sum_f64, _var_f64


def _affine(x, scale, shift, dtype) -> torch.Tensor:
    """x * scale + shift, two float32 roundings per element, then rounded once to
    ``dtype``. ``scale`` and ``shift`` are float32, (C,) per channel or (N, C) per item
    and channel, for x (N, C, ...). One native pass (sb_affine) for float32 and
    bfloat16 in NCHW or channels-last memory; torch's two IEEE ops otherwise (the
    same bits: a bfloat16 or float16 x is read exactly by the float32 multiply)."""
    N, C = x.shape[:2]
    inner = math.prod(x.shape[2:])
    per_item = scale.dim() == 2
    native = dtype in (torch.float32, torch.bfloat16) and x.numel() > 0
    if native and x.is_contiguous():
        outer, ss = N, (C if per_item else 0)
    elif native and not per_item and _channels_last_dense(x):
        outer, inner, ss = N * inner, 1, 0
    else:
        shape = (*(scale.shape if per_item else (1, C)), *[1] * (x.dim() - 2))
        y = x * scale.reshape(shape)  # float32 by type promotion
        y += shift.reshape(shape)
        return narrow(y, dtype)
    y = torch.empty_like(x, dtype=dtype)
    s, t = scale.contiguous(), shift.contiguous()
    _native.lib().sb_affine(
        x.data_ptr(), y.data_ptr(), s.data_ptr(), t.data_ptr(), outer, C, inner, ss,
        _native.dtype_code(x.dtype), _native.dtype_code(dtype), _native.nthreads(),
    )  # fmt: skip
    return y


def _channels_last_dense(x: torch.Tensor) -> bool:
    fmt = {4: torch.channels_last, 5: torch.channels_last_3d}.get(x.dim())
    return fmt is not None and x.is_contiguous(memory_format=fmt)


def native_batch_norm(x, weight, bias, running_mean, running_var, training, momentum, eps):
    """Matches ``aten::native_batch_norm``: returns (out, save_mean, save_invstd)."""
    if is_exact_dtype(x.dtype):
        return NotImplemented
    dtype = check_float("aten::native_batch_norm", x)
    C = x.size(1) if x.dim() > 1 else 1
    if training or running_mean is None:
        if x.size(0) > 1:
            raise NotInvariantError(
                "aten::native_batch_norm",
                x.dtype,
                x.shape,
                "batch statistics depend on the whole batch by definition; "
                "call model.eval() so batch norm uses its running statistics",
            )
        dims = [0] + list(range(2, x.dim()))
        var, mean, _ = _var_f64(x, dims, correction=0)  # float64 (C,)
        invstd = 1.0 / ieee_sqrt(var + eps)
        if training and running_mean is not None:
            n = x.numel() // max(C, 1)
            unbiased = var * (n / max(n - 1, 1))
            with torch.no_grad():
                running_mean.copy_((1 - momentum) * running_mean.double() + momentum * mean)
                running_var.copy_((1 - momentum) * running_var.double() + momentum * unbiased)
        save = (mean.float(), invstd.float())
    else:
        mean = running_mean.double()
        invstd = 1.0 / ieee_sqrt(running_var.double() + eps)
        save = (x.new_empty(0, dtype=torch.float32), x.new_empty(0, dtype=torch.float32))
    scale = invstd if weight is None else invstd * weight.double()
    shift = -mean * scale if bias is None else bias.double() - mean * scale
    out = _affine(x, scale.float(), shift.float(), dtype)
    return out, *save


def native_group_norm(x, weight, bias, N: int, C: int, HxW: int, group: int, eps: float):
    """Matches ``aten::native_group_norm``: returns (out, mean (N, G), rstd (N, G))."""
    if is_exact_dtype(x.dtype):
        return NotImplemented
    dtype = check_float("aten::native_group_norm", x)
    if C % group or x.numel() != N * C * HxW:
        raise UnsupportedInputError(
            f"aten::native_group_norm: input {tuple(x.shape)} does not split into "
            f"N={N}, C={C} (groups={group}), HxW={HxW}"
        )
    xg = x.reshape(N, group, -1)  # (N, G, C/G * HxW)
    var, mean, _ = _var_f64(xg, [2], correction=0)  # (N, G) float64
    rstd = 1.0 / ieee_sqrt(var + eps)
    cg = C // group
    r = rstd.repeat_interleave(cg, dim=1)  # (N, C)
    m = mean.repeat_interleave(cg, dim=1)
    scale = r if weight is None else r * weight.double()
    shift = -m * scale if bias is None else bias.double() - m * scale
    xs = x.reshape(N, C, -1)  # (N, C, HxW)
    out = _affine(xs, scale.float(), shift.float(), dtype)
    return out.reshape(x.shape), mean.to(dtype), rstd.to(dtype)


def weight_norm_interface(v, g, dim: int = 0):
    """Matches ``aten::_weight_norm_interface``: (v * (g / ||v||), ||v||), the 2-norm
    over every dim but ``dim`` in the SUM order, in double, rounded once."""
    if is_exact_dtype(v.dtype):
        return NotImplemented
    dtype = check_float("aten::_weight_norm_interface", v)
    d = dim % v.dim()
    dims = [i for i in range(v.dim()) if i != d]
    shape = [1 if i in dims else v.size(i) for i in range(v.dim())]
    norm = ieee_sqrt(_sum_f64(v, dims, square=True)).reshape(shape)
    w = (v.double() * (g.double() / norm)).to(dtype)
    return w, norm.to(g.dtype)


def _reference_batch_norm(x, weight, bias, mean, var, eps):
    return torch.nn.functional.batch_norm(
        x.double(), mean.double(), var.double(), weight.double(), bias.double(), False, 0.0, eps
    ).to(x.dtype)


def _reference_group_norm(x, group, weight, bias, eps):
    return torch.nn.functional.group_norm(
        x.double(), group, weight.double(), bias.double(), eps
    ).to(x.dtype)
