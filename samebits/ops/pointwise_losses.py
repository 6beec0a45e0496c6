"""Invariant elementwise losses: ``mse_loss``, ``huber_loss``, ``smooth_l1_loss``,
``binary_cross_entropy``, ``binary_cross_entropy_with_logits``, ``soft_margin_loss``,
and the backward kernels of all but the logits one (whose derivative torch writes
with covered ops).

Order (the **LOSS** row of docs/design.md, for elementwise terms): each element's term
is torch's formula as single float32 operations (bfloat16 and float16 widened; ``exp``,
``log`` and ``log1p`` from the pointwise engine); 'none' rounds each term once; 'sum'
is the SUM order (sequential in double from +0) over the flattened elements, rounded
once; 'mean' divides that sum by the element count in double. An element's term
depends on that element alone, and exact-zero terms (masked-out elements) change no
bit of a sum. Backward: torch's elementwise derivative as float32 operations, the
mean's ``1 / n`` applied to the incoming gradient first.
"""

from __future__ import annotations

import torch

from samebits.errors import UnsupportedInputError
from samebits.ops import pointwise
from samebits.ops._common import check_float
from samebits.ops.reductions import _sum_f64

NONE, MEAN, SUM = 0, 1, 2


def _reduce(term: torch.Tensor, reduction: int, dtype) -> torch.Tensor:
    if reduction == NONE:
        return term.to(dtype)
    total = _sum_f64(term.reshape(-1), [0])  # the SUM order over the elements
    if reduction == SUM:
        return total.to(dtype)
    if reduction != MEAN:
        raise UnsupportedInputError(f"loss reduction {reduction} is not 0, 1 or 2")
    return (total / term.numel()).to(dtype)


def _pair(op, x, y, *more):
    dtype = check_float(op, x, y, *more)
    return dtype, x.float(), y.float(), *(None if m is None else m.float() for m in more)


def mse_loss(x, y, reduction=MEAN):
    dtype, x, y = _pair("aten::mse_loss", x, y)
    d = x - y
    return _reduce(d * d, reduction, dtype)


def _huber_term(d, delta):
    a = d.abs()
    return torch.where(a < delta, (0.5 * d) * d, delta * (a - 0.5 * delta))


def huber_loss(x, y, reduction=MEAN, delta=1.0):
    dtype, x, y = _pair("aten::huber_loss", x, y)
    return _reduce(_huber_term(x - y, float(delta)), reduction, dtype)


def smooth_l1_loss(x, y, reduction=MEAN, beta=1.0):
    dtype, x, y = _pair("aten::smooth_l1_loss", x, y)
    d = x - y
    a, beta = d.abs(), float(beta)
    if beta == 0:
        return _reduce(a, reduction, dtype)
    return _reduce(torch.where(a < beta, (0.5 * d) * d / beta, a - 0.5 * beta), reduction, dtype)


def binary_cross_entropy(p, y, weight=None, reduction=MEAN):
    """torch's ``-w (y log p + (1 - y) log(1 - p))`` with each log clamped at -100."""
    dtype, p, y, w = _pair("aten::binary_cross_entropy", p, y, weight)
    lp = pointwise.log(p).clamp(min=-100.0)
    lq = pointwise.log(1.0 - p).clamp(min=-100.0)
    term = -(y * lp + (1.0 - y) * lq)
    return _reduce(term if w is None else term * w, reduction, dtype)


def binary_cross_entropy_with_logits(x, y, weight=None, pos_weight=None, reduction=MEAN):
    """torch's stable form: ``(1 - y) x + (1 + (pw - 1) y) (log1p(exp(-|x|)) + max(-x, 0))``
    (``pw`` = 1 without pos_weight), times the weight."""
    dtype, x, y, w, pw = _pair("aten::binary_cross_entropy_with_logits", x, y, weight, pos_weight)
    soft = pointwise.run("log1p", (pointwise.exp(-x.abs()),)) + (-x).clamp(min=0.0)
    coef = 1.0 if pw is None else 1.0 + (pw - 1.0) * y
    term = (1.0 - y) * x + coef * soft
    return _reduce(term if w is None else term * w, reduction, dtype)


def soft_margin_loss(x, y, reduction=MEAN):
    """``log1p(exp(-y x))`` per element."""
    dtype, x, y = _pair("aten::soft_margin_loss", x, y)
    return _reduce(pointwise.run("log1p", (pointwise.exp(-y * x),)), reduction, dtype)


def _grad_scale(g, x, reduction):
    """The incoming gradient, divided by the element count for the mean (float32)."""
    g = g.float()
    return g / x.numel() if reduction == MEAN else g


def mse_loss_backward(g, x, y, reduction):
    dtype, xf, yf = _pair("aten::mse_loss_backward", x, y)
    return ((xf - yf) * (2.0 * _grad_scale(g, x, reduction))).to(dtype)


def huber_loss_backward(g, x, y, reduction, delta):
    dtype, xf, yf = _pair("aten::huber_loss_backward", x, y)
    d, s = xf - yf, _grad_scale(g, x, reduction)
    delta = float(delta)
    return (d.clamp(-delta, delta) * s).to(dtype)


def smooth_l1_loss_backward(g, x, y, reduction, beta):
    dtype, xf, yf = _pair("aten::smooth_l1_loss_backward", x, y)
    d, s, beta = xf - yf, _grad_scale(g, x, reduction), float(beta)
    slope = torch.sign(d) if beta == 0 else torch.where(d.abs() < beta, d / beta, torch.sign(d))
    return (slope * s).to(dtype)


def binary_cross_entropy_backward(g, p, y, weight=None, reduction=MEAN):
    """torch's ``g (p - y) / max((1 - p) p, 1e-12)``, times the weight."""
    dtype, pf, yf, w = _pair("aten::binary_cross_entropy_backward", p, y, weight)
    out = _grad_scale(g, p, reduction) * (pf - yf) / ((1.0 - pf) * pf).clamp(min=1e-12)
    return (out if w is None else out * w).to(dtype)


def soft_margin_loss_backward(g, x, y, reduction):
    """torch's ``-y exp(-y x) / (1 + exp(-y x))`` times the gradient."""
    dtype, xf, yf = _pair("aten::soft_margin_loss_backward", x, y)
    z = pointwise.exp(-yf * xf)
    return ((-yf * z / (1.0 + z)) * _grad_scale(g, x, reduction)).to(dtype)


def _reference(name: str, *args, **kwargs):
    """torch's loss of the float64 operands, rounded to the first one's dtype."""
    up = [a.double() if isinstance(a, torch.Tensor) else a for a in args]
    kw = {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    return getattr(torch.nn.functional, name)(*up, **kw).to(args[0].dtype)
