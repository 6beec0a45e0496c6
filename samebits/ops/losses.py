"""Invariant classification losses: ``cross_entropy`` (class indices or probabilities,
class weights, ``ignore_index``, label smoothing) and ``nll_loss`` / ``nll_loss2d`` with
their backward.

Order (the **LOSS** row of docs/design.md). Rows are the flattened batch (every position
of every sample, row-major: (n, d1, d2, ...)); C is the class dim.

* per row, in double: ``n_i = -w[t_i] * logp[i, t_i]`` (an exact product) and, with label
  smoothing eps, ``s_i = -sum_c w_c * logp[i, c]`` (the products rounded to float32,
  summed over c in the SUM order); ``l_i = (1 - eps) * n_i + (eps / C) * s_i``, +0 for an
  ignored row; ``logp`` is samebits' log_softmax (cross_entropy) or the input (nll);
* ``reduction='none'``: ``l_i`` rounded once to the dtype;
* ``'sum'``: the SUM order (sequential in double from +0) over the rows of ``l_i``
  rounded to float32, rounded once;
* ``'mean'``: that sum divided in double by ``W``, the SUM-order sum of ``w[t_i]`` over
  the rows not ignored (their count without weights), rounded once.

An ignored or padded row adds an exact +0, which changes no sequential sum: a padded
batch's loss is its unpadded one, and a row's ``l_i`` depends on that row alone.
Probability targets: ``l_i = -sum_c logp * p * w_c`` (float32 products, SUM order over
c), the mean divides by the number of rows.
"""

from __future__ import annotations

import torch

from samebits.errors import UnsupportedInputError
from samebits.ops import softmax
from samebits.ops._common import check_float
from samebits.ops.reductions import _sum_f64

NONE, MEAN, SUM = 0, 1, 2


def _rows(x: torch.Tensor, class_dim: int) -> torch.Tensor:
    """(R, C): the classes last, rows in the flattened batch's row-major order."""
    return x.reshape(1, -1) if x.dim() == 1 else x.movedim(class_dim, -1).reshape(-1, x.size(1))


def _picked(logp: torch.Tensor, target: torch.Tensor, weight, ignore_index: int, op: str):
    """(logp[i, t_i], w[t_i], valid) per row, as float64 (exact) and bool; logp (R, C)."""
    t = target.reshape(-1)
    valid = t != ignore_index
    safe = torch.where(valid, t, 0)
    C = logp.size(1)
    bad = valid & ((safe < 0) | (safe >= C))
    if bool(bad.any()):
        raise UnsupportedInputError(
            f"{op}: target {int(t[bad][0])} is out of bounds for {C} classes"
        )
    picked = logp.gather(1, safe.unsqueeze(1)).squeeze(1).double()  # (R,)
    w = torch.ones_like(picked) if weight is None else weight.double()[safe]
    return picked, torch.where(valid, w, 0.0), valid


def _reduce(loss: torch.Tensor, w: torch.Tensor, reduction: int, dtype, shape):
    """loss: (R,) float64 row losses (+0 where ignored); w: (R,) their weights."""
    if reduction == NONE:
        return loss.to(dtype).reshape(shape)
    total = _sum_f64(loss.float(), [0])  # the SUM order over the flattened batch
    if reduction == SUM:
        return total.to(dtype)
    if reduction != MEAN:
        raise UnsupportedInputError(f"loss reduction {reduction} is not 0, 1 or 2")
    return (total / _sum_f64(w.float(), [0])).to(dtype)


