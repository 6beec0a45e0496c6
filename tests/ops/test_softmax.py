import math

import pytest
import torch

import samebits
from samebits.ops import softmax
from tests.conftest import TOL, same_bits


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("dim", [-1, 0, 1])
def test_matches_reference(dtype, dim):
    x = (torch.randn(6, 11, 5, generator=torch.Generator().manual_seed(0)) * 4).to(dtype)
    torch.testing.assert_close(softmax.softmax(x, dim), softmax._reference(x, dim), **TOL[dtype])
    ref = torch.log_softmax(x.double(), dim).to(dtype)
    torch.testing.assert_close(softmax.log_softmax(x, dim), ref, **TOL[dtype])


def test_half_to_float_and_special_values():
    x = torch.tensor([[1.0, -math.inf, 2.0], [-math.inf] * 3, [math.nan, 0.0, 1.0]])
    out = softmax.softmax(x, -1)
    assert out[0, 1] == 0 and torch.isnan(out[1]).all() and torch.isnan(out[2]).all()
    torch.testing.assert_close(out[0], torch.softmax(x[0], -1))
    assert softmax.softmax(x.bfloat16(), -1, half_to_float=True).dtype == torch.float32
    masked = softmax.masked_softmax_f32(x[:2])
    assert torch.equal(masked[1], torch.zeros(3))  # fully masked row -> zeros in attention


def test_masked_positions_add_nothing():
    """-inf anywhere in the row leaves the other outputs' bits unchanged."""
    row = torch.randn(9, generator=torch.Generator().manual_seed(1))
    with samebits.batch_invariant():
        alone = torch.softmax(row, -1)
        for pad in (1, 3, 8):
            left = torch.cat([torch.full((pad,), -math.inf), row])
            right = torch.cat([row, torch.full((pad,), -math.inf)])
            assert same_bits(torch.softmax(left, -1)[pad:], alone)
            assert same_bits(torch.softmax(right, -1)[:9], alone)
