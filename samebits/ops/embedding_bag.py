"""Invariant ``embedding_bag`` (``nn.EmbeddingBag``, the recommender's pooled lookup):
``_embedding_bag`` and ``_embedding_bag_forward_only``, modes sum, mean and max, with
offsets, ``include_last_offset``, ``per_sample_weights`` and ``padding_idx``.

Order (the **BAG** row of docs/design.md), for each bag and each embedding column:

* sum: the bag's entries in index order (entries equal to ``padding_idx`` as +0), each
  term the weight row (with ``per_sample_weights``: ``w_i * row``, one float32 product),
  summed sequentially in double from +0 (the SUM order), rounded once;
* mean: that sum divided in double by the count of non-padding entries, rounded once;
  an empty bag gives zeros;
* max: the largest entry (exact); its vocabulary id is the first such entry's; an
  empty bag gives zeros (id 0).

A bag's result depends on its own entries alone: not on the other bags, their sizes,
the batch or the threads. The auxiliary outputs (offset2bag, bag_size,
max_indices) are torch's: offset2bag is empty for sum without ``padding_idx``,
bag_size counts non-padding entries for mean and max.
"""

from __future__ import annotations

import torch

from samebits.errors import UnsupportedInputError
from samebits.ops._common import check_float
from samebits.ops.reductions import _sum_f64

SUM, MEAN, MAX = 0, 1, 2
CHUNK = 1 << 22  # (bags x longest bag x columns) float32 elements laid out at once


def _bags(indices: torch.Tensor, offsets: torch.Tensor, include_last_offset: bool):
    """(starts (B,), ends (B,), bag id per index (n,)) as int64."""
    n = indices.numel()
    offs = offsets.reshape(-1).long()
    if include_last_offset:
        if offs.numel() == 0:
            raise UnsupportedInputError("embedding_bag: include_last_offset needs offsets")
        starts, ends = offs[:-1], offs[1:]
    else:
        starts = offs
        ends = torch.cat([offs[1:], offs.new_tensor([n])])
    if starts.numel() and (bool((ends < starts).any()) or int(ends[-1]) > n or int(starts[0]) < 0):
        raise UnsupportedInputError(
            f"embedding_bag: offsets {offs.tolist()[:8]}... must be non-decreasing in [0, {n}]"
        )
    pos = torch.arange(n)
    bag = torch.searchsorted(starts, pos, right=True) - 1  # the last start <= position
    inside = (bag >= 0) & (pos < ends.gather(0, bag.clamp(min=0)))
    return starts, ends, torch.where(inside, bag, -1)


