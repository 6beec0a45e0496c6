"""Audit inputs and outputs: build batches of chosen items, call the model, and
pick one item's part of every output tensor."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from samebits.errors import AuditError


def leaves(out: Any, path: str = "out") -> list[tuple[str, torch.Tensor]]:
    """Tensors in nested tuples, lists, dicts and HF ModelOutputs, in a stable order."""
    if isinstance(out, torch.Tensor):
        return [(path, out)]
    if isinstance(out, Mapping) or hasattr(out, "to_tuple") and hasattr(out, "keys"):
        return [leaf for k in out.keys() for leaf in leaves(out[k], f"{path}.{k}")]
    if isinstance(out, (tuple, list)):
        return [leaf for i, v in enumerate(out) for leaf in leaves(v, f"{path}[{i}]")]
    return []


@dataclass
class Items:
    """The audited items and how to batch them.

    kind "tensor": rows of one tensor; "dict": rows of a dict of tensors (HF style);
    "list": items combined by ``collate``.
    """

    kind: str
    n: int
    rows: Any
    collate: Callable[[list], Any] | None = None

    @property
    def can_pad(self) -> bool:
        return self.kind == "dict" and "input_ids" in self.rows and "attention_mask" in self.rows

    def batch(self, idx: Sequence[int]) -> Any:
        if self.kind == "tensor":
            return self.rows[list(idx)]
        if self.kind == "dict":
            return {k: v[list(idx)] if _batched(v, self.n) else v for k, v in self.rows.items()}
        return self.collate([self.rows[i] for i in idx])

    def seq_len(self) -> int:
        return int(self.rows["input_ids"].shape[1])

    def real_positions(self, i: int) -> torch.Tensor:
        return self.rows["attention_mask"][i].nonzero().flatten()

    def padded(self, idx: Sequence[int], side: str, extra: int) -> tuple[dict, list[torch.Tensor]]:
        """Items ``idx`` stripped to their real tokens and padded on ``side`` to the
        longest plus ``extra``; returns the batch and each item's real positions."""
        pad_id = _pad_id(self.rows)
        seqs = [
            {k: v[i][self.real_positions(i)] for k, v in self._seq_fields().items()} for i in idx
        ]
        L = max(len(s["input_ids"]) for s in seqs) + extra
        out = {
            k: torch.full((len(idx), L), pad_id if k == "input_ids" else 0, dtype=v.dtype)
            for k, v in self._seq_fields().items()
        }
        where = []
        for row, s in enumerate(seqs):
            n = len(s["input_ids"])
            sl = slice(L - n, L) if side == "left" else slice(0, n)
            for k, v in s.items():
                out[k][row, sl] = v
            out["attention_mask"][row, sl] = 1
            where.append(torch.arange(L)[sl])
        return out, where

    def stripped(self, i: int) -> dict:
        """Item ``i`` alone with no padding at all."""
        return {k: v[i][self.real_positions(i)][None] for k, v in self._seq_fields().items()}

    def _seq_fields(self) -> dict[str, torch.Tensor]:
        L = self.seq_len()
        return {
            k: v
            for k, v in self.rows.items()
            if isinstance(v, torch.Tensor) and v.dim() == 2 and v.shape == (self.n, L)
        }


def _batched(v: Any, n: int) -> bool:
    return isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == n


def _pad_id(rows: Mapping[str, torch.Tensor]) -> int:
    ids, mask = rows["input_ids"], rows["attention_mask"]
    pads = ids[mask == 0]
    return int(pads[0]) if pads.numel() else 0


def make_items(inputs: Any, collate: Callable[[list], Any] | None = None) -> Items:
    if isinstance(inputs, torch.Tensor):
        if inputs.dim() == 0 or inputs.shape[0] == 0:
            raise AuditError(
                f"cannot infer a batch dimension from a tensor of shape {tuple(inputs.shape)}: "
                "pass a batched tensor (items along dim 0)"
            )
        return Items("tensor", inputs.shape[0], inputs)
    if isinstance(inputs, Mapping):
        tensors = {k: v for k, v in inputs.items() if isinstance(v, torch.Tensor) and v.dim() >= 1}
        if not tensors:
            raise AuditError("the input dict holds no tensors with a batch dimension")
        sizes = {k: v.shape[0] for k, v in tensors.items()}
        if len(set(sizes.values())) != 1:
            raise AuditError(
                f"cannot infer the batch dimension: dim 0 differs between inputs {sizes}"
            )
        n = next(iter(sizes.values()))
        if n == 0:
            raise AuditError("the input dict has an empty batch")
        return Items("dict", n, dict(inputs))
    if isinstance(inputs, Sequence) and not isinstance(inputs, (str, bytes)):
        if not inputs:
            raise AuditError("the input list is empty")
        if collate is None:
            if (
                all(isinstance(x, torch.Tensor) for x in inputs)
                and len({tuple(x.shape) for x in inputs}) == 1
            ):
                collate = torch.stack
            else:
                raise AuditError("a list of inputs needs collate=... to combine items into a batch")
        return Items("list", len(inputs), list(inputs), collate)
    raise AuditError(
        f"cannot infer a batch dimension from inputs of type {type(inputs).__name__}: pass a batched "
        "tensor, a dict of batched tensors, or a list of items with collate="
    )


def accepts(model: Callable, name: str) -> bool:
    fn = getattr(model, "forward", model)
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params


def call(model: Callable, batch: Any) -> list[tuple[str, torch.Tensor]]:
    """Run the model on one batch; the output's tensor leaves."""
    try:
        with torch.inference_mode():
            if isinstance(batch, Mapping):
                if (
                    isinstance(batch, dict)
                    and "attention_mask" in batch
                    and "position_ids" not in batch
                    and accepts(model, "position_ids")
                ):
                    m = batch["attention_mask"]
                    batch = {**batch, "position_ids": (m.long().cumsum(-1) - 1).clamp(min=0)}
                out = model(**batch)
            elif isinstance(batch, tuple):
                out = model(*batch)
            else:
                out = model(batch)
    except Exception as e:  # noqa: BLE001 - reported as the audit's own error
        raise AuditError(f"the model raised {type(e).__name__}: {e}") from e
    found = leaves(out)
    if not found:
        raise AuditError(
            f"the model's output ({type(out).__name__}) contains no tensors to compare"
        )
    return [(p, t.detach()) for p, t in found]


def item_part(t: torch.Tensor, pos: int, n: int, where: torch.Tensor | None = None) -> torch.Tensor:
    """Item ``pos``'s part of a tensor produced for a batch of ``n`` (batch dim 0,
    or folded into dim 0 as n * k rows); ``where``: its real positions along the
    next dim (padding), applied when that dim is the padded length."""
    if t.dim() == 0:
        return t
    if t.shape[0] == n:
        part = t[pos]
    elif n > 1 and t.shape[0] % n == 0:
        k = t.shape[0] // n
        part = t[pos * k : (pos + 1) * k]
    else:
        return t
    if where is not None and part.dim() >= 1 and part.shape[0] > where.max():
        part = part[where]
    return part
