"""Shared checks for the invariant kernels: dtypes, devices, and the native call."""

from __future__ import annotations

import numpy as np
import torch

from samebits import _native
from samebits.errors import NotInvariantError, UnsupportedInputError

# dtypes with a native kernel; float16 is widened to float32 exactly and rounded
# back once, so it follows the float32 order.
NATIVE = (torch.float32, torch.bfloat16)
WIDENED = (torch.float16,)
FLOATS = NATIVE + WIDENED


def is_exact_dtype(dtype: torch.dtype) -> bool:
    """Integer and bool arithmetic is associative: any order gives the same bits."""
    return not (dtype.is_floating_point or dtype.is_complex)


def check_float(op: str, *tensors: torch.Tensor | None) -> torch.dtype:
    """The common floating dtype of ``tensors``; raise if no invariant kernel takes it."""
    ts = [t for t in tensors if t is not None]
    for t in ts:
        if t.device.type != "cpu":
            raise NotInvariantError(
                op,
                t.dtype,
                t.shape,
                f"tensors on {t.device} have no invariant kernel yet (CPU only)",
            )
    dtype = ts[0].dtype
    if any(t.dtype != dtype for t in ts):
        # the kernels read every operand with one dtype: a mix would be read wrongly
        # (and past the end of the narrower ones); torch refuses the mix too
        raise UnsupportedInputError(
            f"{op}: inputs differ in dtype ({', '.join(str(t.dtype) for t in ts)}); "
            "cast them to one dtype first"
        )
    if dtype not in FLOATS:
        raise NotInvariantError(
            op,
            dtype,
            ts[0].shape,
            "invariant kernels exist for float32, bfloat16 and float16; "
            "cast the model (e.g. model.float()) or use samebits.exact_sum for float64",
        )
    return dtype


def native_view(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``t`` in a dtype the native code reads (float16 widened), and its dtype code."""
    if t.dtype in WIDENED:
        t = t.float()
    return t, _native.dtype_code(t.dtype)


def ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def broadcast_shapes(op: str, *shapes: tuple[int, ...]) -> tuple[int, ...]:
    """torch's broadcasting of plain shape tuples, raising UnsupportedInputError
    naming ``op`` (torch.broadcast_shapes took about 50 us a call, a third of a small
    attention's time in the mode)."""
    n = max(len(sh) for sh in shapes)
    out = []
    for i in range(n):
        d = 1
        for sh in shapes:
            j = i - (n - len(sh))
            if j >= 0 and sh[j] != 1:
                if d not in (1, sh[j]):
                    raise UnsupportedInputError(
                        f"{op}: batch shapes {', '.join(str(tuple(x)) for x in shapes)} "
                        "do not broadcast"
                    )
                d = sh[j]
        out.append(d)
    return tuple(out)


# The canonical quiet NaN of each floating dtype, as the integer of its bits
_CANON_NAN = {
    torch.float32: (torch.int32, 0x7FC00000),
    torch.bfloat16: (torch.int16, 0x7FC0),
    torch.float16: (torch.int16, 0x7E00),
}


def canonical_nan(t: torch.Tensor) -> torch.Tensor:
    """t with every NaN made the canonical quiet NaN, in place (t returned). The kernels
    store canonical NaNs; torch's own ops after them do not: a NaN an op creates is
    negative on x86 and positive on ARM, and torch's vectorized float32 -> bfloat16
    conversion writes 0xffff at the avx2/avx512 dispatch levels but 0x7fc0 at default."""
    if t.dtype in _CANON_NAN and t.numel():
        itype, bits = _CANON_NAN[t.dtype]
        mask = t.isnan()
        t.view(itype).masked_fill_(mask, bits)
    return t


def narrow(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """t converted to dtype (one rounding), its NaNs canonical (see canonical_nan)."""
    if t.dtype == dtype:
        return t
    return canonical_nan(t.to(dtype))


def ieee_sqrt(t: torch.Tensor) -> torch.Tensor:
    """The correctly rounded square root of a CPU tensor (numpy's, IEEE-754's sqrt, in
    the tensor's dtype): torch 2.13's CPU sqrt is not correctly rounded (about 16% of
    float32 and 1% of float64 values in [0, 10) 1 ulp off, measured), so statistics
    computed in double take this one."""
    return torch.from_numpy(np.asarray(np.sqrt(t.detach().contiguous().numpy())))
