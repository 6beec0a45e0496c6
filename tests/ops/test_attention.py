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


CASES = [(1, 1, 8, 8), (5, 13, 32, 32), (17, 17, 20, 12), (9, 40, 64, 64), (3, 100, 7, 70)]


def window_mask(g, L, S, as_bool):
    """Each row its own window of live keys, with dead keys inside it and some rows
    all dead; float masks per (batch, head), bool masks shared by the batch. The
    kernel finds each mask row's window once and scores only the 8-key groups
    meeting it."""
    shape = (1, 4, L, S) if as_bool else (2, 4, L, S)
    live = torch.zeros(shape, dtype=torch.bool)
    for idx in range(live.numel() // S):
        row = live.view(-1, S)[idx]
        if torch.rand(1, generator=g) < 0.1:
            continue  # all dead
        a, b = sorted(torch.randint(0, S + 1, (2,), generator=g).tolist())
        row[a : max(b, a + 1)] = torch.rand(max(b, a + 1) - a, generator=g) > 0.2
    if as_bool:
        return live
    return torch.where(live, torch.randn(shape, generator=g), -float("inf"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize(
    "mask", ["none", "bool", "float", "causal", "padding", "blocks", "windows", "windows_bool"]
)
@pytest.mark.parametrize("hk", [4, 2, 1], ids=lambda h: f"kv_heads{h}")
def test_fused_kernel_has_the_bits_of_the_unfused_passes(dtype, mask, hk, isa):
    """The one-pass kernel and the separate score / mask / softmax / p @ v passes do the
    same operations, on every ISA path: equal bits, also for head-major views (HF's
    transpose(1, 2)), broadcast masks, grouped-query heads, head dims that are not a
    multiple of 8, value widths other than the head dim (70: a second, partial pass of
    64 columns) and row counts that are not a multiple of the kernels' row groups."""
    g = torch.Generator().manual_seed(hk)
    for L, S, D, Dv in CASES:
        # (batch, len, heads, dim) storage viewed as (batch, heads, len, dim)
        q = torch.randn(2, L, 4, D, generator=g).to(dtype).transpose(1, 2)
        k = torch.randn(2, S, hk, D, generator=g).to(dtype).transpose(1, 2)
        v = torch.randn(2, hk, S, Dv, generator=g).to(dtype)
        kw = {}
        if mask == "bool":
            kw["attn_mask"] = torch.rand(2, 1, L, S, generator=g) > 0.3
        elif mask == "float":
            kw["attn_mask"] = torch.randn(L, S, generator=g).to(dtype)
        elif mask == "padding":
            m = torch.zeros(2, 1, 1, S)
            m[0, ..., : S // 2] = -float("inf")
            kw["attn_mask"] = m
        elif mask == "blocks":  # block-diagonal: a row sees the keys of its own block
            rows = torch.arange(L) * 3 // max(L, 1)
            cols = torch.arange(S) * 3 // max(S, 1)
            kw["attn_mask"] = torch.where(rows[:, None] == cols[None, :], 0.0, -float("inf"))
        elif mask.startswith("windows"):
            kw["attn_mask"] = window_mask(g, L, S, mask == "windows_bool")
        elif mask == "causal":
            kw["is_causal"] = True
        with samebits.batch_invariant():
            fused = F.scaled_dot_product_attention(q, k, v, enable_gqa=hk != 4, **kw)
        am = kw.get("attn_mask")
        am = None if am is None else am.expand(2, 4, L, S)
        split = attention._unfused(
            q, k, v, am, mask == "causal", 1 / D**0.5, torch.Size([2, 4]), 4 // hk
        )
        assert same_bits(fused, split), (L, S, D, Dv)
        ref = attention._reference(
            q, k.repeat_interleave(4 // hk, 1), v.repeat_interleave(4 // hk, 1), **kw
        )
        torch.testing.assert_close(fused, ref, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("masked", ["float", "bool"])
def test_packed_segments_have_the_bits_of_each_segment_alone(dtype, masked, threads):
    """Several sequences in one, a block-diagonal mask between them: each segment's
    output rows equal attention over that segment alone (the serve engine packs texts
    this way). Segments of 1..40 keys, so some share an 8-key group and some span
    several."""
    g = torch.Generator().manual_seed(7)
    lens = [1, 5, 40, 8, 13, 2, 31, 9]
    T = sum(lens)
    q, k, v = (torch.randn(1, 4, T, 24, generator=g).to(dtype) for _ in range(3))
    seg = torch.repeat_interleave(torch.arange(len(lens)), torch.tensor(lens))
    same = seg[:, None] == seg[None, :]
    mask = same if masked == "bool" else torch.where(same, 0.0, -float("inf")).to(dtype)
    for t in (1, 2, 3):
        threads(t)
        with samebits.batch_invariant():
            packed = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            start = 0
            for n in lens:
                part = slice(start, start + n)
                alone = F.scaled_dot_product_attention(q[:, :, part], k[:, :, part], v[:, :, part])
                assert same_bits(packed[:, :, part], alone), (t, n)
                start += n


def test_wide_heads_and_float16_take_the_unfused_passes():
    g = torch.Generator().manual_seed(0)
    for dtype, d in ((torch.float32, attention.MAX_FUSED_HEAD_DIM + 8), (torch.float16, 16)):
        q, k, v = (torch.randn(1, 2, 5, d, generator=g).to(dtype) for _ in range(3))
        with samebits.batch_invariant():
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        torch.testing.assert_close(out, attention._reference(q, k, v, is_causal=True), **TOL[dtype])
