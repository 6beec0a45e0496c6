"""Gradients for the covered ops that torch defines by decomposition
(CompositeImplicitAutograd: linear, rms_norm, scaled_dot_product_attention).

torch differentiates such an op through its decomposition. Under the mode its
forward is one samebits kernel instead, which autograd cannot see through. So
``with_grad`` runs the samebits kernel for the forward (the bits are those of the
mode without gradients) and, in backward, recomputes the op with a differentiable
reference made of ops that have derivative formulas (matmul, softmax, mean,
rsqrt...), and returns its gradients. In backward under the mode those ops run
their own invariant kernels, so the gradients do not depend on the batch either.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def _linear(x, weight, bias=None):
    out = x @ weight.t()  # (..., N)
    return out if bias is None else out + bias


def _rms_norm(x, normalized_shape, weight=None, eps=None):
    dims = tuple(range(-len(normalized_shape), 0))
    eps = torch.finfo(x.dtype).eps if eps is None else eps
    xf = x.float()
    y = (xf * torch.rsqrt(xf.pow(2).mean(dims, keepdim=True) + eps)).to(x.dtype)
    return y if weight is None else y * weight


def _sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, *, scale=None, enable_gqa=False):
    L, S = q.size(-2), k.size(-2)
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    if enable_gqa and q.dim() >= 3 and k.size(-3) != q.size(-3):
        rep = q.size(-3) // k.size(-3)
        k, v = k.repeat_interleave(rep, dim=-3), v.repeat_interleave(rep, dim=-3)
    s = (q @ k.transpose(-2, -1)) * scale  # (..., L, S)
    if is_causal:
        attn_mask = torch.ones(L, S, dtype=torch.bool).tril()
    if attn_mask is not None:
        s = s.masked_fill(~attn_mask, -math.inf) if attn_mask.dtype == torch.bool else s + attn_mask
    return torch.softmax(s, dim=-1).nan_to_num(0.0) @ v  # fully masked rows: zeros


REFERENCES: dict[str, Callable] = {
    "linear": _linear,
    "rms_norm": _rms_norm,
    "scaled_dot_product_attention": _sdpa,
}


class _Recompute(torch.autograd.Function):
    @staticmethod
    def forward(ctx, fast, ref, kwargs, *args):
        ctx.ref, ctx.kwargs = ref, kwargs
        ctx.is_tensor = [isinstance(a, torch.Tensor) for a in args]
        ctx.others = [a for a in args if not isinstance(a, torch.Tensor)]
        ctx.save_for_backward(*[a for a in args if isinstance(a, torch.Tensor)])
        return fast(*args, **kwargs)

    @staticmethod
    def backward(ctx, grad):
        tensors, others = iter(ctx.saved_tensors), iter(ctx.others)
        needs = ctx.needs_input_grad[3:]
        args, wrt = [], []
        for is_t, need in zip(ctx.is_tensor, needs, strict=True):
            if not is_t:
                args.append(next(others))
                continue
            t = next(tensors).detach().requires_grad_(need)
            args.append(t)
            if need:
                wrt.append(t)
        with torch.enable_grad():
            out = ctx.ref(*args, **ctx.kwargs)
        grads = iter(torch.autograd.grad(out, wrt, grad, allow_unused=True))
        return (None, None, None, *(next(grads) if need else None for need in needs))


def needs_grad(args, kwargs) -> bool:
    if not torch.is_grad_enabled():
        return False
    return any(isinstance(a, torch.Tensor) and a.requires_grad for a in (*args, *kwargs.values()))


def with_grad(name: str, fast: Callable, args, kwargs):
    """``fast(*args, **kwargs)``, differentiable through REFERENCES[name] (see above)."""
    return _Recompute.apply(fast, REFERENCES[name], kwargs, *args)
