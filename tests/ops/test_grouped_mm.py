"""_grouped_mm (the MoE experts' GEMM): every form against float64, and a token's row
has the bits of ``F.linear(row, W[g])`` alone whatever the group sizes around it, the
batch, its place in its group, the threads and the kernel path."""

import pytest
import torch
import torch.nn.functional as F

import samebits
from samebits.errors import UnsupportedInputError
from samebits.ops import grouped_mm
from tests.conftest import TOL, same_bits

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
E, K, N = 4, 40, 24


def rnd(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def offs(*sizes):
    return torch.tensor(sizes, dtype=torch.int32).cumsum(0).to(torch.int32)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_form_matches_float64(dtype):
    a2, w = rnd(11, K, dtype=dtype), rnd(E, N, K, dtype=dtype, seed=1)
    o = offs(3, 0, 5, 2)  # an empty group, and a row past the groups
    cases = [
        (a2, w.transpose(-2, -1), o),  # 2D x 3D, K-contiguous weights (transformers')
        (a2, w.transpose(-2, -1).contiguous(), o),  # 2D x 3D, (E, K, N) weights
        (rnd(E, 6, K, dtype=dtype, seed=2), w.transpose(-2, -1), None),  # 3D x 3D
        (rnd(E, 6, K, dtype=dtype, seed=3), rnd(K, 13, dtype=dtype, seed=4), offs(4, 4, 0, 5)),
        (rnd(7, 11, dtype=dtype, seed=5), rnd(11, N, dtype=dtype, seed=6), o),  # 2D x 2D
    ]
    for a, b, of in cases:
        with samebits.batch_invariant():
            out = torch._grouped_mm(a, b, of)
        ref = grouped_mm._reference(a, b, of)
        assert out.dtype == dtype and out.shape == ref.shape
        torch.testing.assert_close(out, ref, **TOL[dtype])
    assert torch.equal(out[1], torch.zeros_like(out[1]))  # the empty group: zeros


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_a_token_has_the_bits_of_linear_alone(dtype, isa, threads):
    w = rnd(E, N, K, dtype=dtype, seed=1)
    item = rnd(1, K, dtype=dtype, seed=2)
    gen = torch.Generator().manual_seed(3)
    with samebits.batch_invariant():
        threads(1)
        alone = F.linear(item, w[2])
        single = F.grouped_mm(item, w.transpose(-2, -1), offs=offs(0, 0, 1, 0))
        assert same_bits(single, alone)
        for t in (1, 2, 3):
            threads(t)
            for sizes in ((1, 2, 5, 3), (9, 0, 13, 1), (0, 4, 3, 0)):
                for place in sorted({0, sizes[2] // 2, sizes[2] - 1}):
                    a = torch.randn(sum(sizes), K, generator=gen).to(dtype)
                    row = sizes[0] + sizes[1] + place  # the item sits in group 2
                    a[row] = item[0]
                    out = torch._grouped_mm(a, w.transpose(-2, -1), offs(*sizes))
                    assert same_bits(out[row : row + 1], alone), (sizes, place, t)
            # 3D x 3D: each group's rows, the same chains
            a3 = torch.randn(E, 5, K, generator=gen).to(dtype)
            a3[2, 3] = item[0]
            out3 = torch._grouped_mm(a3, w.transpose(-2, -1))
            assert same_bits(out3[2, 3:4], alone)


def test_weight_gradient_form_is_seq_and_zero_tokens_add_nothing(isa, threads):
    """2D x 2D: K is the tokens of each group, SEQ order: a group's zero tokens (padding
    with zero gradient) leave its result's bits unchanged."""
    a, b = rnd(6, 9), rnd(9, 5, seed=1)
    with samebits.batch_invariant():
        threads(1)
        ref = torch._grouped_mm(a, b, offs(4, 5))
        assert same_bits(ref[0], a[:, :4] @ b[:4]) and same_bits(ref[1], a[:, 4:] @ b[4:])
        for t in (2, 3):
            threads(t)
            ap = torch.cat([a[:, :4], torch.zeros(6, 3), a[:, 4:], torch.zeros(6, 2)], 1)
            bp = torch.cat([b[:4], torch.zeros(3, 5), b[4:], torch.zeros(2, 5)], 0)
            padded = torch._grouped_mm(ap, bp, offs(7, 7))
            assert same_bits(padded, ref)


def test_bias_and_out_dtype():
    a, w, bias = rnd(7, K, dtype=torch.bfloat16), rnd(E, N, K, dtype=torch.bfloat16), rnd(E, N)
    o = offs(2, 2, 2, 1)
    with samebits.batch_invariant():
        wide = torch._grouped_mm(a, w.transpose(-2, -1), o, out_dtype=torch.float32)
        biased = torch._grouped_mm(a.float(), w.float().transpose(-2, -1), o, bias)
        lin = F.linear(a[2:4].float(), w[1].float(), bias[1])
    assert wide.dtype == torch.float32
    assert same_bits(wide.bfloat16(), grouped_mm.grouped_mm(a, w.transpose(-2, -1), o))
    assert same_bits(biased[2:4], lin)


def test_bad_offsets_are_named():
    a, w = rnd(5, K), rnd(E, K, N)
    with pytest.raises(UnsupportedInputError, match="non-decreasing"):
        grouped_mm.grouped_mm(a, w, offs(3, 2, 0, 0).flip(0))
    with pytest.raises(UnsupportedInputError, match=r"offs of shape \(4,\)"):
        grouped_mm.grouped_mm(a, w, offs(5))
    with pytest.raises(UnsupportedInputError, match="out_dtype"):
        grouped_mm.grouped_mm(a, w, offs(5, 0, 0, 0), out_dtype=torch.bfloat16)
