"""Invariant matrix products: mm, addmm, bmm, baddbmm, mv, addmv, dot, linear.

Reduction order over K, for output (i, j), is chosen by the role of the reduced
dimension, which the op names, never by strides, contiguity or which sizes are 1:

* ``linear`` reduces over a weight's input features: **DOT** order, eight
  fused-multiply-add lanes over k = l, l+8, ... then a fixed lane tree; in bfloat16
  the **PAIR** order instead, what one lane of AVX512_BF16's VDPBF16PS computes: one
  accumulator over the pairs of k in order, two FMAs per pair (odd k first) with
  denormals flushed. CPUs without the instruction emulate it to the bit. The weight is
  read in place (it is K-contiguous in ``x @ W.T``), which is what makes DOT fast.
* every generic product (``mm``, ``addmm``, ``bmm``, ``baddbmm``, ``mv``, ``addmv``,
  ``dot``, ``matmul``, ``einsum``) reduces over an index whose role the op does not know
  (features, keys, or the batch itself when it sits in B's columns): **SEQ** order, one
  fused multiply-add per k in increasing k, from +0. An output's chain depends on its
  own row of A and column of B alone, so the batch may sit on any axis (rows of A,
  columns of B, the batch of bmm) at any size, and zero terms (masked keys, padding
  along K) add nothing, so attention written as matmuls stays padding-invariant.

Threads split the output tiles only; K is never split. Accumulation is float32;
bfloat16 / float16 inputs are read exactly and the result is rounded once to the dtype.
"""

from __future__ import annotations

import ctypes
import math

import torch

from samebits import _native
from samebits.errors import UnsupportedInputError
from samebits.ops._common import (
    NATIVE,
    broadcast_shapes,
    canonical_nan,
    check_float,
    is_exact_dtype,
    narrow,
    native_view,
)


