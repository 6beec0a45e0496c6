"""Invariant backward kernels for the covered ops whose gradients reduce: softmax,
log_softmax, layer_norm and embedding.

Each reduction is in the SUM order (sequential in double from +0, rounded once) over
the reduced index, so a row's gradient depends on that row alone, and a weight's
gradient, a sum over the batch, is unchanged by rows whose gradient is exactly zero
(a padded position, a sequence whose loss term is not back-propagated): adding +-0 to
a sum that started at +0 changes nothing. Elementwise steps are single IEEE
operations in float32; bfloat16 and float16 are computed in float32 and rounded once.
"""

from __future__ import annotations

import math

import torch

from samebits.ops import pointwise
from samebits.ops._common import check_float
from samebits.ops.reductions import _restore, _sum_f64


def _row_sum(t: torch.Tensor, dim: int) -> torch.Tensor:
    """SUM-order sum over ``dim`` as float32, keepdim."""
    d = dim % t.dim()
    return _restore(_sum_f64(t, [d]), t, [d], True).float()


def softmax_backward_data(grad, output, dim: int, input_dtype) -> torch.Tensor:
    """d softmax: y * (g - sum_j g_j y_j), the products rounded to float32 first."""
    check_float("aten::_softmax_backward_data", grad, output)
    g, y = grad.float(), output.float()
    gy = g * y
    return (y * (g - _row_sum(gy, dim))).to(input_dtype)


def log_softmax_backward_data(grad, output, dim: int, input_dtype) -> torch.Tensor:
    """d log_softmax: g - exp(y) * sum_j g_j (exp: the pointwise engine's)."""
    check_float("aten::_log_softmax_backward_data", grad, output)
    g, y = grad.float(), output.float()
    return (g - pointwise.exp(y) * _row_sum(g, dim)).to(input_dtype)


def native_layer_norm_backward(
    grad_out, x, normalized_shape, mean, rstd, weight, bias, output_mask
) -> tuple:
    """Gradients of layer_norm from the forward's saved statistics (mean, rstd; the
    forward's eps is in rstd); per row, with xhat = (x - mean) rstd and gw = g *
    weight: dx = rstd * ((gw - a) - xhat * b), a = mean(gw), b = mean(gw * xhat);
    dweight = sum over rows of g * xhat; dbias = sum over rows of g."""
    dtype = check_float("aten::native_layer_norm_backward", grad_out, x)
    shape = [int(s) for s in normalized_shape]
    n = math.prod(shape)
    rstd32 = rstd.float().reshape(-1, 1)  # (rows, 1)
    g = grad_out.float().reshape(-1, n)  # (rows, N)
    xhat = (x.float().reshape(-1, n) - mean.float().reshape(-1, 1)) * rstd32
    gw = g * weight.float().reshape(1, n) if weight is not None else g
    dx = dw = db = None
    if output_mask[0]:
        a = _row_sum(gw, 1) / n
        b = _row_sum(gw * xhat, 1) / n
        dx = (rstd32 * ((gw - a) - xhat * b)).reshape(x.shape).to(dtype)
    if output_mask[1] and weight is not None:
        dw = _sum_f64(g * xhat, [0]).reshape(shape).to(weight.dtype)
    if output_mask[2] and bias is not None:
        db = _sum_f64(g, [0]).reshape(shape).to(bias.dtype)
    return dx, dw, db


def embedding_dense_backward(
    grad_output, indices, num_weights: int, padding_idx: int, scale_grad_by_freq: bool
) -> torch.Tensor:
    """The gradient of an embedding table: row v is the sum, in the order the tokens
    appear (flat index), of the gradients of the tokens equal to v (SUM order, in
    double), with padding_idx left at zero; scale_grad_by_freq divides by the count.
    Computed as a zero-padded (tokens of v, occurrence) block summed along occurrences:
    the padding zeros add nothing."""
    dtype = check_float("aten::embedding_dense_backward", grad_output)
    d = grad_output.size(-1)
    g = grad_output.reshape(-1, d)  # (T, D)
    idx = indices.reshape(-1)
    out = torch.zeros(num_weights, d, dtype=torch.float64)
    keep = idx != padding_idx if padding_idx >= 0 else torch.ones_like(idx, dtype=torch.bool)
    idx, g = idx[keep], g[keep]
    if idx.numel():
        order = torch.sort(idx, stable=True).indices  # occurrences in flat-index order
        sidx = idx[order]
        vocab, counts = torch.unique_consecutive(sidx, return_counts=True)
        slot = torch.arange(sidx.numel()) - torch.repeat_interleave(
            torch.cumsum(counts, 0) - counts, counts
        )  # each token's place among the occurrences of its value
        block = torch.zeros(vocab.numel(), int(counts.max()), d, dtype=g.dtype)
        block[torch.repeat_interleave(torch.arange(vocab.numel()), counts), slot] = g[order]
        sums = _sum_f64(block, [1])  # (V', D), sequential over occurrences
        if scale_grad_by_freq:
            sums = sums / counts.to(torch.float64).unsqueeze(1)
        out[vocab] = sums
    return out.to(dtype)
