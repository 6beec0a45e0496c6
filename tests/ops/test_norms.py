import pytest
import torch
import torch.nn.functional as F

import samebits
from samebits.errors import UnsupportedInputError
from samebits.ops import norms
from tests.conftest import TOL


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