def _nll(logp, target, weight, reduction, ignore_index, class_dim, op, eps=0.0):
    """(loss, total weight) of rows of log-probabilities ``logp``."""
    dtype = logp.dtype
    rows = _rows(logp, class_dim)  # (R, C)
    picked, w, valid = _picked(rows, target, weight, ignore_index, op)
    loss = -(w * picked)
    if eps > 0:
        C = rows.size(1)
        wide = rows if weight is None else rows.float() * weight.float()  # (R, C)
        smooth = -_sum_f64(wide, [1])  # (R,)
        loss = (1.0 - eps) * loss + (eps / C) * smooth
    loss = torch.where(valid, loss, 0.0)
    out = _reduce(loss, w, reduction, dtype, target.shape)
    total_w = _sum_f64(w.float(), [0]).to(dtype) if reduction != NONE else logp.new_zeros(())
    return out, total_w


def nll_loss_forward(x, target, weight, reduction: int, ignore_index: int):
    """``aten::nll_loss_forward``: (N, C) or (C,) log-probabilities."""
    check_float("aten::nll_loss_forward", x, weight)
    return _nll(x, target, weight, reduction, ignore_index, 1, "aten::nll_loss")


def nll_loss2d_forward(x, target, weight, reduction: int, ignore_index: int):
    """``aten::nll_loss2d_forward``: (N, C, H, W) log-probabilities."""
    check_float("aten::nll_loss2d_forward", x, weight)
    return _nll(x, target, weight, reduction, ignore_index, 1, "aten::nll_loss2d")


def cross_entropy_loss(
    x, target, weight=None, reduction: int = MEAN, ignore_index: int = -100, label_smoothing=0.0
):
    """``aten::cross_entropy_loss``: samebits' log_softmax over the class dim, then the
    LOSS order (see the module doc) for class indices or class probabilities."""
    dtype = check_float("aten::cross_entropy_loss", x, weight)
    eps = float(label_smoothing)
    class_dim = 0 if x.dim() == 1 else 1
    logp = softmax.log_softmax(x, class_dim)
    if not target.dtype.is_floating_point:
        out, _ = _nll(logp, target, weight, reduction, ignore_index, class_dim,
                      "aten::cross_entropy_loss", eps)  # fmt: skip
        return out
    check_float("aten::cross_entropy_loss", x, target)
    rows, p = _rows(logp, class_dim).float(), _rows(target, class_dim).float()  # (R, C)
    C = rows.size(1)
    if eps > 0:
        p = p * (1.0 - eps) + eps / C
    prod = rows * p if weight is None else rows * p * weight.float()
    loss = -_sum_f64(prod, [1])  # (R,)
    shape = target.shape[:class_dim] + target.shape[class_dim + 1 :]
    return _reduce(loss, torch.ones_like(loss), reduction, dtype, shape)


def nll_loss_backward(g, x, target, weight, reduction: int, ignore_index: int, total_weight):
    """d nll: ``grad[i, t_i] = -w[t_i] * g_i`` (``/ total_weight`` for the mean), in
    double, rounded once; zeros elsewhere and on ignored rows."""
    dtype = check_float("aten::nll_loss_backward", x, weight)
    rows = _rows(x, 1)  # (R, C)
    t = target.reshape(-1)
    valid = t != ignore_index
    safe = torch.where(valid, t, 0)
    w = torch.ones(t.shape, dtype=torch.float64) if weight is None else weight.double()[safe]
    gd = g.double().reshape(-1) if reduction == NONE else g.double().reshape(())
    val = -(w * gd)
    if reduction == MEAN:
        val = val / total_weight.double()
    val = torch.where(valid, val, 0.0).to(dtype)
    grad = torch.zeros(rows.shape, dtype=dtype).scatter_(1, safe.unsqueeze(1), val.unsqueeze(1))
    if x.dim() <= 2:
        return grad.reshape(x.shape)
    return grad.reshape(x.movedim(1, -1).shape).movedim(-1, 1).contiguous()


def _reference(x, target, **kwargs):
    """torch's cross_entropy in float64, rounded to x's dtype."""
    w = kwargs.pop("weight", None)
    w = None if w is None else w.double()
    t = target.double() if target.dtype.is_floating_point else target
    return torch.nn.functional.cross_entropy(x.double(), t, weight=w, **kwargs).to(x.dtype)
