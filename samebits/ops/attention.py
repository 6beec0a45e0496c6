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

import array
import math

import torch

from samebits import _native
from samebits.errors import NotInvariantError, UnsupportedInputError
from samebits.ops._common import broadcast_shapes, check_float, narrow, ptr
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
    rep = 1
    if enable_gqa and query.dim() >= 3 and key.size(-3) != query.size(-3):
        hq, hk = query.size(-3), key.size(-3)
        if hq % hk:
            raise UnsupportedInputError(
                f"{op}: {hq} query heads are not a multiple of {hk} key heads"
            )
        rep = hq // hk  # query head h reads key/value head h // rep

    def heads(t: torch.Tensor) -> tuple[int, ...]:
        return tuple(t.shape[:-2]) if rep == 1 else (*t.shape[:-3], t.size(-3) * rep)

    batch = broadcast_shapes(op, tuple(query.shape[:-2]), heads(key), heads(value))
    scale = scale if scale is not None else 1.0 / math.sqrt(D)
    if attn_mask is not None:
        attn_mask = attn_mask.expand(*batch, L, S)
    if D <= MAX_FUSED_HEAD_DIM and dtype != torch.float16:
        return _fused(query, key, value, attn_mask, is_causal, scale, batch, rep)
    return _unfused(query, key, value, attn_mask, is_causal, scale, batch, rep)


MAX_FUSED_HEAD_DIM = 256


def _batch_strides(t: torch.Tensor, batch: tuple[int, ...], meta: list[int]) -> None:
    """Append to ``meta`` the strides of ``t`` broadcast to ``batch`` (0 where broadcast)
    and its row stride."""
    shape, stride = t.shape, t.stride()
    lead = len(batch) - (len(shape) - 2)
    meta.extend(
        0 if i < lead or (shape[i - lead] == 1 and n != 1) else stride[i - lead]
        for i, n in enumerate(batch)
    )
    meta.append(stride[-2])


def _fused(query, key, value, mask, is_causal, scale, batch, rep):
    """One native pass per (batch, 32 query rows); the same operations as _unfused."""
    L, S, D, Dv = query.size(-2), key.size(-2), query.size(-1), value.size(-1)
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (query, key, value))
    B = math.prod(batch)
    out = torch.empty(B, L, Dv, dtype=torch.float32)
    meta = [len(batch), L, S, D, Dv, rep, *batch]
    for t in (q, k, v):
        _batch_strides(t, batch, meta)
    mkind, m = (3 if is_causal else 0), None
    if mask is None:
        meta.extend([0] * (len(batch) + 2))
    else:
        if mask.dtype == torch.bool:
            mkind, m = 1, mask
        else:
            mkind, m = 2, mask if mask.dtype == torch.float32 else mask.float()
        _batch_strides(m, batch, meta)
        meta.append(m.stride(-1))
    if B and L:
        meta_arr = array.array("q", meta)
        status = _native.lib().sb_attention(
            q.data_ptr(),
            k.data_ptr(),
            v.data_ptr(),
            ptr(m),
            meta_arr.buffer_info()[0],
            mkind,
            out.data_ptr(),
            scale,
            _native.dtype_code(q.dtype),
            _native.nthreads(),
        )
        if status == -1:
            raise MemoryError("samebits attention: could not allocate its score buffers")
    return narrow(out, query.dtype).view(*batch, L, Dv)


def _unfused(query, key, value, mask, is_causal, scale, batch, rep):
    """Scores, mask, softmax and p @ v as separate passes: the reference order for
    _fused (equal bits while the values are finite; causal _fused does not read the
    keys a row may not see), and the path for float16 and head dims above
    MAX_FUSED_HEAD_DIM."""
    L, S, D = query.size(-2), key.size(-2), query.size(-1)
    if rep > 1:
        key = key.repeat_interleave(rep, dim=-3)
        value = value.repeat_interleave(rep, dim=-3)
    q = query.expand(*batch, L, D).reshape(-1, L, D)  # (B*, L, D)
    k = key.expand(*batch, S, D).reshape(-1, S, D).contiguous()  # (B*, S, D), D unit-stride
    v = value.expand(*batch, S, value.size(-1)).reshape(-1, S, value.size(-1))  # (B*, S, Dv)
    s = bmm_f32(q, k.transpose(-1, -2), order="lanes")  # (B*, L, S): the kernel's DOT lanes
    s = s * scale
    if is_causal:
        mask = torch.ones(L, S, dtype=torch.bool).tril()
    if mask is not None:
        mask = mask.expand(*batch, L, S).reshape(-1, L, S)
        if mask.dtype == torch.bool:
            s = s.masked_fill(~mask, -math.inf)
        else:
            s = s + mask.float()
    p = masked_softmax_f32(s)  # (B*, L, S)
    out = bmm_f32(p, v.float(), order="seq")  # (B*, L, Dv)
    return narrow(out, query.dtype).view(*batch, L, value.size(-1))


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
