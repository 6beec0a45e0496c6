"""Exact all-reduce over ``torch.distributed``: the bits do not depend on the world size.

Integer SUM is associative, so ranks exchange exact integer states instead of floats:
each value (or each local partial sum) becomes a superaccumulator state of 32-bit
digits, an ``all_reduce(SUM)`` on int64 adds the states exactly (a sum of up to 2^31
digits fits), and every rank rounds the same integer once. The same code works on
gloo, NCCL and MPI. Only the range of digits that any rank uses is sent: one
``all_reduce(MAX)`` first agrees on it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from samebits.errors import UnsupportedInputError
from samebits.exact._core import _as_tensor, _dims, _dtype_name, states
from samebits.exact._round import FORMATS, NCH, finish, normalize

_MAX_DIMS = 8


def _check_same_shape(shape: list[int], dtype: str, group) -> None:
    """All ranks gather every rank's (ndim, dims, dtype); a mismatch raises the same
    error on every rank instead of hanging in a later collective."""
    codes = {n: i for i, n in enumerate(("float64", "float32", "bfloat16", "float16"))}
    mine = torch.full((_MAX_DIMS + 2,), -1, dtype=torch.int64)
    if len(shape) > _MAX_DIMS:
        raise UnsupportedInputError(f"at most {_MAX_DIMS} dims are supported, got {len(shape)}")
    mine[0], mine[1] = len(shape), codes.get(dtype, -2)
    mine[2 : 2 + len(shape)] = torch.tensor(shape, dtype=torch.int64)
    world = dist.get_world_size(group)
    gathered = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(gathered, mine, group=group)
    if any(not torch.equal(g, gathered[0]) for g in gathered):
        desc = []
        for r, g in enumerate(gathered):
            nd = int(g[0])
            desc.append(
                f"rank {r}: shape {tuple(int(v) for v in g[2 : 2 + nd])} dtype code {int(g[1])}"
            )
        raise UnsupportedInputError(
            "ranks disagree on the tensor shape or dtype: " + "; ".join(desc)
        )


def _reduce_states(st: np.ndarray, fl: np.ndarray, group) -> tuple[np.ndarray, np.ndarray]:
    """Exact cross-rank sum of normalized states (rows) and OR of special-value flags."""
    nz = np.nonzero(st.any(axis=0))[0]
    lo, hi = (int(nz.min()), int(nz.max())) if nz.size else (NCH - 1, 0)
    span = torch.tensor([-lo, hi], dtype=torch.int64)
    dist.all_reduce(span, op=dist.ReduceOp.MAX, group=group)
    lo, hi = -int(span[0]), int(span[1])
    out = np.zeros_like(st)
    if hi >= lo:
        # digits lie in [0, 2^32) except the top one, so a SUM over < 2^31 ranks fits int64
        part = torch.from_numpy(np.ascontiguousarray(st[:, lo : hi + 1]))
        dist.all_reduce(part, op=dist.ReduceOp.SUM, group=group)
        out[:, lo : hi + 1] = part.numpy()
    flags = torch.from_numpy(fl.astype(np.int64))
    # OR of bit flags through three MAX reductions (one per bit)
    bits = torch.stack([(flags >> b) & 1 for b in range(3)])
    dist.all_reduce(bits, op=dist.ReduceOp.MAX, group=group)
    fl_all = (bits[0] | (bits[1] << 1) | (bits[2] << 2)).numpy().astype(np.int32)
    return normalize(out), fl_all


def all_reduce_exact(tensor: torch.Tensor, group=None) -> torch.Tensor:
    """In place, like ``dist.all_reduce(tensor, SUM)``, but each element is the
    correctly rounded exact sum over ranks: identical bits for any world size."""
    t, _ = _as_tensor(tensor, "all_reduce_exact")
    if not t.dtype.is_floating_point:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)  # integers: exact already
        return tensor
    name = _dtype_name(t)
    _check_same_shape(list(t.shape), name, group)
    flat = t.reshape(-1, 1)  # each element is a sum of one value on this rank
    st, fl, _, _ = states(flat, [1])
    st, fl = _reduce_states(st, fl, group)
    vals = finish(st, fl, FORMATS[name])
    tensor.copy_(torch.from_numpy(vals).to(t.dtype).reshape(t.shape))
    return tensor


def exact_sum_distributed(local: torch.Tensor, dim: int = 0, group=None) -> torch.Tensor:
    """The exact sum along ``dim`` of data sharded across ranks along ``dim``: bit for
    bit ``exact_sum`` of the concatenation, for any world size and any split. Every
    rank gets the result. Shards may differ in length along ``dim`` (even be empty)."""
    t, _ = _as_tensor(local, "exact_sum_distributed")
    if not t.dtype.is_floating_point:
        raise UnsupportedInputError(
            f"exact_sum_distributed: integer dtype {t.dtype}; use dist.all_reduce"
        )
    name = _dtype_name(t)
    (d,) = _dims(t, dim)
    shape = [s if i != d else -1 for i, s in enumerate(t.shape)]  # dim's length may differ
    _check_same_shape(shape, name, group)
    st, fl, kept_shape, _ = states(t, [d])
    st, fl = _reduce_states(st, fl, group)
    vals = finish(st, fl, FORMATS[name])
    return (
        torch.from_numpy(vals).to(t.dtype).reshape(kept_shape)
        if kept_shape
        else torch.tensor(vals[0] if vals.size else 0.0, dtype=t.dtype)
    )


__all__ = ["all_reduce_exact", "exact_sum_distributed"]
