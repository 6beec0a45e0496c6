"""col2im (F.fold): against float64, and an image's folded patches have the same bits
alone and in a batch, at any thread count and kernel path."""

import pytest
import torch
import torch.nn.functional as F

import samebits
from samebits.ops import fold
from tests.conftest import TOL, same_bits

CASES = {  # name -> (output size, fold kwargs)
    "overlap": ((7, 9), dict(kernel_size=3, padding=1, stride=1)),
    "strided_dilated": (
        (10, 11),
        dict(kernel_size=(3, 2), dilation=(2, 1), padding=(2, 0), stride=2),
    ),
    "tiles": ((8, 8), dict(kernel_size=4, stride=4)),
}


def patches(n, name, seed=0, dtype=torch.float32):
    size, kw = CASES[name]
    x = torch.randn(n, 3, *size, generator=torch.Generator().manual_seed(seed))
    return F.unfold(x, **kw).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_float64(name, dtype):
    size, kw = CASES[name]
    cols = patches(2, name, dtype=dtype)
    with samebits.batch_invariant():
        got = F.fold(cols, size, **kw)
        one = F.fold(cols[0], size, **kw)  # unbatched
    torch.testing.assert_close(got, fold._reference(cols, size, **kw), **TOL[dtype])
    assert same_bits(one, got[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", sorted(CASES))
def test_an_image_has_the_same_bits_alone_and_in_a_batch(name, dtype, isa, threads):
    size, kw = CASES[name]
    cols = patches(5, name, seed=1, dtype=dtype)
    with samebits.batch_invariant():
        threads(1)
        alone = [F.fold(cols[i : i + 1], size, **kw) for i in range(5)]
        for t in (2, 3):
            threads(t)
            full = F.fold(cols, size, **kw)
            for i in range(5):
                assert same_bits(full[i : i + 1], alone[i]), (i, t)
