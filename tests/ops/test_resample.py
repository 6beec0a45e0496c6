import pytest
import torch
import torch.nn.functional as F

import samebits
from samebits.ops import resample
from tests.conftest import TOL, same_bits


def rnd(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


# name -> (item shape, interpolate kwargs)
CASES = {
    "linear": ((3, 17), dict(mode="linear", scale_factor=2.5)),
    "linear_ac": ((3, 17), dict(mode="linear", size=40, align_corners=True)),
    "bilinear": ((3, 9, 11), dict(mode="bilinear", scale_factor=1.7)),
    "bilinear_down_ac": ((3, 16, 15), dict(mode="bilinear", size=(7, 5), align_corners=True)),
    "bicubic": ((2, 8, 9), dict(mode="bicubic", scale_factor=2)),
    "bicubic_ac": ((2, 8, 9), dict(mode="bicubic", size=(13, 4), align_corners=True)),
    "trilinear": ((2, 4, 5, 6), dict(mode="trilinear", scale_factor=(2, 1.5, 0.5))),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", sorted(CASES))
def test_resample_matches_float64_reference(name, dtype):
    item, kw = CASES[name]
    x = rnd(3, *item, seed=1).to(dtype)
    with samebits.batch_invariant():
        out = F.interpolate(x, **kw)
    ref = resample._reference(x, **kw)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, **TOL[dtype])


@pytest.mark.parametrize("name", sorted(CASES))
def test_resample_rows_invariant(name, threads):
    item, kw = CASES[name]
    items = rnd(7, *item, seed=2)
    with samebits.batch_invariant():
        threads(1)
        alone = [F.interpolate(items[i : i + 1], **kw) for i in range(7)]
        threads(3)
        full = F.interpolate(items, **kw)
        cl = (
            F.interpolate(items.to(memory_format=torch.channels_last), **kw)
            if items.dim() == 4
            else full
        )
    for i in range(7):
        assert same_bits(full[i : i + 1], alone[i])
        assert same_bits(cl[i : i + 1].contiguous(), alone[i])


def test_antialias_is_denied():
    with samebits.batch_invariant(), pytest.raises(samebits.NotInvariantError, match="antialias"):
        F.interpolate(rnd(1, 2, 8, 8), scale_factor=0.5, mode="bilinear", antialias=True)
