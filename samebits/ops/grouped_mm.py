"""Invariant grouped matrix products: ``aten::_grouped_mm`` (``F.grouped_mm``), the MoE
experts' GEMM that transformers' default ``grouped_mm`` experts path calls.

Forms (torch's schema: ``offs`` are the groups' cumulative ends along the jagged dim):

* 2D x 3D with offs: ``out[s:e] = a[s:e] @ b[g]`` (tokens sorted by expert, (E, K, N)
  expert weights); rows past ``offs[-1]`` are zeros (torch leaves them uninitialized);
* 3D x 3D, no offs: ``out[g] = a[g] @ b[g]``;
* 3D x 2D with offs: ``out[:, s:e] = a[g] @ b[:, s:e]`` (the jagged dim is N);
* 2D x 2D with offs: ``out[g] = a[:, s:e] @ b[s:e]`` (the jagged dim is K: the tokens of
  group g, as in the weights' gradient).

Order over K, by the role of the reduced index (docs/design.md, "GROUPED"): when an
operand is 3D it holds per-group weights and K is their input features, so each output
takes ``linear``'s order: **DOT** in float32 (and float16, widened), **PAIR** in
bfloat16, exactly the chain ``F.linear(row, b[g].T)`` computes. A token's row thus has
the same bits whatever group sizes surround it, and whether the experts run through
``_grouped_mm``, transformers' eager loop of ``F.linear`` or a batch of one. In the 2D
x 2D form K is the tokens themselves (the batch): **SEQ**, like every generic product,
so a group's zero rows add nothing. Accumulation is float32; the result is rounded
once to the output dtype, after the optional per-group bias of the 3D-weight forms
(one float add, as linear's epilogue).
"""

from __future__ import annotations

import torch

from samebits.errors import UnsupportedInputError
from samebits.ops._common import check_float, is_exact_dtype
from samebits.ops.matmul import bmm_f32

OP = "aten::_grouped_mm"


def _ends(offs: torch.Tensor | None, groups: int, length: int, what: str) -> list[int]:
    if offs is None or offs.dim() != 1 or offs.numel() != groups:
        raise UnsupportedInputError(
            f"{OP}: {what} needs offs of shape ({groups},), got "
            f"{None if offs is None else tuple(offs.shape)}"
        )
    ends = [int(e) for e in offs.tolist()]
    if any(b < a for a, b in zip([0, *ends], ends, strict=False)) or (ends and ends[-1] > length):
        raise UnsupportedInputError(
            f"{OP}: offs {ends} must be non-decreasing and at most {length}"
        )
    return ends


def _groups(ends: list[int]):
    """(group, start, end) of the non-empty groups."""
    start = 0
    for g, end in enumerate(ends):
        if end > start:
            yield g, start, end
        start = end


def _product(a: torch.Tensor, b: torch.Tensor, order: str, bias_row) -> torch.Tensor:
    """(M, K) @ (K, N) -> float32 (M, N) in ``order``, + bias_row (N,) if given."""
    acc = bmm_f32(a.unsqueeze(0), b.unsqueeze(0), order=order)[0]  # (M, N)
    return acc if bias_row is None else acc + bias_row.float()


def grouped_mm(a, b, offs=None, bias=None, out_dtype=None):
    """``aten::_grouped_mm(self, mat2, offs, bias, out_dtype)``; see the module doc."""
    if is_exact_dtype(a.dtype):
        return NotImplemented
    dtype = check_float(OP, a, b)
    if out_dtype is not None and out_dtype not in (dtype, torch.float32):
        raise UnsupportedInputError(
            f"{OP}: out_dtype={out_dtype} for {dtype} inputs; expected {dtype} or float32"
        )
    out_dtype = out_dtype or dtype
    if a.size(-1) != b.size(-2) and not (a.dim() == 2 and b.dim() == 2):
        raise UnsupportedInputError(
            f"{OP}: shapes {tuple(a.shape)} and {tuple(b.shape)} do not chain"
        )
    if bias is not None and (b.dim() != 3 or bias.shape != (b.size(0), b.size(-1))):
        raise UnsupportedInputError(
            f"{OP}: a bias is taken with 3D weights, as (groups, N); got "
            f"{tuple(bias.shape)} for weights {tuple(b.shape)}"
        )

    def row_bias(g):
        return None if bias is None else bias[g]

    if a.dim() == 2 and b.dim() == 3:  # tokens sorted by group: (S, K) x (E, K, N)
        ends = _ends(offs, b.size(0), a.size(0), "2D x 3D")
        out = torch.zeros(a.size(0), b.size(-1), dtype=out_dtype)  # (S, N)
        for g, s, e in _groups(ends):
            out[s:e] = _product(a[s:e], b[g], "dot", row_bias(g))
        return out
    if a.dim() == 3 and b.dim() == 3:  # (E, M, K) x (E, K, N)
        if offs is not None or a.size(0) != b.size(0):
            raise UnsupportedInputError(
                f"{OP}: 3D x 3D takes no offs and equal group counts, got "
                f"{tuple(a.shape)}, {tuple(b.shape)}"
            )
        acc = bmm_f32(a, b, order="dot")  # (E, M, N)
        if bias is not None:
            acc = acc + bias.float().unsqueeze(1)
        return acc.to(out_dtype)
    if a.dim() == 3 and b.dim() == 2:  # (E, M, K) x (K, N), N jagged
        ends = _ends(offs, a.size(0), b.size(1), "3D x 2D")
        out = torch.zeros(a.size(1), b.size(1), dtype=out_dtype)  # (M, N)
        for g, s, e in _groups(ends):
            out[:, s:e] = _product(a[g], b[:, s:e], "dot", None)
        return out
    if a.dim() == 2 and b.dim() == 2:  # (M, S) x (S, N), K jagged: the tokens
        if a.size(1) != b.size(0):
            raise UnsupportedInputError(
                f"{OP}: shapes {tuple(a.shape)} and {tuple(b.shape)} do not chain"
            )
        ends = _ends(offs, offs.numel() if offs is not None else -1, a.size(1), "2D x 2D")
        out = torch.zeros(len(ends), a.size(0), b.size(1), dtype=out_dtype)  # (E, M, N)
        for g, s, e in _groups(ends):
            out[g] = _product(a[:, s:e], b[s:e], "seq", None)
        return out
    raise UnsupportedInputError(
        f"{OP}: operands must be 2D or 3D, got {tuple(a.shape)} and {tuple(b.shape)}"
    )


def _reference(a, b, offs=None):
    """float64 products per group, rounded to a's dtype (rows past the groups: 0)."""
    if a.dim() == 3 and b.dim() == 3:
        return (a.double() @ b.double()).to(a.dtype)
    ends = offs.tolist()
    if a.dim() == 2 and b.dim() == 3:
        res = torch.zeros(a.size(0), b.size(-1), dtype=torch.float64)
        for g, s, e in _groups(ends):
            res[s:e] = a[s:e].double() @ b[g].double()
        return res.to(a.dtype)
    if a.dim() == 3:
        res = torch.zeros(a.size(1), b.size(1), dtype=torch.float64)
        for g, s, e in _groups(ends):
            res[:, s:e] = a[g].double() @ b[:, s:e].double()
        return res.to(a.dtype)
    res = torch.zeros(len(ends), a.size(0), b.size(1), dtype=torch.float64)
    for g, s, e in _groups(ends):
        res[g] = a[:, s:e].double() @ b[s:e].double()
    return res.to(a.dtype)
