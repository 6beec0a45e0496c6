"""Invariant scaled_dot_product_attention (boolean / float masks, is_causal, GQA).

Order, for query row i:
1. scores ``s_ij = DOT(q_i, k_j) * scale``: each score depends on q_i and k_j only;
2. masking: a boolean mask sets excluded scores to -inf, a float mask is added;
3. softmax over keys: exact max, sequential double sum of exp(s_ij - max) over
   j = 0, 1, ... (fully masked rows give zeros, as flash attention does);
4. ``out_i = SEQ_j p_ij * v_j``: one fused multiply-add per key, in key order.

Masked keys contribute exact zeros in steps 3 and 4, and a sequential sum is
unchanged by zeros wherever they sit. So left or right padding, and a decode step
over a KV cache versus the same row inside a full prefill, give the same bits.
"""

from __future__ import annotations

import math

import torch

from samebits.errors import NotInvariantError, UnsupportedInputError
from samebits.ops._common import check_float
from samebits.ops.matmul import bmm_f32
from samebits.ops.softmax import masked_softmax_f32


def scaled_dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    *,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    op = "aten::scaled_dot_product_attention"
    dtype = check_float(op, query, key, value)
    if dropout_p > 0.0:
        raise NotInvariantError(
            op,
            dtype,
            query.shape,
            f"dropout_p={dropout_p} draws random numbers; pass dropout_p=0.0 at inference (model.eval())",
        )
    if query.dim() < 2 or key.dim() != query.dim() or value.dim() != query.dim():
        raise UnsupportedInputError(
            f"{op}: query, key and value must have the same rank >= 2, got "
            f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
        )
    if attn_mask is not None and is_causal:
        raise UnsupportedInputError(f"{op}: pass either attn_mask or is_causal=True, not both")
    L, S, D = query.size(-2), key.size(-2), query.size(-1)
    if key.size(-1) != D or value.size(-2) != S:
        raise UnsupportedInputError(
            f"{op}: key {tuple(key.shape)} / value {tuple(value.shape)} do not match query {tuple(query.shape)}"
        )
    if enable_gqa and query.dim() >= 3 and key.size(-3) != query.size(-3):
        hq, hk = query.size(-3), key.size(-3)
        if hq % hk:
            raise UnsupportedInputError(
                f"{op}: {hq} query heads are not a multiple of {hk} key heads"
            )
        key = key.repeat_interleave(hq // hk, dim=-3)
        value = value.repeat_interleave(hq // hk, dim=-3)
    batch = torch.broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2])
    q = query.expand(*batch, L, D).reshape(-1, L, D)  # (B*, L, D)
    k = key.expand(*batch, S, D).reshape(-1, S, D).contiguous()  # (B*, S, D), D unit-stride
    v = value.expand(*batch, S, value.size(-1)).reshape(-1, S, value.size(-1))  # (B*, S, Dv)
    s = bmm_f32(q, k.transpose(-1, -2), order="dot")  # (B*, L, S)
    s = s * (scale if scale is not None else 1.0 / math.sqrt(D))
    if is_causal:
        attn_mask = torch.ones(L, S, dtype=torch.bool).tril()
    if attn_mask is not None:
        mask = attn_mask.expand(*batch, L, S).reshape(-1, L, S)
        if mask.dtype == torch.bool:
            s = s.masked_fill(~mask, -math.inf)
        else:
            s = s + mask.float()
    p = masked_softmax_f32(s)  # (B*, L, S)
    out = bmm_f32(p, v.float(), order="seq")  # (B*, L, Dv)
    return out.to(dtype).view(*batch, L, value.size(-1))


def _reference(query, key, value, attn_mask=None, is_causal=False, scale=None):
    """float64 math attention: what the kernel is checked against."""
    return torch.nn.functional.scaled_dot_product_attention(
        query.double(),
        key.double(),
        value.double(),
        attn_mask if attn_mask is None or attn_mask.dtype == torch.bool else attn_mask.double(),
        is_causal=is_causal,
        scale=scale,
    ).to(query.dtype)
