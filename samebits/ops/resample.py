"""Invariant linear, bilinear, trilinear and bicubic upsampling (``F.interpolate``).

Why: ATen's upsample kernels are batch- and thread-invariant, but their vector bodies
use fused multiply-adds at some dispatch levels and not at others, so bilinear and
bicubic outputs changed between ``ATEN_CPU_CAPABILITY=default`` and ``avx2``
(measured on torch 2.13). Nearest modes are gathers and stay native.

Order: separable, one spatial dim after another from the first to the last. Along a
dim, output o reads taps t = 0..T-1 (T = 2 linear, 4 cubic) at clamped source indices
with float32 weights computed in double and rounded once, and computes
``((x0 * w0 + x1 * w1) + x2 * w2) + x3 * w3`` as separate IEEE float32 multiplies and
adds. bfloat16 and float16 are computed in float32 and rounded once at the end.
"""

from __future__ import annotations

import torch

from samebits.ops._common import check_float, is_exact_dtype

CUBIC_A = -0.75  # torch's bicubic constant


def _source(o: torch.Tensor, L: int, OUT: int, align_corners: bool, scale, cubic: bool):
    """torch's area_pixel_compute_source_index, in double."""
    if align_corners:
        return o * ((L - 1) / (OUT - 1) if OUT > 1 else 0.0)
    s = 1.0 / scale if scale is not None and scale > 0 else L / OUT
    src = s * (o + 0.5) - 0.5
    return src if cubic else src.clamp(min=0.0)


def _taps(L: int, OUT: int, align_corners: bool, scale, cubic: bool):
    """(indices (T, OUT) int64, weights (T, OUT) float32) along one dim."""
    src = _source(torch.arange(OUT, dtype=torch.float64), L, OUT, align_corners, scale, cubic)
    i0 = src.floor()
    t = src - i0
    i0 = i0.long()
    if not cubic:
        idx = torch.stack([i0, i0 + (i0 < L - 1).long()])
        w = torch.stack([1.0 - t, t])
    else:
        A = CUBIC_A

        def near(x):  # |x| <= 1
            return ((A + 2) * x - (A + 3)) * x * x + 1

        def far(x):  # 1 < |x| < 2
            return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A

        idx = torch.stack([i0 - 1, i0, i0 + 1, i0 + 2]).clamp(0, L - 1)
        w = torch.stack([far(t + 1), near(t), near(1 - t), far(2 - t)])
    return idx, w.float()


def _resample(x, output_size, align_corners, scales, cubic: bool, op: str):
    if is_exact_dtype(x.dtype):
        return NotImplemented
    dtype = check_float(op, x)
    nd = len(output_size)
    y = x.float()
    for i in range(nd):
        d = x.dim() - nd + i
        L, OUT = x.size(d), int(output_size[i])
        idx, w = _taps(L, OUT, bool(align_corners), scales[i] if scales else None, cubic)
        shape = [1] * y.dim()
        shape[d] = OUT
        acc = None
        for t in range(idx.size(0)):  # taps in order, one rounding per op
            term = y.index_select(d, idx[t]) * w[t].view(shape)
            acc = term if acc is None else acc + term
        y = acc
    return y if dtype == torch.float32 else y.to(dtype)


def upsample_linear1d(x, output_size, align_corners, scales=None):
    return _resample(x, output_size, align_corners, [scales], False, "aten::upsample_linear1d")


def upsample_bilinear2d(x, output_size, align_corners, scales_h=None, scales_w=None):
    return _resample(x, output_size, align_corners, [scales_h, scales_w], False,
                     "aten::upsample_bilinear2d")  # fmt: skip


def upsample_trilinear3d(
    x, output_size, align_corners, scales_d=None, scales_h=None, scales_w=None
):
    return _resample(x, output_size, align_corners, [scales_d, scales_h, scales_w], False,
                     "aten::upsample_trilinear3d")  # fmt: skip


def upsample_bicubic2d(x, output_size, align_corners, scales_h=None, scales_w=None):
    return _resample(x, output_size, align_corners, [scales_h, scales_w], True,
                     "aten::upsample_bicubic2d")  # fmt: skip


def _reference(x, mode: str, **kwargs):
    return torch.nn.functional.interpolate(x.double(), mode=mode, **kwargs).to(x.dtype)
