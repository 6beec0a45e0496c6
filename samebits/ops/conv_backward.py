"""The gradients of a (non-transposed) convolution, from the covered kernels.

* grad_input: the transposed convolution of grad_output with the weight (samebits'
  convolution, transposed), output_padding chosen to give back the input's size;
* grad_weight: per group, grad_output as a (N * L, O) matrix times the input's patches
  as a (N * L, C * taps) matrix (L output positions, patches in the weight's (c, taps)
  order), a generic product: SEQ order over the N * L terms, in increasing (n, l);
* grad_bias: grad_output summed over (N, positions) in the SUM order.

The weight and bias gradients are sums over the batch: a sample whose gradient is
exactly zero (a term that is not back-propagated, padding) adds nothing to the SEQ and
SUM chains, so one sample's gradients have the same bits alone and in a batch.
"""

from __future__ import annotations

import math

import torch

from samebits.errors import NotInvariantError
from samebits.ops import conv
from samebits.ops._common import check_float
from samebits.ops.matmul import bmm_f32
from samebits.ops.reductions import _sum_f64


def _patches(x: torch.Tensor, kernel, stride, padding, dilation) -> torch.Tensor:
    """(N, C, *S) -> (N, L, C * prod(kernel)): each output position's input patch, in
    the (c, k_1, ..., k_d) order of the weight's layout."""
    nd = len(kernel)
    x = torch.nn.functional.pad(x, [p for pad in reversed(padding) for p in (pad, pad)])
    n, c = x.shape[:2]
    sizes = x.shape[2:]
    out = [(sizes[d] - dilation[d] * (kernel[d] - 1) - 1) // stride[d] + 1 for d in range(nd)]
    st = x.stride()
    view = x.as_strided(
        (n, c, *kernel, *out),
        (
            st[0],
            st[1],
            *[st[2 + d] * dilation[d] for d in range(nd)],
            *[st[2 + d] * stride[d] for d in range(nd)],
        ),  # fmt: skip
    )  # (N, C, *K, *Out)
    perm = [0, *range(2 + nd, 2 + 2 * nd), 1, *range(2, 2 + nd)]
    return view.permute(perm).reshape(n, math.prod(out), c * math.prod(kernel))


def convolution_backward(
    grad_output, x, weight, bias_sizes, stride, padding, dilation, transposed,
    output_padding, groups, output_mask,
):  # fmt: skip
    dtype = check_float("aten::convolution_backward", grad_output, x, weight)
    if transposed:
        raise NotInvariantError(
            "aten::convolution_backward", dtype, x.shape,
            "the gradients of a transposed convolution have no invariant kernel yet",
        )  # fmt: skip
    nd = weight.dim() - 2
    stride, padding, dilation = (list(v) for v in (stride, padding, dilation))
    unbatched = x.dim() == nd + 1
    if unbatched:
        x, grad_output = x.unsqueeze(0), grad_output.unsqueeze(0)
    gi = gw = gb = None
    if output_mask[0]:
        sizes = x.shape[2:]
        gsz = grad_output.shape[2:]
        outpad = [
            sizes[d] - ((gsz[d] - 1) * stride[d] - 2 * padding[d] + dilation[d] * (weight.size(2 + d) - 1) + 1)
            for d in range(nd)
        ]  # fmt: skip
        gi = conv.convolution(
            grad_output, weight, None, stride, padding, dilation, True, outpad, groups
        )
        gi = gi[0] if unbatched else gi
    if output_mask[1]:
        n, o = grad_output.shape[:2]
        cg, og = x.size(1) // groups, o // groups
        kernel = list(weight.shape[2:])
        parts = []
        for g in range(groups):
            xs = x[:, g * cg : (g + 1) * cg]
            cols = _patches(xs, kernel, stride, padding, dilation)  # (N, L, Cg * taps)
            go = grad_output[:, g * og : (g + 1) * og].flatten(2).transpose(1, 2)  # (N, L, Og)
            a = go.reshape(1, -1, og).transpose(1, 2)  # (1, Og, N * L)
            b = cols.reshape(1, -1, cols.size(-1))  # (1, N * L, Cg * taps)
            parts.append(bmm_f32(a.to(dtype), b.to(dtype))[0])  # SEQ over N * L
        gw = torch.cat(parts).reshape(weight.shape).to(weight.dtype)
    if output_mask[2] and bias_sizes is not None:
        g2 = grad_output.transpose(0, 1).reshape(grad_output.size(1), -1)  # (O, N * L)
        gb = _sum_f64(g2, [1]).to(grad_output.dtype)
    return gi, gw, gb
