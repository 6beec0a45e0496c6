"""Every NaN a kernel writes is the canonical quiet NaN (float32 0x7fc00000, bfloat16
0x7fc0): a NaN an operation creates is negative on x86 and positive on ARM, and which
operand's NaN an instruction passes on differs between instructions, so without this
the same op on two CPUs (or two paths of one) would differ in a NaN's bits."""

import pytest
import torch
import torch.nn.functional as F

import samebits
from tests.conftest import DTYPES

CANON = {torch.float32: 0x7FC00000, torch.bfloat16: 0x7FC0}
INT = {torch.float32: torch.int32, torch.bfloat16: torch.int16}


def nan_bits(y: torch.Tensor) -> set[int]:
    mask = (1 << (8 * y.element_size())) - 1
    return {v & mask for v in y.view(INT[y.dtype])[y.isnan()].tolist()}


def inputs(dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 40, generator=g)
    x[1, 3], x[1, 9] = float("inf"), float("-inf")  # inf - inf, 0 * inf inside sums
    x[2, :] = float("inf")
    x[3, 7] = -float("nan")  # a negative NaN in: canonical out
    w = torch.randn(24, 40, generator=g)
    w[:, 5] = 0.0
    x[4, 5] = float("inf")  # inf * 0
    return x.to(dtype), w.to(dtype)


OPS = {
    "linear": lambda x, w: F.linear(x, w),
    "mm_kn": lambda x, w: x @ w.t().contiguous(),
    "softmax": lambda x, w: torch.softmax(x, -1),
    "log_softmax": lambda x, w: torch.log_softmax(x, -1),
    "layer_norm": lambda x, w: F.layer_norm(x, (40,)),
    "rms_norm": lambda x, w: F.rms_norm(x, (40,)),
    "rsqrt": lambda x, w: torch.rsqrt(x - 1.0),
    "sdpa": lambda x, w: F.scaled_dot_product_attention(
        x.view(1, 1, 5, 40), x.view(1, 1, 5, 40), x.view(1, 1, 5, 40)
    ).view(5, 40),
    "conv2d": lambda x, w: F.conv2d(x.view(1, 5, 2, 20), w.reshape(-1)[:180].reshape(6, 5, 2, 3)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", sorted(OPS))
def test_output_nans_are_canonical_on_every_path(isa, op, dtype):
    x, w = inputs(dtype)
    with samebits.batch_invariant():
        y = OPS[op](x, w)
    assert y.isnan().any(), f"{op}: the inputs must make a NaN"
    assert nan_bits(y) == {CANON[dtype]}, f"{op} {dtype} on {isa}: {sorted(map(hex, nan_bits(y)))}"
