"""Invariant average pooling: avg_pool 1d/2d/3d (padding, ceil_mode, count_include_pad,
divisor_override) and adaptive_avg_pool 1d/2d/3d.

Order, for each output: the window's elements in row-major (kd, kh, kw) order,
summed sequentially in double from +0 (the SUM order of samebits/ops/reductions.py),
then divided by the divisor in double and rounded once. Zero padding and, for
adaptive windows shorter than the longest, trailing exact zeros are added at fixed
taps; neither depends on the batch, the position or the thread count.
(max pooling is exact in any order and stays native.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from samebits.errors import UnsupportedInputError
from samebits.ops._common import check_float, is_exact_dtype
from samebits.ops.reductions import _sum_f64


def _expand(v, nd: int, name: str, default=None) -> list[int]:
    v = default if (v is None or (isinstance(v, (list, tuple)) and len(v) == 0)) else v
    v = [int(v)] if isinstance(v, int) else [int(e) for e in v]
    if len(v) == 1:
        v = v * nd
    if len(v) != nd:
        raise UnsupportedInputError(f"avg_pool: {name} {v} does not have {nd} entries")
    return v


def _out_size(L: int, k: int, s: int, p: int, ceil_mode: bool) -> int:
    """torch's pooling output size (pooling_output_shape)."""
    o = (L + 2 * p - k + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (o - 1) * s >= L + p:
        o -= 1
    return o


def avg_pool(
    x,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
    divisor_override=None,
    *,
    nd: int,
):
    """Matches ``aten::avg_pool2d`` / ``aten::avg_pool3d`` (nd = 2 or 3)."""
    if is_exact_dtype(x.dtype):
        return NotImplemented
    dtype = check_float(f"aten::avg_pool{nd}d", x)
    k = _expand(kernel_size, nd, "kernel_size")
    s = _expand(stride, nd, "stride", default=k)
    p = _expand(padding, nd, "padding")
    L = list(x.shape[-nd:])
    OUT = [_out_size(L[i], k[i], s[i], p[i], ceil_mode) for i in range(nd)]
    # A window reaching past the padded input (ceil_mode, or a kernel larger than the
    # input) holds only zeros there: cap its length at L + 2p, so that the zeros need
    # not be materialized (EfficientNet pools a 1x1 map with a 2560-wide kernel).
    ke = [min(k[i], L[i] + 2 * p[i]) for i in range(nd)]
    pads = []
    for i in reversed(range(nd)):  # F.pad: last dim first
        pads += [p[i], max(0, (OUT[i] - 1) * s[i] + ke[i] - L[i] - p[i])]
    xp = F.pad(x, pads) if any(pads) else x
    win = xp
    for i in range(nd):  # (..., O1, .., Ond, k1, .., knd)
        win = win.unfold(x.dim() - nd + i, ke[i], s[i])
    for i in range(nd):  # only the first OUT windows (right padding may allow more)
        win = win.narrow(x.dim() - nd + i, 0, OUT[i])
    tap_dims = list(range(win.dim() - nd, win.dim()))
    total = _sum_f64(win, tap_dims)  # (..., O1, .., Ond) float64
    if divisor_override:
        div = torch.tensor(float(divisor_override), dtype=torch.float64)
    else:
        div = torch.ones((), dtype=torch.float64)
        for i in range(nd):
            start = torch.arange(OUT[i]) * s[i] - p[i]
            end = torch.clamp(start + k[i], max=L[i] + p[i])
            n = end - start if count_include_pad else end.clamp(max=L[i]) - start.clamp(min=0)
            div = div.unsqueeze(-1) * n.double()  # (O1, .., Oi)
    return (total / div).to(dtype)


def adaptive_avg_pool(x, output_size, *, nd: int):
    """Matches ``aten::_adaptive_avg_pool2d`` / ``3d``: output i of a dim of length L
    averages [floor(i L / OUT), ceil((i + 1) L / OUT))."""
    if is_exact_dtype(x.dtype):
        return NotImplemented
    dtype = check_float(f"aten::_adaptive_avg_pool{nd}d", x)
    OUT = _expand(output_size, nd, "output_size")
    win = F.pad(x, [0, 1] * nd)  # one exact zero past the end of every dim
    counts = torch.ones((), dtype=torch.float64)
    for i in range(nd):
        L, o = x.size(x.dim() - nd + i), OUT[i]
        start = torch.tensor([(j * L) // o for j in range(o)])
        end = torch.tensor([-((-(j + 1) * L) // o) for j in range(o)])
        kmax = int((end - start).max()) if o else 0
        idx = start.unsqueeze(1) + torch.arange(kmax)  # (OUT, kmax)
        idx = torch.where(idx < end.unsqueeze(1), idx, L)  # past the window: the zero
        d = x.dim() - nd + 2 * i  # earlier dims already split into (OUT, kmax)
        win = win.index_select(d, idx.reshape(-1))
        win = win.unflatten(d, (o, kmax))
        counts = counts.unsqueeze(-1) * (end - start).double()
    # (..., O1, k1, O2, k2, ...) -> (..., O1, O2, .., k1, k2, ..)
    lead = x.dim() - nd
    perm = (
        list(range(lead))
        + [lead + 2 * i for i in range(nd)]
        + [lead + 2 * i + 1 for i in range(nd)]
    )
    win = win.permute(perm)
    total = _sum_f64(win, list(range(win.dim() - nd, win.dim())))
    return (total / counts).to(dtype)


def _reference_avg_pool(x, nd, *args, **kwargs):
    fn = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[nd - 1]
    return fn(x.double(), *args, **kwargs).to(x.dtype)


def _reference_adaptive(x, nd, size):
    fn = (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d)[nd - 1]
    return fn(x.double(), size).to(x.dtype)
