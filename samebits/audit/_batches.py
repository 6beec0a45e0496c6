"""Fingerprints of a DataLoader's batches: a digest per leaf (tensor, array, column of
strings or numbers) and per item (row), so two passes can be compared bit for bit
and their items matched up whatever the order."""

from __future__ import annotations

import hashlib
import pickle
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

_SCALARS = (str, bytes, int, float, bool, complex, type(None))


def _digest(*parts: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(len(p).to_bytes(8, "little"))
        h.update(p)
    return h.digest()


def _as_tensor(x: Any) -> torch.Tensor | None:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if type(x).__module__ == "numpy" and hasattr(x, "dtype") and hasattr(x, "shape"):
        try:
            return torch.from_numpy(x.reshape(x.shape))  # ndarray or numpy scalar array
        except TypeError:  # object arrays
            return None
    return None


def leaves(batch: Any, path: str = "batch") -> list[tuple[str, Any]]:
    """(path, leaf) in a stable order: tensors and arrays, lists of scalars (a
    collated column of strings or numbers) and lone scalars."""
    if _as_tensor(batch) is not None:
        return [(path, batch)]
    if isinstance(batch, Mapping):
        return [leaf for k in batch for leaf in leaves(batch[k], f"{path}[{k!r}]")]
    if isinstance(batch, (list, tuple)):
        if batch and all(isinstance(v, _SCALARS) for v in batch):
            return [(path, list(batch))]
        return [leaf for i, v in enumerate(batch) for leaf in leaves(v, f"{path}[{i}]")]
    return [(path, batch)]


def _tensor_rows(t: torch.Tensor) -> list[bytes]:
    """One digest per row along dim 0 (dtype and row shape included)."""
    head = f"{t.dtype}{tuple(t.shape[1:])}".encode()
    flat = t.contiguous().reshape(t.shape[0], -1)
    if flat.shape[1] == 0:
        return [_digest(head)] * t.shape[0]
    raw = flat.view(torch.uint8).numpy()  # (rows, bytes per row)
    return [_digest(head, raw[r].tobytes()) for r in range(t.shape[0])]


def _object_bytes(x: Any) -> bytes:
    """Bytes that stand for a non-tensor leaf: its pickle (a PIL image, a dataclass),
    else its repr; a default repr holds the object's address, which changes per pass."""
    if isinstance(x, _SCALARS):
        return repr(x).encode()
    try:
        return pickle.dumps(x, protocol=4)
    except Exception:  # noqa: BLE001 - unpicklable: the repr is all there is
        return repr(x).encode()


def _whole(x: Any) -> bytes:
    t = _as_tensor(x)
    if t is not None:
        head = f"{t.dtype}{tuple(t.shape)}".encode()
        try:
            flat = t.contiguous().reshape(-1)
            return _digest(head, flat.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        except (RuntimeError, TypeError, NotImplementedError):  # sparse, quantized, ...
            return _digest(head, _object_bytes(t))
    return _digest(_object_bytes(x))


@dataclass(frozen=True)
class BatchPrint:
    """``rows``: the batch size (dim 0 of the first tensor), or None.
    ``cols``: leaf path -> one digest per row, or a 1-tuple when the leaf is not per item.
    ``items``: one digest per row over every per-item leaf."""

    rows: int | None
    cols: dict[str, tuple[bytes, ...]]
    items: tuple[bytes, ...]


def fingerprint_batch(batch: Any) -> BatchPrint:
    if isinstance(batch, (list, tuple)) and batch and all(isinstance(b, Mapping) for b in batch):
        # uncollated items (collate_fn=list): one row per item
        rows = tuple(
            _digest(*(k.encode() + _whole(v) for k, v in leaves(item, ""))) for item in batch
        )
        return BatchPrint(len(batch), {"batch": rows}, rows)
    found = leaves(batch)
    rows = None
    for _, v in found:
        t = _as_tensor(v)
        if t is not None and t.dim() >= 1:
            rows = t.shape[0]
            break
    cols: dict[str, tuple[bytes, ...]] = {}
    per_item: list[str] = []
    for path, v in found:
        t = _as_tensor(v)
        if t is not None and rows is not None and t.dim() >= 1 and t.shape[0] == rows:
            try:
                cols[path] = tuple(_tensor_rows(t))
            except (RuntimeError, TypeError, NotImplementedError):  # sparse, quantized, ...
                cols[path] = tuple(_whole(t[r]) for r in range(rows))
            per_item.append(path)
        elif isinstance(v, list) and rows is not None and len(v) == rows:
            cols[path] = tuple(_digest(repr(x).encode()) for x in v)
            per_item.append(path)
        else:
            cols[path] = (_whole(v),)
    n = rows or 1
    items = tuple(
        _digest(*(cols[p][r] for p in per_item))
        if per_item
        else _digest(*(c[0] for c in cols.values()))
        for r in range(n)
    )
    return BatchPrint(rows, cols, items)


@dataclass(frozen=True)
class Difference:
    batch: int
    key: str | None
    row: int | None
    item: int | None  # position of the item in the pass's stream
    what: str


def item_stream(prints: list[BatchPrint]) -> list[bytes]:
    return [d for p in prints for d in p.items]


def first_difference(a: list[BatchPrint], b: list[BatchPrint]) -> Difference | None:
    """Where pass ``b`` first differs from pass ``a``, or None if bit-identical."""
    start = 0
    for i, (pa, pb) in enumerate(zip(a, b, strict=False)):
        if pa != pb:
            if list(pa.cols) != list(pb.cols):
                return Difference(
                    i,
                    None,
                    None,
                    start,
                    f"batch {i} has leaves {list(pb.cols)}, not {list(pa.cols)}",
                )
            for key in pa.cols:
                ca, cb = pa.cols[key], pb.cols[key]
                if ca == cb:
                    continue
                if len(ca) != len(cb):
                    return Difference(
                        i, key, None, start, f"batch {i} {key} holds {len(cb)} rows, not {len(ca)}"
                    )
                r = next(r for r in range(len(ca)) if ca[r] != cb[r])
                per_item = pa.rows is not None and len(ca) == pa.rows
                return Difference(
                    i,
                    key,
                    r if per_item else None,
                    start + r if per_item else None,
                    f"batch {i}, {'the batch tensor' if key == 'batch' else key}"
                    + (f", row {r} (item {start + r} of the pass)" if per_item else ""),
                )
        start += len(pa.items)
    if len(a) != len(b):
        return Difference(
            min(len(a), len(b)), None, None, start, f"{len(b)} batches instead of {len(a)}"
        )
    return None


def same_items(a: list[BatchPrint], b: list[BatchPrint]) -> bool:
    return Counter(item_stream(a)) == Counter(item_stream(b))


def max_repeats(prints: list[BatchPrint]) -> int:
    """How many times the most repeated item occurs in the pass."""
    c = Counter(item_stream(prints))
    return max(c.values()) if c else 0
