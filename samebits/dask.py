"""Dask integration (extra ``samebits[dask]``): exact reductions whose bits do not
depend on ``chunks`` or ``split_every``, and batch prediction under the mode whose
outputs do not depend on partitions or workers."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from samebits.errors import UnsupportedInputError


class _Partial:
    """An exact partial sum: integer value (units of 2^-1074) and special-value flags.
    Addition is integer addition and a bit OR: associative and commutative."""

    __slots__ = ("flags", "n")

    def __init__(self, n: int, flags: int) -> None:
        self.n, self.flags = n, flags

    def __add__(self, other: _Partial) -> _Partial:
        return _Partial(self.n + other.n, self.flags | other.flags)

    __radd__ = __add__

    def __float__(self) -> float:  # only for dask's meta inference on empty blocks
        return 0.0


def _chunk(x: np.ndarray, axis: tuple[int, ...], keepdims: bool) -> np.ndarray:
    import torch

    from samebits.exact._core import states
    from samebits.exact._round import state_to_int

    t = torch.from_numpy(np.ascontiguousarray(x))
    st, fl, _, _ = states(t, list(axis))
    shape = [1 if d in axis else x.shape[d] for d in range(x.ndim)]
    out = np.empty(len(st), dtype=object)
    for i in range(len(st)):
        out[i] = _Partial(state_to_int(st[i]), int(fl[i]))
    return out.reshape(shape)


def _combine(x: np.ndarray, axis: tuple[int, ...], keepdims: bool) -> np.ndarray:
    return np.sum(x, axis=axis, keepdims=True)  # object dtype: exact Python-int addition


def _aggregate_for(dtype: np.dtype, divide_by: int | None):
    def aggregate(x: np.ndarray, axis: tuple[int, ...], keepdims: bool) -> np.ndarray:
        from samebits.exact._round import FORMATS, SCALE, round_int, round_rational

        total = np.sum(x, axis=axis, keepdims=keepdims)
        flat = np.asarray(total, dtype=object).reshape(-1)
        fmt = FORMATS[np.dtype(dtype).name]
        vals = np.empty(flat.shape, dtype=np.float64)
        for i, p in enumerate(flat):
            if p.flags & 1 or (p.flags & 6) == 6:
                vals[i] = math.nan
            elif p.flags & 6:
                vals[i] = math.inf if p.flags & 2 else -math.inf
            elif divide_by is not None:
                vals[i] = round_rational(p.n, divide_by, SCALE, fmt) if divide_by else math.nan
            else:
                vals[i] = round_int(p.n, SCALE, fmt)
        return vals.astype(dtype).reshape(np.shape(total))

    return aggregate


def _reduce(arr, axis, keepdims: bool, split_every, mean: bool):
    import dask.array as da

    if arr.dtype.kind in "biu" and not mean:
        return arr.sum(axis=axis, keepdims=keepdims, split_every=split_every)
    if arr.dtype.kind == "c":
        raise UnsupportedInputError(f"complex dtype {arr.dtype} is not supported")
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    if arr.dtype.name not in ("float64", "float32", "float16"):
        raise UnsupportedInputError(f"dtype {arr.dtype} is not supported")
    axes = (
        tuple(range(arr.ndim))
        if axis is None
        else ((axis,) if isinstance(axis, int) else tuple(axis))
    )
    axes = tuple(a % arr.ndim for a in axes)
    count = math.prod(arr.shape[a] for a in axes) if mean else None
    return da.reduction(
        arr,
        _chunk,
        _aggregate_for(arr.dtype, count),
        combine=_combine,
        axis=axes,
        keepdims=keepdims,
        dtype=arr.dtype,
        split_every=split_every,
        concatenate=True,
        meta=np.empty((0,) * (arr.ndim if keepdims else arr.ndim - len(axes)), dtype=arr.dtype),
    )


def exact_sum(
    arr, axis: int | Sequence[int] | None = None, keepdims: bool = False, split_every=None
):
    """Correctly rounded exact sum of a Dask array; the same bits for any chunking
    and any ``split_every``. Returns a lazy Dask array."""
    return _reduce(arr, axis, keepdims, split_every, mean=False)


def exact_mean(
    arr, axis: int | Sequence[int] | None = None, keepdims: bool = False, split_every=None
):
    """Correctly rounded exact mean of a Dask array (lazy)."""
    return _reduce(arr, axis, keepdims, split_every, mean=True)


def _run_model(
    model: Callable, rows: Sequence[Any] | np.ndarray, batch_size: int
) -> list[np.ndarray]:
    import torch

    from samebits._mode import batch_invariant

    outs: list[np.ndarray] = []
    with torch.inference_mode(), batch_invariant():
        for s in range(0, len(rows), batch_size):
            chunk = rows[s : s + batch_size]
            x = (
                torch.from_numpy(np.ascontiguousarray(chunk))
                if isinstance(chunk, np.ndarray)
                else torch.stack([torch.as_tensor(r) for r in chunk])
            )
            y = model(x)
            outs.extend(np.asarray(row) for row in y.detach().cpu().numpy())
    return outs


def predict(model: Callable, collection, batch_size: int = 32):
    """Batch prediction over a Dask bag (of array-like items), array (rows along
    axis 0) or DataFrame (rows of its values), run under ``batch_invariant()`` on
    the workers. Outputs are bitwise identical to single-process prediction for any
    number of partitions or workers. Returns a lazy collection of the same kind
    (a Dask array for arrays and DataFrames)."""
    import dask.array as da
    import dask.bag as db

    if batch_size < 1:
        raise UnsupportedInputError(f"batch_size={batch_size}: expected >= 1")
    if isinstance(collection, db.Bag):
        return collection.map_partitions(lambda part: _run_model(model, list(part), batch_size))
    try:
        import dask.dataframe as dd

        if isinstance(collection, dd.DataFrame):
            collection = collection.to_dask_array(lengths=True)
    except ImportError:
        pass
    if isinstance(collection, da.Array):
        arr = collection.rechunk({i: -1 for i in range(1, collection.ndim)})

        def block(b: np.ndarray) -> np.ndarray:
            outs = _run_model(model, b, batch_size)
            return np.stack(outs) if outs else np.empty((0,), dtype=np.float32)

        sample = _run_model(model, np.zeros((1, *arr.shape[1:]), dtype=arr.dtype), 1)[0]
        return arr.map_blocks(
            block,
            dtype=sample.dtype,
            chunks=(arr.chunks[0], *sample.shape),
            drop_axis=list(range(1, arr.ndim)) if sample.ndim == 0 else None,
            new_axis=None,
        )
    raise UnsupportedInputError(
        f"predict: expected a dask bag, array or DataFrame, got {type(collection).__name__}"
    )


__all__ = ["exact_mean", "exact_sum", "predict"]
