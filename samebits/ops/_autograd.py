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
from torch.utils._pytree import tree_flatten, tree_unflatten


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
    """Forward: ``fast``. Backward: ``ref`` on the same inputs, differentiated. The
    arguments may nest tensors in lists and tuples (einsum's operands, an RNN's
    weights); ``spec`` rebuilds them from the flat leaves."""

    @staticmethod
    def forward(ctx, fast, ref, spec, kwargs, *leaves):
        ctx.ref, ctx.spec, ctx.kwargs = ref, spec, kwargs
        ctx.is_tensor = [isinstance(a, torch.Tensor) for a in leaves]
        ctx.others = [a for a in leaves if not isinstance(a, torch.Tensor)]
        ctx.save_for_backward(*[a for a in leaves if isinstance(a, torch.Tensor)])
        out = fast(*tree_unflatten(list(leaves), spec), **kwargs)
        # a view returned from a Function may not be modified in place later (torch's
        # decompositions write into their outputs): hand out a copy instead
        if isinstance(out, torch.Tensor):
            return out.clone() if out._base is not None else out
        return type(out)(
            o.clone() if isinstance(o, torch.Tensor) and o._base is not None else o for o in out
        )

    @staticmethod
    def backward(ctx, *grads):
        tensors, others = iter(ctx.saved_tensors), iter(ctx.others)
        needs = ctx.needs_input_grad[4:]
        leaves, wrt = [], []
        for is_t, need in zip(ctx.is_tensor, needs, strict=True):
            if not is_t:
                leaves.append(next(others))
                continue
            t = next(tensors).detach().requires_grad_(need)
            leaves.append(t)
            if need:
                wrt.append(t)
        # oneDNN off: torch's LSTM decomposition would take mkldnn_rnn_layer, which the
        # mode denies; without it the layers decompose into covered ops. (The flag is
        # process-wide: another thread's native LSTM running in this window takes
        # torch's non-oneDNN path.)
        mkldnn = torch._C._get_mkldnn_enabled()
        torch._C._set_mkldnn_enabled(False)
        try:
            with torch.enable_grad():
                out = ctx.ref(*tree_unflatten(leaves, ctx.spec), **ctx.kwargs)
        finally:
            torch._C._set_mkldnn_enabled(mkldnn)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        pairs = [
            (o, g)
            for o, g in zip(outs, grads, strict=False)
            if g is not None and isinstance(o, torch.Tensor) and o.requires_grad
        ]
        got = torch.autograd.grad(
            [o for o, _ in pairs], wrt, [g for _, g in pairs], allow_unused=True
        )
        got = iter(got)
        return (None, None, None, None, *(next(got) if need else None for need in needs))


def _wants_grad(x) -> bool:
    if isinstance(x, torch.Tensor):
        return x.requires_grad
    if isinstance(x, (list, tuple)):
        return any(_wants_grad(a) for a in x)
    if isinstance(x, dict):
        return any(_wants_grad(a) for a in x.values())
    return False


def needs_grad(args, kwargs) -> bool:
    """Whether any tensor among the arguments requires grad, with grad mode on. Lists,
    tuples (namedtuples included) and dicts are searched, which is every container an
    aten op's arguments hold. A plain walk: torch's tree_flatten cost ~20 us
    per call, more than a decode step's attention kernel."""
    if not torch.is_grad_enabled():
        return False
    return _wants_grad(args) or _wants_grad(kwargs)


def with_grad(ref: Callable, fast: Callable, args, kwargs):
    """``fast(*args, **kwargs)``, differentiable through ``ref`` (REFERENCES[name] or
    torch's decomposition of the op; see above)."""
    leaves, spec = tree_flatten(list(args))
    return _Recompute.apply(fast, ref, spec, kwargs, *leaves)
