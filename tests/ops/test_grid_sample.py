"""grid_sample (2d: bilinear / nearest / bicubic; 3d: bilinear / nearest) with every
padding mode and align_corners, and affine_grid: against float64, and an image's
samples have the same bits alone and in a batch, at any thread count and kernel path."""

import pytest
import torch
import torch.nn.functional as F

import samebits
from samebits.ops import grid_sample
from tests.conftest import TOL, same_bits

MODES = ["bilinear", "nearest", "bicubic"]
PADS = ["zeros", "border", "reflection"]


def rnd(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def grid(*shape, seed=0):
    """Points inside and outside [-1, 1]; every seventh on a quarter-grid value."""
    g = torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2.6 - 1.3
    flat = g.view(-1)
    flat[::7] = (torch.arange(flat[::7].numel()) % 9 - 4) / 4.0
    return g


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pad", PADS)
@pytest.mark.parametrize("ac", [False, True])
def test_matches_float64(mode, pad, ac, dtype):
    x, g = rnd(2, 3, 7, 9).to(dtype), grid(2, 5, 6, 2, seed=1).to(dtype)
    kw = dict(mode=mode, padding_mode=pad, align_corners=ac)
    cases = [(x, g)]
    if mode != "bicubic":
        cases.append((rnd(2, 2, 4, 5, 6).to(dtype), grid(2, 3, 4, 5, 3, seed=2).to(dtype)))
    for xx, gg in cases:
        with samebits.batch_invariant():
            got = F.grid_sample(xx, gg, **kw)
        tol = TOL[dtype] if dtype == torch.float32 else dict(rtol=3e-2, atol=3e-2)
        if mode == "nearest":  # a sample on a half-pixel may round either way in float64
            ref = F.grid_sample(xx.float(), gg.float(), **kw).to(dtype)
            assert torch.equal(got, ref)
        else:
            torch.testing.assert_close(got, grid_sample._reference(xx, gg, **kw), **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pad", PADS)
def test_an_image_has_the_same_bits_alone_and_in_a_batch(mode, pad, dtype, isa, threads):
    item, g_item = rnd(1, 3, 8, 11, seed=3).to(dtype), grid(1, 6, 7, 2, seed=4).to(dtype)
    gen = torch.Generator().manual_seed(5)
    with samebits.batch_invariant():
        threads(1)
        alone = F.grid_sample(item, g_item, mode=mode, padding_mode=pad, align_corners=False)
        for t in (1, 2, 3):
            threads(t)
            for m in (2, 5):
                for pos in (0, m - 1):
                    x = torch.randn(m, 3, 8, 11, generator=gen).to(dtype)
                    g = (torch.rand(m, 6, 7, 2, generator=gen) * 2.6 - 1.3).to(dtype)
                    x[pos], g[pos] = item[0], g_item[0]
                    out = F.grid_sample(x, g, mode=mode, padding_mode=pad, align_corners=False)
                    assert same_bits(out[pos : pos + 1], alone), (m, pos, t)
            # a sample's bits do not depend on the other points of its grid either
            wide = torch.cat([g_item, torch.rand(1, 6, 5, 2, generator=gen).to(dtype)], 2)
            part = F.grid_sample(item, wide, mode=mode, padding_mode=pad, align_corners=False)
            part = part[..., :7]
            assert same_bits(part, alone)


@pytest.mark.parametrize("ac", [False, True])
def test_affine_grid_matches_float64_and_rows_alone(ac, isa, threads):
    theta, theta3 = rnd(4, 2, 3, seed=6), rnd(4, 3, 4, seed=7)
    with samebits.batch_invariant():
        threads(2)
        a = F.affine_grid(theta, (4, 3, 5, 7), align_corners=ac)
        a3 = F.affine_grid(theta3, (4, 3, 4, 5, 6), align_corners=ac)
        threads(1)
        one = F.affine_grid(theta[2:3], (1, 3, 5, 7), align_corners=ac)
    torch.testing.assert_close(
        a, F.affine_grid(theta.double(), (4, 3, 5, 7), align_corners=ac).float()
    )
    torch.testing.assert_close(
        a3, F.affine_grid(theta3.double(), (4, 3, 4, 5, 6), align_corners=ac).float()
    )
    assert same_bits(a[2:3], one)
