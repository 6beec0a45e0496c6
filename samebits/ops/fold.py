"""Invariant ``col2im`` (``F.fold``, ``nn.Fold``: VOLO's outlooker attention, patch
reassembly): the sum of overlapping patches.

Order (the **FOLD** row of docs/design.md): each output pixel sums the patch entries that
land on it, kernel position by kernel position in row-major (i, j) order (at most one
entry per position), sequentially in double from +0, rounded once. The padding border
is cut afterwards. A pixel's sum depends on its own patches only: not on the batch,
the threads or the other pixels. (``im2col``, ``F.unfold``, moves data and is native.)
"""

from __future__ import annotations

import torch

from samebits.errors import UnsupportedInputError
from samebits.ops._common import check_float, is_exact_dtype


def col2im(x, output_size, kernel_size, dilation, padding, stride):
    """``aten::col2im``: x (N, C * kh * kw, L) or (C * kh * kw, L) -> (N, C, H, W)."""
    if is_exact_dtype(x.dtype):
        return NotImplemented
    dtype = check_float("aten::col2im", x)
    batched = x.dim() == 3
    x = x if batched else x.unsqueeze(0)
    (H, W), (kh, kw), (dh, dw), (ph, pw), (sh, sw) = (
        [int(v) for v in a] for a in (output_size, kernel_size, dilation, padding, stride)
    )
    N, CK, L = x.shape
    Hp, Wp = H + 2 * ph, W + 2 * pw
    oh, ow = (Hp - dh * (kh - 1) - 1) // sh + 1, (Wp - dw * (kw - 1) - 1) // sw + 1
    if CK % (kh * kw) or oh * ow != L or oh <= 0 or ow <= 0:
        raise UnsupportedInputError(
            f"aten::col2im: input {tuple(x.shape)} does not match output {(H, W)} with "
            f"kernel {(kh, kw)}, dilation {(dh, dw)}, padding {(ph, pw)}, stride {(sh, sw)}"
        )
    C = CK // (kh * kw)
    cols = x.reshape(N, C, kh, kw, oh, ow)
    canvas = torch.zeros(N, C, Hp, Wp, dtype=torch.float64)  # (N, C, Hp, Wp)
    for i in range(kh):  # kernel positions in row-major order, one add each
        for j in range(kw):
            rows = slice(i * dh, i * dh + sh * (oh - 1) + 1, sh)
            cols_ = slice(j * dw, j * dw + sw * (ow - 1) + 1, sw)
            canvas[:, :, rows, cols_] += cols[:, :, i, j].double()
    out = canvas[:, :, ph : ph + H, pw : pw + W].to(dtype)
    return out if batched else out[0]


def _reference(x, output_size, **kwargs):
    """torch's fold in float64, rounded to x's dtype."""
    return torch.nn.functional.fold(x.double(), output_size, **kwargs).to(x.dtype)
