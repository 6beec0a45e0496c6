"""Invariant softmax and log_softmax along one dim.

Order: the max is exact (order-free); exp(x - max) is evaluated per element by one
fixed float32 sequence of operations; the sum of the exponentials runs sequentially
in double along the dim, from +0, and each output is rounded once.
A row's bits depend on that row alone, and exact-zero terms (masked positions
whose exp underflows to 0) add nothing wherever they sit.
"""

from __future__ import annotations

import torch

from samebits import _native
from samebits.errors import UnsupportedInputError
from samebits.ops._common import check_float, native_view

SOFTMAX, LOG_SOFTMAX, MASKED_SOFTMAX = 0, 1, 2


def _rows(x: torch.Tensor, dim: int, mode: int, out_dtype: torch.dtype) -> torch.Tensor:
    nd = max(x.dim(), 1)
    if not -nd <= dim < nd:
        raise UnsupportedInputError(f"softmax dim {dim} out of range for shape {tuple(x.shape)}")
    xt = x.reshape(1) if x.dim() == 0 else x.movedim(dim % nd, -1)
    shape = xt.shape
    xc, dt = native_view(xt.contiguous())
    R = shape[-1] if len(shape) else 1
    rows = xc.numel() // R if R else 0
    wide = out_dtype if out_dtype != torch.float16 else torch.float32
    out = torch.empty(shape, dtype=wide)
    if xc.numel():
        status = _native.lib().sb_softmax(
            xc.data_ptr(),
            out.data_ptr(),
            rows,
            R,
            mode,
            dt,
            _native.dtype_code(wide),
            _native.nthreads(),
        )
        if status == -1:
            raise MemoryError(f"samebits softmax: cannot allocate row buffers for {R} columns")
    out = out.to(out_dtype)
    return out.reshape(x.shape) if x.dim() == 0 else out.movedim(-1, dim % nd)


def softmax(x: torch.Tensor, dim: int, half_to_float: bool = False) -> torch.Tensor:
    dtype = check_float("aten::_softmax", x)
    return _rows(x, dim, SOFTMAX, torch.float32 if half_to_float else dtype)


def log_softmax(x: torch.Tensor, dim: int, half_to_float: bool = False) -> torch.Tensor:
    dtype = check_float("aten::_log_softmax", x)
    return _rows(x, dim, LOG_SOFTMAX, torch.float32 if half_to_float else dtype)


def masked_softmax_f32(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim of float32 scores where fully masked rows give zeros."""
    return _rows(scores, -1, MASKED_SOFTMAX, torch.float32)


def _reference(x: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.softmax(x.double(), dim).to(x.dtype)