def bmm_f32(
    a: torch.Tensor, b: torch.Tensor, order: str | None = None, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """(batch, M, K) @ (batch, K, N) -> float32 (batch, M, N), invariant order.

    Strides are passed through as they are (batch stride 0 broadcasts); the kernel
    packs blocks of both operands itself, so weights are never copied. ``order``
    is "seq" (the default: generic products), "dot" (linear's weights) or "lanes".
    In bfloat16, "dot" is the PAIR order (VDPBF16PS's, see gemm_bf16.c) and "lanes"
    the eight-lane float32 DOT order that the fused attention kernel's scores use;
    in float32 the two are the same.
    ``bias`` (N,) is added in the epilogue: one float add per output, as ``acc + bias``.
    """
    batch, M, K = a.shape
    N = b.size(-1)
    out = torch.empty(batch, M, N, dtype=torch.float32)
    if out.numel() == 0:
        return out
    if K == 0:
        return out.zero_()
    if order not in (None, "dot", "seq", "lanes"):
        raise ValueError(f"order must be 'dot', 'seq' or 'lanes', not {order!r}")
    dot = order not in (None, "seq")
    a, dt = native_view(a)
    b, dtb = native_view(b)
    if dt != dtb:
        raise UnsupportedInputError(f"matmul operands differ in dtype: {a.dtype} and {b.dtype}")
    if dot:  # the DOT kernels read K-contiguous rows
        a = a if a.stride(-1) == 1 else a.contiguous()
        b = b if b.stride(-2) == 1 else b.transpose(-1, -2).contiguous().transpose(-1, -2)
    bias_ptr, bias_dt = None, 0
    if bias is not None:
        bias, bias_dt = native_view(bias.contiguous())
        bias_ptr = bias.data_ptr()
    status = _native.lib().sb_gemm(
        a.data_ptr(),
        a.stride(1),
        a.stride(2),
        a.stride(0) if batch > 1 else 0,
        b.data_ptr(),
        b.stride(1),
        b.stride(2),
        b.stride(0) if batch > 1 else 0,
        out.data_ptr(),
        N,
        M * N,
        batch,
        M,
        N,
        K,
        bias_ptr,
        bias_dt,
        dt,
        (2 if order == "lanes" else 1) if dot else 0,
        _native.nthreads(),
    )
    _check_status(status)
    return out


def _check_status(status: int) -> None:
    if status == -1:
        raise MemoryError("samebits matmul: could not allocate its packing buffers")
    if status != 0:
        raise RuntimeError(f"samebits matmul: kernel rejected its arguments (status {status})")


def _row_bias(bias: torch.Tensor | None, n: int, beta: float, alpha: float) -> torch.Tensor | None:
    """The bias if it can be fused into the kernel epilogue: (N,), unscaled."""
    if bias is not None and beta == 1 and alpha == 1 and bias.dim() == 1 and bias.size(0) == n:
        return bias
    return None


def _finish(
    acc: torch.Tensor,
    dtype: torch.dtype,
    bias: torch.Tensor | None = None,
    beta: float = 1,
    alpha: float = 1,
) -> torch.Tensor:
    """beta * bias + alpha * acc, each step one correctly rounded op, then one rounding."""
    post = False  # torch's own ops ran after the kernel: their NaNs are the CPU's
    if alpha != 1:
        acc, post = acc * alpha, True
    if bias is not None and beta != 0:
        b = bias.float()
        if beta != 1:
            b = b * beta
        acc, post = acc + b, True
    if dtype != torch.float32:
        return narrow(acc, dtype)
    return canonical_nan(acc) if post else acc


def _check(op: str, a: torch.Tensor, b: torch.Tensor, adim: int, bdim: int) -> torch.dtype:
    if a.dim() != adim or b.dim() != bdim:
        raise UnsupportedInputError(
            f"{op}: expected {adim}-D and {bdim}-D tensors, got shapes {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return check_float(op, a, b)


def mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if is_exact_dtype(a.dtype):
        return NotImplemented
    dtype = _check("aten::mm", a, b, 2, 2)
    if a.size(1) != b.size(0):
        raise UnsupportedInputError(
            f"aten::mm: shapes {tuple(a.shape)} and {tuple(b.shape)} do not chain"
        )
    return _finish(bmm_f32(a.unsqueeze(0), b.unsqueeze(0))[0], dtype)


def addmm(
    bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *, beta: float = 1, alpha: float = 1
) -> torch.Tensor:
    if is_exact_dtype(a.dtype):
        return NotImplemented
    dtype = _check("aten::addmm", a, b, 2, 2)
    fused = _row_bias(bias, b.size(1), beta, alpha)
    acc = bmm_f32(a.unsqueeze(0), b.unsqueeze(0), bias=fused)[0]
    return _finish(acc, dtype) if fused is not None else _finish(acc, dtype, bias, beta, alpha)


def bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if is_exact_dtype(a.dtype):
        return NotImplemented
    dtype = _check("aten::bmm", a, b, 3, 3)
    return _finish(bmm_f32(a, b), dtype)


def baddbmm(
    bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *, beta: float = 1, alpha: float = 1
) -> torch.Tensor:
    if is_exact_dtype(a.dtype):
        return NotImplemented
    dtype = _check("aten::baddbmm", a, b, 3, 3)
    return _finish(bmm_f32(a, b), dtype, bias, beta, alpha)


def mv(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    if is_exact_dtype(a.dtype):
        return NotImplemented
    dtype = _check("aten::mv", a, v, 2, 1)
    return _finish(bmm_f32(a.unsqueeze(0), v.view(1, -1, 1))[0, :, 0], dtype)


def addmv(
    bias: torch.Tensor, a: torch.Tensor, v: torch.Tensor, *, beta: float = 1, alpha: float = 1
) -> torch.Tensor:
    if is_exact_dtype(a.dtype):
        return NotImplemented
    dtype = _check("aten::addmv", a, v, 2, 1)
    return _finish(bmm_f32(a.unsqueeze(0), v.view(1, -1, 1))[0, :, 0], dtype, bias, beta, alpha)


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if is_exact_dtype(a.dtype):
        return NotImplemented
    dtype = _check("aten::dot", a, b, 1, 1)
    return _finish(bmm_f32(a.view(1, 1, -1), b.view(1, -1, 1)).reshape(()), dtype)


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batched ``torch.matmul`` (both operands >= 2-D, one of them > 2-D) as one batched
    product in SEQ order, broadcasting the batch dims without folding them into M.
    Other ranks go to mm / mv / dot."""
    if is_exact_dtype(a.dtype) or a.dim() < 2 or b.dim() < 2 or (a.dim() == 2 and b.dim() == 2):
        return NotImplemented
    dtype = check_float("aten::matmul", a, b)
    M, K, N = a.size(-2), a.size(-1), b.size(-1)
    if b.size(-2) != K:
        raise UnsupportedInputError(
            f"aten::matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} do not chain"
        )
    batch = broadcast_shapes("aten::matmul", tuple(a.shape[:-2]), tuple(b.shape[:-2]))
    a3 = a.expand(*batch, M, K).reshape(-1, M, K)  # (B*, M, K)
    b3 = b.expand(*batch, K, N).reshape(-1, K, N)  # (B*, K, N)
    return _finish(bmm_f32(a3, b3), dtype).view(*batch, M, N)


def einsum(equation: str, tensors, *, path=None) -> torch.Tensor:
    """Two-operand ``torch.einsum`` as one batched product in SEQ order (the
    contracted indices flattened in B's subscript order). Other forms (one or three
    operands, ellipsis, repeated or summed-out indices) go to torch's decomposition
    into covered ops."""
    if len(tensors) != 2 or "..." in equation or is_exact_dtype(tensors[0].dtype):
        return NotImplemented
    a, b = tensors
    lhs, arrow, out = equation.replace(" ", "").partition("->")
    ia, comma, ib = lhs.partition(",")
    if not comma or (arrow and not out):  # one operand, or a scalar result
        return NotImplemented
    if not arrow:  # implicit output: indices seen once, sorted
        out = "".join(sorted(c for c in ia + ib if (ia + ib).count(c) == 1))
    if (
        len(set(ia)) != len(ia)
        or len(set(ib)) != len(ib)
        or len(ia) != a.dim()
        or len(ib) != b.dim()
        or any(c not in ia + ib for c in out)
        or any(c not in out and (c in ia) != (c in ib) for c in ia + ib)
    ):
        return NotImplemented
    dtype = check_float("aten::einsum", a, b)
    batch = [c for c in out if c in ia and c in ib]
    free_a = [c for c in ia if c in out and c not in ib]
    free_b = [c for c in ib if c in out and c not in ia]
    contracted = [c for c in ib if c not in out]
    size = {c: n for c, n in zip(ia + ib, [*a.shape, *b.shape], strict=True)}
    bsz = [max(a.size(ia.index(c)), b.size(ib.index(c))) for c in batch]
    M = math.prod(size[c] for c in free_a)
    N = math.prod(size[c] for c in free_b)
    K = math.prod(size[c] for c in contracted)
    a_p = a.permute([ia.index(c) for c in batch + free_a + contracted])
    b_p = b.permute([ib.index(c) for c in batch + contracted + free_b])
    a3 = a_p.expand(*bsz, *a_p.shape[len(batch) :]).reshape(-1, M, K)  # (B*, M, K)
    b3 = b_p.expand(*bsz, *b_p.shape[len(batch) :]).reshape(-1, K, N)  # (B*, K, N)
    res = _finish(bmm_f32(a3, b3), dtype)
    res = res.view(*bsz, *[size[c] for c in free_a], *[size[c] for c in free_b])
    have = batch + free_a + free_b
    return res.permute([have.index(c) for c in out])


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight.T + bias`` in DOT order: x rows and weight rows are both K-contiguous."""
    if is_exact_dtype(x.dtype):
        return NotImplemented
    dtype = check_float("aten::linear", x, weight, bias)
    if weight.dim() != 2 or x.size(-1) != weight.size(1):
        raise UnsupportedInputError(
            f"aten::linear: input {tuple(x.shape)} does not match weight {tuple(weight.shape)}"
        )
    lead = x.shape[:-1]
    out = _linear_direct(x, weight, bias, dtype)
    if out is not None:
        return out.view(*lead, weight.size(0))
    x2 = x.reshape(1, -1, x.size(-1))  # (1, M, K)
    fused = _row_bias(bias, weight.size(0), 1, 1)
    acc = bmm_f32(x2, weight.t().unsqueeze(0), order="dot", bias=fused)[0]  # (M, N)
    out = _finish(acc, dtype) if fused is not None else _finish(acc, dtype, bias)
    return out.view(*lead, weight.size(0))


def _linear_direct(x, weight, bias, dtype) -> torch.Tensor | None:
    """The common linear (contiguous rows, K-contiguous weight, a (N,) bias of the
    same dtype) straight to the DOT kernel: the exact call bmm_f32 would make, with
    ~15 us less Python per call, which decode-sized products notice. None when the
    general path is needed."""
    N, K = weight.shape
    if (
        dtype not in NATIVE
        or weight.dtype != dtype
        or weight.stride(1) != 1
        or not x.is_contiguous()
        or x.numel() == 0
        or N == 0
        or (bias is not None and (bias.dtype != dtype or bias.shape != (N,) or bias.stride(0) != 1))
    ):
        return None
    M = x.numel() // K
    code = _native.dtype_code(dtype)
    if dtype == torch.bfloat16:  # the PAIR kernel rounds each result once, as .to() would
        out = torch.empty(M, N, dtype=dtype)
        _gemm_map(
            x.data_ptr(), K, 1, 0, weight.data_ptr(), weight.stride(0), 0,
            out.data_ptr(), M * N, 1, M, N, K, bias, code, code,
            (M, M, 0, N, 1, 0, 0, 0, 0, 1),  # row-major, bf16 C
        )  # fmt: skip
        return out
    out = torch.empty(M, N, dtype=torch.float32)
    status = _native.lib().sb_gemm(
        x.data_ptr(), K, 1, 0,
        weight.data_ptr(), 1, weight.stride(0), 0,
        out.data_ptr(), N, M * N, 1, M, N, K,
        None if bias is None else bias.data_ptr(), code,
        code, 1, _native.nthreads(),
    )  # fmt: skip
    _check_status(status)
    return out


def omap_array(omap) -> ctypes.Array:
    """sb_gemm_map's map argument: struct omap's 12 int64 (wq, keep, so, si, sj, ioff,
    arun, astride, awq, flags, aw, aws); the ones not given are 0 (none)."""
    if len(omap) > 12:
        raise ValueError(f"an output map has 12 entries, got {len(omap)}")
    return (ctypes.c_int64 * 12)(*omap)


def _gemm_map(
    a, lda, ka, sa, w, ldw, sw, c, sc, batch, M, N, K, bias, bdt, dt, omap, w_kmajor=False
) -> None:
    """C = A (M, K) @ W (N, K).T (+ bias) per batch item, DOT (float32) or PAIR
    (bfloat16) order over K, each result placed by ``omap`` (wq, keep, so, si, sj,
    ioff, arun, astride, awq, flags, aw, aws; the last ones may be left out): see
    struct omap in samebits/_native/gemm.c. W is K-contiguous with row stride ``ldw``,
    or with ``w_kmajor`` K-major: element (k, j) at W[k * ldw + j]. A is K-contiguous
    (ka == 1), in runs of arun elements astride apart when arun > 0, its rows in groups
    of aw (aws apart) when aw > 0; or, for float32, M-contiguous (lda == 1, k stride
    ka; with awq > 0, row R at (R // awq) * sa + R % awq)."""
    m = omap_array(omap)
    bk, bn = (ldw, 1) if w_kmajor else (1, ldw)
    status = _native.lib().sb_gemm_map(
        a, lda, ka, sa, w, bk, bn, sw, c, 0, sc, batch, M, N, K,
        None if bias is None else bias.data_ptr(), bdt, dt, 1, _native.nthreads(), m,
    )  # fmt: skip
    _check_status(status)


def _reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Plain float64 product, rounded to ``a.dtype``: what the kernels are checked against."""
    return (a.double() @ b.double()).to(a.dtype)
