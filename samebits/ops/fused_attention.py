"""torch's fused transformer fast paths, decomposed into covered kernels:
``_native_multi_head_attention`` (``nn.MultiheadAttention`` in eval) and
``_transformer_encoder_layer_fwd`` (``nn.TransformerEncoderLayer`` in eval), dense
or nested (``nn.TransformerEncoder`` with a ``src_key_padding_mask`` turns its input
into a nested tensor and runs the layer on it).

Orders are those of the pieces: projections are ``linear`` (DOT order), attention is
samebits' ``scaled_dot_product_attention`` (masked keys add nothing), layer norms
are samebits' (SUM order), the feed-forward activation is samebits' gelu or relu.
Attention weights, when asked for, are the same scores, mask and softmax as in the
attention kernel, averaged over heads in head order in double (the SUM order).
A nested input runs padded with its key padding mask, which gives every sequence
the bits it would get alone.
"""

from __future__ import annotations

import math

import torch

from samebits.errors import UnsupportedInputError
from samebits.ops import attention, matmul, norms, pointwise, reductions
from samebits.ops._common import check_float, is_exact_dtype
from samebits.ops.matmul import bmm_f32
from samebits.ops.softmax import masked_softmax_f32

SRC_MASK, KEY_PADDING_MASK, MERGED_MASK = 0, 1, 2  # torch's mask_type codes


def _keep_mask(mask, mask_type, B, H, L, S):
    """The mask as sdpa takes it: bool True = attend, or an additive float mask,
    broadcastable to (B, H, L, S)."""
    if mask is None:
        return None
    if mask_type == KEY_PADDING_MASK:  # (B, S)
        mask = mask.view(B, 1, 1, S)
    elif mask.dim() == 2:  # (L, S)
        mask = mask.view(1, 1, L, S)
    elif mask.dim() == 3:  # (B * H, L, S) or (B, L, S)
        mask = mask.view(B, -1, L, S)
    return ~mask if mask.dtype == torch.bool else mask


def _project(x, w, b, E, i):
    return matmul.linear(x, w[i * E : (i + 1) * E], None if b is None else b[i * E : (i + 1) * E])


def native_multi_head_attention(
    query,
    key,
    value,
    embed_dim,
    num_head,
    qkv_weight,
    qkv_bias,
    proj_weight,
    proj_bias,
    mask=None,
    need_weights=True,
    average_attn_weights=True,
    mask_type=None,
):
    """Matches ``aten::_native_multi_head_attention``: (output, weights or empty)."""
    if is_exact_dtype(query.dtype):
        return NotImplemented
    dtype = check_float("aten::_native_multi_head_attention", query, key, value)
    if query.dim() != 3:
        raise UnsupportedInputError(
            f"aten::_native_multi_head_attention: expected batched (B, L, E) inputs, got {tuple(query.shape)}"
        )
    E, H = int(embed_dim), int(num_head)
    B, L, _ = query.shape
    S = key.size(1)
    D = E // H
    q = _project(query, qkv_weight, qkv_bias, E, 0)
    k = _project(key, qkv_weight, qkv_bias, E, 1)
    v = _project(value, qkv_weight, qkv_bias, E, 2)
    q, k, v = (t.view(B, -1, H, D).transpose(1, 2) for t in (q, k, v))  # (B, H, L|S, D)
    keep = _keep_mask(mask, mask_type, B, H, L, S)
    if need_weights:
        out, p = _with_weights(q, k, v, keep, 1.0 / math.sqrt(D))
        # (B, L, S): the head mean in the SUM order, or (B, H, L, S)
        weights = reductions.mean(p.float(), 1).to(dtype) if average_attn_weights else p
    else:
        out = attention.scaled_dot_product_attention(q, k, v, keep)
        weights = query.new_empty(0)
    out = out.transpose(1, 2).reshape(B, L, E)  # (B, L, E)
    return matmul.linear(out, proj_weight, proj_bias), weights


def _with_weights(q, k, v, keep, scale):
    """Attention and its probabilities: the steps of attention._unfused."""
    B, H, L, D = q.shape
    S = k.size(2)
    s = bmm_f32(
        q.reshape(-1, L, D), k.reshape(-1, S, D).contiguous().transpose(-1, -2), order="dot"
    )
    s = (s * scale).view(B, H, L, S)
    if keep is not None:
        s = s.masked_fill(~keep, -math.inf) if keep.dtype == torch.bool else s + keep.float()
    p = masked_softmax_f32(s.reshape(-1, L, S))  # (B*H, L, S)
    out = bmm_f32(p, v.reshape(-1, S, v.size(-1)).float(), order="seq")
    return out.to(q.dtype).view(B, H, L, -1), p.view(B, H, L, S).to(q.dtype)


def transformer_encoder_layer_fwd(
    src,
    embed_dim,
    num_heads,
    qkv_weight,
    qkv_bias,
    proj_weight,
    proj_bias,
    use_gelu,
    norm_first,
    eps,
    norm_weight_1,
    norm_bias_1,
    norm_weight_2,
    norm_bias_2,
    ffn_weight_1,
    ffn_bias_1,
    ffn_weight_2,
    ffn_bias_2,
    mask=None,
    mask_type=None,
):
    """Matches ``aten::_transformer_encoder_layer_fwd`` on dense and nested inputs."""
    if src.is_nested:
        return _nested_layer(src, locals())
    if is_exact_dtype(src.dtype):
        return NotImplemented
    check_float("aten::_transformer_encoder_layer_fwd", src)
    E = int(embed_dim)

    def ln(x, w, b):
        return norms.layer_norm(x, (E,), w, b, eps)

    def sa(x):
        return native_multi_head_attention(x, x, x, E, num_heads, qkv_weight, qkv_bias, proj_weight,
                                           proj_bias, mask, False, True, mask_type)[0]  # fmt: skip

    def ffn(x):
        h = matmul.linear(x, ffn_weight_1, ffn_bias_1)
        h = pointwise.gelu(h) if use_gelu else torch.relu(h)
        return matmul.linear(h, ffn_weight_2, ffn_bias_2)

    x = src
    if norm_first:
        x = x + sa(ln(x, norm_weight_1, norm_bias_1))
        return x + ffn(ln(x, norm_weight_2, norm_bias_2))
    x = ln(x + sa(x), norm_weight_1, norm_bias_1)
    return ln(x + ffn(x), norm_weight_2, norm_bias_2)


def _nested_layer(src, args):
    """A nested batch: padded with zeros, its key padding mask, the dense layer, and
    each sequence's real rows back into a nested tensor."""
    seqs = src.unbind()
    lengths = [s.size(0) for s in seqs]
    dense = src.to_padded_tensor(0.0)  # (B, Lmax, E)
    pad = torch.arange(dense.size(1)).unsqueeze(0) >= torch.tensor(lengths).unsqueeze(
        1
    )  # (B, Lmax)
    if args["mask"] is not None:
        raise UnsupportedInputError(
            "aten::_transformer_encoder_layer_fwd: a nested input with an extra mask"
        )
    call = dict(args)
    del call["src"]
    call.update(mask=pad, mask_type=KEY_PADDING_MASK)
    out = transformer_encoder_layer_fwd(dense, **call)
    return torch.nested.nested_tensor([out[i, :n] for i, n in enumerate(lengths)])
