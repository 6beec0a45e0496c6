"""Invariant linear, bilinear, trilinear and bicubic upsampling (``F.interpolate``),
and antialiased bilinear / bicubic (``antialias=True``).

Why: ATen's upsample kernels are batch- and thread-invariant, but their vector bodies
use fused multiply-adds at some dispatch levels and not at others, so bilinear and
bicubic outputs changed between ``ATEN_CPU_CAPABILITY=default`` and ``avx2``
(measured on torch 2.13). Nearest modes are gathers and stay native.

Order: separable, one spatial dim after another from the first to the last. Along a
dim, output o reads taps t = 0..T-1 (T = 2 linear, 4 cubic) at clamped source indices
with float32 weights computed in double and rounded once, and computes
``((x0 * w0 + x1 * w1) + x2 * w2) + x3 * w3`` as separate IEEE float32 multiplies and
adds. bfloat16 and float16 are computed in float32 and rounded once at the end.

Antialiased (``_upsample_bilinear2d_aa``, ``_upsample_bicubic2d_aa``; torch's and
Pillow's windows): separable, the last dim (W) first, then H. Output o of a dim reads
the taps ``xmin .. xmin + xsize - 1`` of its window (center ``scale * (o + 0.5)``,
support ``T / 2 * max(scale, 1)``; T = 2 bilinear, 4 bicubic with a = -0.5), weights
``filter((j + xmin - center + 0.5) / max(scale, 1))`` normalized by their sum, all in
double and rounded once to float32; then ``((x0 * w0 + x1 * w1) + ...)`` in float32,
taps in order, padded to the longest window with +0 terms.
"""

from __future__ import annotations

import math

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


def _aa_filter(x: torch.Tensor, cubic: bool) -> torch.Tensor:
    x = x.abs()
    if not cubic:
        return torch.where(x < 1, 1 - x, 0.0)
    a = -0.5
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return torch.where(x < 1, near, torch.where(x < 2, far, 0.0))


def _aa_taps(L: int, OUT: int, align_corners: bool, scale, cubic: bool):
    """(indices (T, OUT) int64, weights (T, OUT) float32, real (T, OUT) bool): torch's
    antialiased windows, T the longest window."""
    if align_corners:
        s = (L - 1) / (OUT - 1) if OUT > 1 else 0.0
    else:
        s = 1.0 / scale if scale is not None and scale > 0 else L / OUT
    support = (4 if cubic else 2) * 0.5 * (s if s >= 1.0 else 1.0)
    invscale = 1.0 / s if s >= 1.0 else 1.0
    center = s * (torch.arange(OUT, dtype=torch.float64) + 0.5)
    xmin = (center - support + 0.5).trunc().clamp(min=0).long()  # C's (int) truncates
    xmax = (center + support + 0.5).trunc().long().clamp(max=L)
    T = int(math.ceil(support)) * 2 + 1
    size = (xmax - xmin).clamp(0, T)
    T = max(1, int(size.max())) if OUT else 1
    j = torch.arange(T, dtype=torch.int64).unsqueeze(1)  # (T, 1)
    real = j < size  # (T, OUT)
    w = _aa_filter((j + xmin - center + 0.5) * invscale, cubic)
    w = torch.where(real, w, 0.0)
    total = w[0]
    for t in range(1, T):  # in order, in double (torch sums them in order too)
        total = total + w[t]
    w = torch.where(total != 0, w / total, w)
    return (xmin + j).clamp(max=L - 1), w.float(), real


def _resample_aa(x, output_size, align_corners, scales, cubic: bool, op: str):
    if is_exact_dtype(x.dtype):
        return NotImplemented  # uint8 images: torch's integer kernel (int16 weights)
    dtype = check_float(op, x)
    y = x.float()
    for i in reversed(range(2)):  # W first, then H, as torch and Pillow
        d = x.dim() - 2 + i
        L, OUT = x.size(d), int(output_size[i])
        idx, w, real = _aa_taps(L, OUT, bool(align_corners), scales[i] if scales else None, cubic)
        shape = [1] * y.dim()
        shape[d] = OUT
        acc = None
        for t in range(idx.size(0)):  # taps in order, one rounding per op
            term = y.index_select(d, idx[t]) * w[t].view(shape)
            term = torch.where(real[t].view(shape), term, 0.0)
            acc = term if acc is None else acc + term
        y = acc
    return y if dtype == torch.float32 else y.to(dtype)


def upsample_bilinear2d_aa(x, output_size, align_corners, scales_h=None, scales_w=None):
    return _resample_aa(x, output_size, align_corners, [scales_h, scales_w], False,
                        "aten::_upsample_bilinear2d_aa")  # fmt: skip


def upsample_bicubic2d_aa(x, output_size, align_corners, scales_h=None, scales_w=None):
    return _resample_aa(x, output_size, align_corners, [scales_h, scales_w], True,
                        "aten::_upsample_bicubic2d_aa")  # fmt: skip


def _reference(x, mode: str, **kwargs):
    return torch.nn.functional.interpolate(x.double(), mode=mode, **kwargs).to(x.dtype)
