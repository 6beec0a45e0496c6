"""histc (MoE routers count tokens per expert with it): torch's counts, and the same
counts for a row alone and in a batch, at any thread count."""

import math

import pytest
import torch

import samebits
from samebits.ops import histogram
from tests.conftest import same_bits


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize(
    "bins,lo,hi", [(8, 0, 7), (60, 0, 59), (10, -2.5, 3.0), (5, 0, 0), (7, 1.0, 1.0)]
)
def test_counts_match_torch(dtype, bins, lo, hi):
    g = torch.Generator().manual_seed(bins)
    x = (torch.rand(500, generator=g) * 12 - 3).to(dtype)
    x[::7] = x[::7].round()  # values on the edges of integer bins
    if lo != hi:
        x[3] = math.nan  # not counted
    with samebits.batch_invariant():
        got = torch.histc(x, bins, lo, hi)
    assert got.dtype == dtype
    assert torch.equal(got, histogram._reference(x[~x.isnan()], bins, lo, hi))


def test_expert_counts_are_invariant(isa, threads):
    ids = torch.randint(0, 60, (97,), generator=torch.Generator().manual_seed(0)).float()
    with samebits.batch_invariant():
        threads(1)
        alone = torch.histc(ids[:9], 60, 0, 59)
        for t in (2, 3):
            threads(t)
            both = torch.histc(ids, 60, 0, 59) - torch.histc(ids[9:], 60, 0, 59)
            assert same_bits(both, alone)
            out = torch.empty(60)
            torch.histc(ids[:9], 60, 0, 59, out=out)
            assert same_bits(out, alone)
