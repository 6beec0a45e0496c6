"""Invariant pairwise distances: ``cdist`` (``_cdist_forward``) and its backward,
``_euclidean_dist``.

Why: torch's ``cdist`` picks its p = 2 algorithm by size (a matmul when either operand
has more than 25 rows, else a direct loop), so a query's distances changed when the
batch of queries grew past 25. Here the algorithm is fixed by ``compute_mode`` alone:

* **direct** (``compute_mode`` None / 0, "use_mm_for_euclid_dist_if_necessary", and 2,
  "donot_use_mm"; every p): for each pair (i, j) the differences ``x1[i, k] - x2[j, k]``
  in float32 (one rounding), then samebits' vector norm of them over k (the SUM order;
  see reductions.vector_norm for p = 1, 2, inf, 0 and general p), rounded once;
* **mm** (``compute_mode`` 1, "use_mm_for_euclid_dist", p = 2; and ``_euclidean_dist``):
  torch's formula, ``sqrt(max(0, |a|^2 - 2 a.b + |b|^2))`` as one SEQ-order product of
  ``[-2a, |a|^2, 1]`` and ``[b, 1, |b|^2]`` (float32; the squared norms in the SUM order,
  rounded to float32), then the clamp and sqrt in float32, rounded once.

Either way a distance depends on its two rows alone: on neither the number of rows
around them nor the threads. Batch dims broadcast as in torch.
"""

from __future__ import annotations

import math

import torch

from samebits.errors import UnsupportedInputError
from samebits.ops import pointwise
from samebits.ops._common import broadcast_shapes, check_float
from samebits.ops.matmul import bmm_f32
from samebits.ops.reductions import _sum_f64, norm_unrounded

CHUNK = 1 << 22  # differences materialized at once (float32 elements): bounds memory


def _batched(x1, x2, op):
    """(x1 (B, P, M), x2 (B, R, M), batch shape) with the batch dims broadcast."""
    if x1.dim() < 2 or x2.dim() < 2 or x1.size(-1) != x2.size(-1):
        raise UnsupportedInputError(
            f"{op}: expected (..., P, M) and (..., R, M), got {tuple(x1.shape)} and "
            f"{tuple(x2.shape)}"
        )
    batch = broadcast_shapes(op, tuple(x1.shape[:-2]), tuple(x2.shape[:-2]))
    n = math.prod(batch)
    a = x1.expand(*batch, *x1.shape[-2:]).reshape(n, *x1.shape[-2:])  # (B, P, M)
    b = x2.expand(*batch, *x2.shape[-2:]).reshape(n, *x2.shape[-2:])  # (B, R, M)
    return a, b, batch


def _direct(a, b, p: float) -> torch.Tensor:
    """(B, P, R) distances before rounding, in chunks of P rows."""
    B, P, M = a.shape
    R = b.size(1)
    rows = max(1, CHUNK // max(1, B * R * M))
    parts = []
    for s in range(0, P, rows):
        diff = a[:, s : s + rows, None, :].float() - b[:, None, :, :].float()  # (B, p, R, M)
        parts.append(norm_unrounded(diff, p, [3]))
    return torch.cat(parts, 1) if parts else a.new_zeros(B, 0, R, dtype=torch.float32)


def _mm(a, b) -> torch.Tensor:
    """(B, P, R) float32: torch's matmul formula in the SEQ order."""
    a, b = a.float(), b.float()
    an = _sum_f64(a, [2], square=True).float().unsqueeze(-1)  # (B, P, 1)
    bn = _sum_f64(b, [2], square=True).float().unsqueeze(-1)  # (B, R, 1)
    left = torch.cat([a * -2.0, an, torch.ones_like(an)], -1)  # (B, P, M + 2)
    right = torch.cat([b, torch.ones_like(bn), bn], -1)  # (B, R, M + 2)
    return bmm_f32(left, right.transpose(1, 2)).clamp_min(0.0).sqrt()


def cdist(x1, x2, p: float = 2.0, compute_mode=None):
    """``aten::cdist`` / ``aten::_cdist_forward``; see the module doc."""
    op = "aten::cdist"
    dtype = check_float(op, x1, x2)
    p = float(p)
    if p < 0 or math.isnan(p):
        raise UnsupportedInputError(f"{op}: p must be >= 0, got {p}")
    if compute_mode not in (None, 0, 1, 2):
        raise UnsupportedInputError(f"{op}: compute_mode {compute_mode} is not 0, 1 or 2")
    a, b, batch = _batched(x1, x2, op)
    shape = (*batch, a.size(1), b.size(1))
    if a.size(2) == 0:
        return torch.zeros(shape, dtype=dtype)
    res = _mm(a, b) if (compute_mode == 1 and p == 2) else _direct(a, b, p)
    return res.to(dtype).reshape(shape)


def euclidean_dist(x1, x2):
    """``aten::_euclidean_dist``: the mm definition."""
    dtype = check_float("aten::_euclidean_dist", x1, x2)
    a, b, batch = _batched(x1, x2, "aten::_euclidean_dist")
    return _mm(a, b).to(dtype).reshape(*batch, a.size(1), b.size(1))


def cdist_backward(grad, x1, x2, p: float, dist):
    """``aten::_cdist_backward``: d x1[i, k] = sum over j of ``grad[i, j] * t_ijk``, the
    terms (torch's formulas for each p, 0 where the distance is 0) in float32 and the
    sum over j in the SUM order, rounded once."""
    dtype = check_float("aten::_cdist_backward", x1, x2)
    a, b, batch = _batched(x1, x2, "aten::_cdist_backward")
    p = float(p)
    B, P, M = a.shape
    if p == 0 or a.numel() == 0 or b.size(1) == 0:
        return torch.zeros(x1.shape, dtype=dtype)
    g = grad.float().reshape(B, P, -1, 1)  # (B, P, R, 1)
    d = dist.float().reshape(B, P, -1, 1)
    diff = a[:, :, None, :].float() - b[:, None, :, :].float()  # (B, P, R, M)
    if p == 1:
        t = torch.sign(diff) * g
    elif p == 2:
        t = torch.where(d == 0, 0.0, g * diff / d)
    elif math.isinf(p):
        t = g * torch.sign(diff) * (diff.abs() == d)
    else:
        ad = diff.abs()
        num = torch.sign(diff) * pointwise.run("pow", (ad, p - 1)) * g
        t = torch.where(d == 0, 0.0, num / pointwise.run("pow", (d, p - 1)))
        if p < 1:
            t = torch.where(ad == 0, 0.0, t)
    return _sum_f64(t, [2]).to(dtype).reshape(x1.shape)


def _reference(x1, x2, p=2.0):
    """torch's cdist in float64 (its direct loop), rounded to x1's dtype."""
    return torch.cdist(x1.double(), x2.double(), p, "donot_use_mm_for_euclid_dist").to(x1.dtype)
