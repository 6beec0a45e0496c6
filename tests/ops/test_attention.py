import pytest
import torch
import torch.nn.functional as F

import samebits
from samebits.errors import NotInvariantError, UnsupportedInputError
from samebits.ops import attention
from tests.conftest import DTYPES, THREADS, TOL, same_bits


def qkv(b=2, hq=4, hk=4, lq=5, lk=7, d=16, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, hq, lq, d, generator=g).to(dtype),
        torch.randn(b, hk, lk, d, generator=g).to(dtype),
        torch.randn(b, hk, lk, d, generator=g).to(dtype),
    )


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mask", ["none", "bool", "float", "causal"])
def test_matches_reference(dtype, mask):
    q, k, v = qkv(dtype=dtype, lq=7)
    kw = {}
    if mask == "bool":
        kw["attn_mask"] = torch.rand(7, 7, generator=torch.Generator().manual_seed(1)) > 0.3
        kw["attn_mask"][:, 0] = True
    elif mask == "float":
        kw["attn_mask"] = torch.randn(2, 1, 7, 7, generator=torch.Generator().manual_seed(2)).to(
            dtype
        )
    elif mask == "causal":
        kw["is_causal"] = True
    with samebits.batch_invariant():
        out = F.scaled_dot_product_attention(q, k, v, **kw)
    torch.testing.assert_close(out, attention._reference(q, k, v, **kw), **TOL[dtype])


def test_gqa_and_scale():
    q, k, v = qkv(hq=8, hk=2)
    with samebits.batch_invariant():
        out = F.scaled_dot_product_attention(q, k, v, enable_gqa=True, scale=0.3)
    ref = attention._reference(q, k.repeat_interleave(4, 1), v.repeat_interleave(4, 1), scale=0.3)
    torch.testing.assert_close(out, ref, **TOL[torch.float32])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_decode_over_cache_equals_prefill_rows(dtype, threads):
    """One query row against the cache has the bits of that row in a causal prefill."""
    q, k, v = qkv(b=1, lq=9, lk=9, dtype=dtype)
    with samebits.batch_invariant():
        threads(1)
        full = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        for t in THREADS:
            threads(t)
            for i in range(9):
                step = F.scaled_dot_product_attention(
                    q[:, :, i : i + 1], k[:, :, : i + 1], v[:, :, : i + 1]
                )
                assert same_bits(step[:, :, 0], full[:, :, i])
            chunk = F.scaled_dot_product_attention(
                q[:, :, 4:], k, v, attn_mask=torch.ones(9, 9, dtype=torch.bool).tril()[4:]
            )
            assert same_bits(chunk, full[:, :, 4:])


def test_dropout_and_bad_shapes_are_refused():
    q, k, v = qkv()
    with samebits.batch_invariant():
        with pytest.raises(NotInvariantError, match="dropout_p=0.5"):
            F.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
        with pytest.raises(UnsupportedInputError, match="do not match"):
            F.scaled_dot_product_attention(q, k[..., :8], v)
