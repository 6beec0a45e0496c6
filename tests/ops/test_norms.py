import pytest
import torch
import torch.nn.functional as F

import samebits
from samebits.errors import UnsupportedInputError
from samebits.ops import norms
from tests.conftest import TOL, same_bits


def rnd(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_layer_norm_matches_reference(dtype):
    x, w, b = (
        rnd(4, 7, 33, dtype=dtype) * 3 + 1,
        rnd(33, dtype=dtype, seed=1),
        rnd(33, dtype=dtype, seed=2),
    )
    torch.testing.assert_close(
        norms.layer_norm(x, (33,), w, b), norms._reference_layer_norm(x, (33,), w, b), **TOL[dtype]
    )
    torch.testing.assert_close(
        norms.layer_norm(x, (7, 33)), norms._reference_layer_norm(x, (7, 33)), **TOL[dtype]
    )


def test_native_layer_norm_returns_stats_like_torch():
    x = rnd(5, 16)
    out, mean, rstd = norms.native_layer_norm(x, (16,), None, None, 1e-5)
    ref = torch.native_layer_norm(x, (16,), None, None, 1e-5)
    for a, r in zip((out, mean, rstd), ref, strict=True):
        assert a.shape == r.shape
        torch.testing.assert_close(a, r, **TOL[torch.float32])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_rms_norm_matches_reference(dtype):
    x, w = rnd(3, 5, 64, dtype=dtype), rnd(64, dtype=dtype, seed=1)
    torch.testing.assert_close(
        norms.rms_norm(x, (64,), w, 1e-6),
        norms._reference_rms_norm(x, (64,), w, 1e-6),
        **TOL[dtype],
    )
    with samebits.batch_invariant():
        out = F.rms_norm(x, (64,), w, 1e-6)
    torch.testing.assert_close(out, norms._reference_rms_norm(x, (64,), w, 1e-6), **TOL[dtype])


def test_bad_normalized_shape():
    with pytest.raises(UnsupportedInputError, match=r"normalized_shape \[5\] does not match"):
        norms.layer_norm(rnd(2, 4), (5,))
    with pytest.raises(UnsupportedInputError, match="weight has shape"):
        norms.layer_norm(rnd(2, 4), (4,), rnd(3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("width", [7, 384, 1029])
def test_sixteen_row_blocks_give_each_row_its_bits_alone(dtype, width, threads):
    """Full blocks of 16 float32 rows take a vector path, partial blocks the 8-row and
    scalar paths: a row has the same bits in every one of them."""
    g = torch.Generator().manual_seed(width)
    # +-2^60 spikes: small terms added between them are lost or kept depending on
    # the order of the double sums, so an order change shows in the float outputs
    x = torch.randn(40, width, generator=g) * 3 + 1
    x[:, 0::8], x[:, 4::8] = 2.0**60, -(2.0**60)
    x = x.to(dtype)
    w, b = torch.randn(width, generator=g).to(dtype), torch.randn(width, generator=g).to(dtype)
    with samebits.batch_invariant():
        for t in (1, 2):
            threads(t)
            # no bias: it would swamp the tiny normalized values of the small terms
            ln, rms = F.layer_norm(x, (width,), w), F.rms_norm(x, (width,), w)
            lnb = F.layer_norm(x, (width,), w, b)
            for i in (0, 7, 15, 16, 33, 39):
                assert same_bits(F.layer_norm(x[i : i + 1], (width,), w)[0], ln[i])
                assert same_bits(F.layer_norm(x[i : i + 1], (width,), w, b)[0], lnb[i])
                assert same_bits(F.rms_norm(x[i : i + 1], (width,), w)[0], rms[i])
            assert same_bits(F.layer_norm(x[3:38], (width,), w), ln[3:38])
