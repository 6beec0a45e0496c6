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


AA = {
    "bilinear_down": ((3, 37, 29), dict(mode="bilinear", scale_factor=0.3)),
    "bilinear_size": ((3, 16, 15), dict(mode="bilinear", size=(7, 21))),
    "bilinear_ac": ((2, 19, 23), dict(mode="bilinear", size=(9, 40), align_corners=True)),
    "bicubic_down": ((2, 40, 33), dict(mode="bicubic", size=(11, 5))),
    "bicubic_mixed": ((2, 17, 21), dict(mode="bicubic", scale_factor=(0.5, 1.7))),
    "bicubic_one": ((2, 9, 7), dict(mode="bicubic", size=(1, 1))),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("name", sorted(AA))
def test_antialias_matches_float64_reference(name, dtype):
    item, kw = AA[name]
    x = rnd(2, *item, seed=3).to(dtype)
    with samebits.batch_invariant():
        out = F.interpolate(x, antialias=True, **kw)
        o2 = torch.empty(0, dtype=dtype)
        if "size" in kw and not kw.get("align_corners"):
            op = torch.ops.aten._upsample_bilinear2d_aa if kw["mode"] == "bilinear" else None
            op = op or torch.ops.aten._upsample_bicubic2d_aa
            op.out(x, kw["size"], False, out=o2)
            assert same_bits(o2, out)
    ref = resample._reference(x, antialias=True, **kw)
    assert out.shape == ref.shape
    tol = TOL[dtype] if dtype == torch.float32 else dict(rtol=3e-2, atol=3e-2)
    torch.testing.assert_close(out, ref, **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", sorted(AA))
def test_antialias_rows_invariant(name, dtype, isa, threads):
    item, kw = AA[name]
    items = (rnd(5, *item, seed=4) * 100).to(dtype)
    with samebits.batch_invariant():
        threads(1)
        alone = [F.interpolate(items[i : i + 1], antialias=True, **kw) for i in range(5)]
        for t in (2, 3):
            threads(t)
            full = F.interpolate(items, antialias=True, **kw)
            cl = F.interpolate(items.to(memory_format=torch.channels_last), antialias=True, **kw)
            for i in range(5):
                assert same_bits(full[i : i + 1], alone[i]), (i, t)
                assert same_bits(cl[i : i + 1].contiguous(), alone[i]), (i, t)


def test_antialias_of_uint8_images_is_torchs_integer_kernel():
    x = (torch.rand(2, 3, 20, 20, generator=torch.Generator().manual_seed(5)) * 255).to(torch.uint8)
    with samebits.batch_invariant():
        got = F.interpolate(x, size=(7, 9), mode="bilinear", antialias=True)
    assert torch.equal(got, F.interpolate(x, size=(7, 9), mode="bilinear", antialias=True))