def embedding_bag(
    weight,
    indices,
    offsets,
    scale_grad_by_freq=False,
    mode=SUM,
    sparse=False,
    per_sample_weights=None,
    include_last_offset=False,
    padding_idx=-1,
):
    """``aten::_embedding_bag`` / ``_embedding_bag_forward_only``; see the module doc."""
    op = "aten::_embedding_bag"
    dtype = check_float(op, weight, per_sample_weights)
    if per_sample_weights is not None and mode != SUM:
        raise UnsupportedInputError(f"{op}: per_sample_weights need mode 'sum', got {mode}")
    if mode not in (SUM, MEAN, MAX):
        raise UnsupportedInputError(f"{op}: mode {mode} is not 0 (sum), 1 (mean) or 2 (max)")
    idx = indices.reshape(-1).long()
    starts, ends, bag = _bags(idx, offsets, include_last_offset)
    B, D = starts.numel(), weight.size(1)
    valid = bag >= 0
    if padding_idx is not None and padding_idx >= 0:
        valid &= idx != padding_idx
    counts = torch.bincount(bag[valid], minlength=B)[:B] if B else bag.new_zeros(0)
    slot = torch.arange(idx.numel()) - starts.gather(0, bag.clamp(min=0))  # place in its bag
    lengths = (ends - starts).clamp(min=0)
    out = torch.zeros(B, D, dtype=dtype)
    ids = torch.zeros(B, D, dtype=torch.int64) if mode == MAX else None
    b0 = 0
    # bags in chunks, so that (bags, longest bag, D) stays bounded
    step = max(1, CHUNK // (D * max(1, int(lengths.max()) if B else 1)))
    while b0 < B:
        b1 = min(B, b0 + step)
        longest = int(lengths[b0:b1].max())
        _chunk(weight, idx, per_sample_weights, valid, bag, slot, counts, mode, b0, b1,
               longest, out, ids)  # fmt: skip
        b0 = b1
    pad = padding_idx is not None and padding_idx >= 0
    offset2bag = bag.clamp(min=0) if (mode != SUM or pad) else idx.new_zeros(0)
    bag_size = counts if mode != SUM else torch.zeros(B, dtype=torch.int64)
    max_indices = ids if mode == MAX else torch.zeros(B, dtype=torch.int64)
    return out, offset2bag, bag_size, max_indices


def _chunk(weight, idx, psw, valid, bag, slot, counts, mode, b0, b1, longest, out, ids):
    """Bags b0 .. b1 - 1 into ``out`` (and ``ids`` for max)."""
    if longest == 0:
        return
    sel = valid & (bag >= b0) & (bag < b1)
    D = weight.size(1)
    fill = -torch.inf if mode == MAX else 0.0
    block = torch.full((b1 - b0, longest, D), fill, dtype=torch.float32)  # (bags, slot, D)
    rows = weight.index_select(0, idx[sel]).float()  # (entries, D)
    if psw is not None:
        rows = rows * psw.reshape(-1)[sel].float().unsqueeze(1)
    block[bag[sel] - b0, slot[sel]] = rows
    n = counts[b0:b1]
    if mode == MAX:
        best, at = block.max(1)  # (bags, D): the first largest
        entry_ids = torch.full((b1 - b0, longest), 0, dtype=torch.int64)
        entry_ids[bag[sel] - b0, slot[sel]] = idx[sel]
        empty = (n == 0).unsqueeze(1)
        out[b0:b1] = torch.where(empty, 0.0, best).to(out.dtype)
        ids[b0:b1] = torch.where(empty, 0, entry_ids.gather(1, at))
        return
    total = _sum_f64(block, [1])  # (bags, D), sequential over the bag's entries
    if mode == MEAN:
        total = torch.where(n.unsqueeze(1) > 0, total / n.clamp(min=1).unsqueeze(1), 0.0)
    out[b0:b1] = total.to(out.dtype)


def _bag_of_each_index(idx, offsets, offset2bag, bags: int) -> torch.Tensor:
    """The bag of each index (-1 past the last bag), from offset2bag when the forward
    gave it, else from the first ``bags`` offsets (with include_last_offset the next
    offset ends each bag; without, the last bag runs to the end)."""
    n = idx.numel()
    if offset2bag.numel() == n and n:
        return offset2bag.long()
    offs = offsets.reshape(-1).long()
    starts = offs[:bags]
    ends = torch.cat([offs[1:], offs.new_tensor([n])])[:bags]
    pos = torch.arange(n)
    bag = torch.searchsorted(starts, pos, right=True) - 1
    inside = (bag >= 0) & (pos < ends.gather(0, bag.clamp(min=0)))
    return torch.where(inside, bag, -1)


def embedding_bag_backward(
    grad, indices, offsets, offset2bag, bag_size, maximum_indices, num_weights,
    scale_grad_by_freq, mode, sparse, per_sample_weights, padding_idx=-1,
):  # fmt: skip
    """``aten::_embedding_bag_backward``, dense: each entry's gradient row (the bag's,
    times its per-sample weight for sum, divided by the bag's count for mean: one
    float32 operation each) summed into its vocabulary row in index order, in the SUM
    order (samebits' embedding backward). Max: each column's gradient to the id that
    won it, bags in order."""
    from samebits.ops.backward import embedding_dense_backward

    op = "aten::_embedding_bag_backward"
    dtype = check_float(op, grad)
    if sparse:
        raise UnsupportedInputError(f"{op}: sparse gradients: use sparse=False")
    B, D = grad.shape
    g = grad.float()
    if mode == MAX:
        if scale_grad_by_freq:
            raise UnsupportedInputError(f"{op}: scale_grad_by_freq with mode 'max'")
        won = (bag_size > 0).unsqueeze(1)  # (B, 1): empty bags send nothing
        rows = torch.where(won, g, 0.0).reshape(-1, 1)  # (B * D, 1), one per (bag, column)
        cell = (maximum_indices.long() * D + torch.arange(D)).reshape(-1)
        return (
            embedding_dense_backward(rows, cell, num_weights * D, -1, False)
            .reshape(num_weights, D)
            .to(dtype)
        )
    idx = indices.reshape(-1).long()
    bag = _bag_of_each_index(idx, offsets, offset2bag, B)
    inside = bag >= 0
    rows = torch.where(inside.unsqueeze(1), g[bag.clamp(min=0)], 0.0)  # (n, D)
    if per_sample_weights is not None:
        rows = rows * per_sample_weights.reshape(-1).float().unsqueeze(1)
    if mode == MEAN:
        rows = rows / bag_size.clamp(min=1)[bag.clamp(min=0)].float().unsqueeze(1)
    ids = torch.where(inside, idx, padding_idx if padding_idx >= 0 else num_weights)
    pad = padding_idx if padding_idx >= 0 else num_weights  # the entries outside any bag
    out = embedding_dense_backward(rows, ids, num_weights + 1, pad, scale_grad_by_freq)
    return out[:num_weights].to(dtype)


def per_sample_weights_backward(grad, weight, indices, offsets, offset2bag, mode, padding_idx=-1):
    """``aten::_embedding_bag_per_sample_weights_backward``: entry i's gradient is the dot
    of its bag's gradient row and its weight row, float32 products summed over the
    columns in the SUM order; 0 for padding."""
    dtype = check_float("aten::_embedding_bag_per_sample_weights_backward", grad, weight)
    idx = indices.reshape(-1).long()
    bag = _bag_of_each_index(idx, offsets, offset2bag, grad.size(0))
    keep = bag >= 0
    if padding_idx >= 0:
        keep &= idx != padding_idx
    prod = grad.float()[bag.clamp(min=0)] * weight.float()[idx]  # (n, D)
    return torch.where(keep, _sum_f64(prod, [1]), 0.0).to(dtype)


def _reference(weight, indices, offsets, **kwargs):
    """torch's embedding_bag in float64, rounded to the weight's dtype."""
    psw = kwargs.pop("per_sample_weights", None)
    psw = None if psw is None else psw.double()
    return torch.nn.functional.embedding_bag(
        indices, weight.double(), offsets, per_sample_weights=psw, **kwargs
    ).to(weight.dtype)
