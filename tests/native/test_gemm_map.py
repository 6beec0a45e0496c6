"""sb_gemm_map: the output map and the M-contiguous operand only move results, never
change them. Each case is compared bit for bit with plain sb_gemm, whose order the
rest of the suite checks, and with a float64 reference within tolerance."""

import pytest
import torch

from samebits import _native
from samebits.ops.matmul import _gemm_map, omap_array


def rnd(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def plain(a, w, bias=None):
    """(B, M, K) x (N, K) -> (B, M, N) float32 through sb_gemm in DOT/PAIR order."""
    B, M, K = a.shape
    N = w.shape[0]
    out = torch.empty(B, M, N)
    dt = _native.dtype_code(a.dtype)
    status = _native.lib().sb_gemm(
        a.data_ptr(), K, 1, M * K, w.data_ptr(), 1, K, 0, out.data_ptr(), N, M * N, B, M, N, K,
        None if bias is None else bias.data_ptr(), dt, dt, 1, _native.nthreads(),
    )  # fmt: skip
    assert status == 0
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape", [(2, 37, 70, 19), (3, 200, 300, 40), (1, 5, 9, 3)])
def test_transposed_store_gives_the_plain_bits(shape, dtype, isa):
    """out[b, j, i] written through a column stride (NCHW) == plain out[b, i, j]."""
    B, M, K, N = shape
    a, w, bias = rnd(B, M, K, seed=1, dtype=dtype), rnd(N, K, seed=2, dtype=dtype), rnd(N, seed=3)
    bias = bias.to(dtype)
    want = plain(a, w, bias)
    got = torch.full((B, N, M), float("nan"))
    dt = _native.dtype_code(dtype)
    _gemm_map(a.data_ptr(), K, 1, M * K, w.data_ptr(), K, 0, got.data_ptr(), N * M, B, M, N, K,
              bias, dt, dt, (M, M, 0, 1, M, 0, 0, 0, 0, 0))  # fmt: skip
    assert torch.equal(got.transpose(1, 2), want)
    ref = (a.double() @ w.double().T + bias.double()).float()
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(got.transpose(1, 2), ref, **tol)


@pytest.mark.parametrize("shape", [(2, 37, 70, 19), (3, 300, 520, 40), (1, 7, 8, 33)])
@pytest.mark.parametrize("wrap", [False, True], ids=["per_item", "one_gemm"])
def test_m_contiguous_operand_gives_the_plain_bits(shape, wrap, isa):
    """float32 A stored (K, M) per item (an NCHW activation) == the same A stored (M, K);
    with awq, one GEMM of B x M rows reads every item (rows wrap at M)."""
    B, M, K, N = shape
    a, w = rnd(B, M, K, seed=4), rnd(N, K, seed=5)
    at = a.transpose(1, 2).contiguous()  # (B, K, M)
    want = plain(a, w)
    got = torch.empty(B, M, N)
    f32 = _native.dtype_code(torch.float32)
    if wrap:
        _gemm_map(at.data_ptr(), 1, M, K * M, w.data_ptr(), K, 0, got.data_ptr(), 0, 1, B * M, N,
                  K, None, 0, f32, (B * M, B * M, 0, N, 1, 0, 0, 0, M, 0))  # fmt: skip
    else:
        _gemm_map(at.data_ptr(), 1, M, K * M, w.data_ptr(), K, 0, got.data_ptr(), M * N, B, M, N,
                  K, None, 0, f32, (M, M, 0, N, 1, 0, 0, 0, 0, 0))  # fmt: skip
    assert torch.equal(got, want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_wrap_keep_and_offset(dtype, isa):
    """Rows in 'wide' runs of wq (the last wq - keep not stored) and a chunk starting
    at row ioff: the results land where the map says, nothing else is written."""
    M, K, N, wq, keep, ioff = 48, 64, 10, 8, 5, 16
    a, w = rnd(1, M, K, seed=6, dtype=dtype), rnd(N, K, seed=7, dtype=dtype)
    want = plain(a, w)[0]  # (M, N)
    rows = (M + ioff) // wq
    got = torch.full((rows, keep, N), -7.0)
    dt = _native.dtype_code(dtype)
    _gemm_map(a.data_ptr(), K, 1, 0, w.data_ptr(), K, 0, got.data_ptr(), 0, 1, M, N, K,
              None, 0, dt, (wq, keep, keep * N, N, 1, ioff, 0, 0, 0, 0))  # fmt: skip
    expect = torch.full_like(got, -7.0)
    for i in range(M):
        r = i + ioff
        if r % wq < keep:
            expect[r // wq, r % wq] = want[i]
    assert torch.equal(got, expect)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("runs", [(2, 64), (3, 64), (5, 96), (2, 1024)])
def test_a_in_runs_gives_the_bits_of_the_copied_rows(runs, dtype, isa):
    """A row made of runs read from scattered places (an implicit im2col) == the same
    row copied out contiguously; runs longer than a K block (1024) included."""
    nruns, L = runs
    M, N, gap = 40, 24, 7
    K = nruns * L
    src = rnd(M * 2 * L + nruns * (L + gap) * 2, seed=9, dtype=dtype)
    lda, astride = 2 * L // 3 // 8 * 8 or 8, L + gap
    rows = torch.stack([
        torch.cat([src[i * lda + r * astride : i * lda + r * astride + L] for r in range(nruns)])
        for i in range(M)
    ])  # fmt: skip
    w = rnd(N, K, seed=10, dtype=dtype)
    want = plain(rows.unsqueeze(0).contiguous(), w)[0]
    got = torch.empty(M, N)
    dt = _native.dtype_code(dtype)
    _gemm_map(src.data_ptr(), lda, 1, 0, w.data_ptr(), K, 0, got.data_ptr(), 0, 1, M, N, K,
              None, 0, dt, (M, M, 0, N, 1, 0, L, astride, 0, 0))  # fmt: skip
    assert torch.equal(got, want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("group", [(7, 3), (13, 5), (4, 1), (6, 2)], ids=str)
def test_a_rows_in_groups_give_the_bits_of_the_copied_rows(group, dtype, isa):
    """Rows in groups (aw, aws: a convolution's output rows, no junk rows between
    them) == the same rows copied out, two batch items; groups of 7 and 13 split
    the kernels' 6-row panels (packed there, read in place elsewhere), with runs."""
    aw, sw = group
    B, M, N, L, nruns = 2, 61, 37, 24, 2
    K, lda, astride = L * nruns, 8 * sw, 24 * 8
    aws = lda * aw + 40  # a gap after each group
    per_item = (M // aw + 1) * aws + astride * nruns + L
    src = rnd(B * per_item, seed=14, dtype=dtype)
    rows = torch.stack([
        torch.stack([
            torch.cat([
                src[b * per_item + (i // aw) * aws + (i % aw) * lda + r * astride:][:L]
                for r in range(nruns)
            ])
            for i in range(M)
        ])
        for b in range(B)
    ])  # fmt: skip
    w, bias = rnd(N, K, seed=15, dtype=dtype), rnd(N, seed=16).to(dtype)
    want = plain(rows.contiguous(), w, bias)
    got = torch.empty(B, M, N)
    dt = _native.dtype_code(dtype)
    _gemm_map(src.data_ptr(), lda, 1, per_item, w.data_ptr(), K, 0, got.data_ptr(), M * N, B, M,
              N, K, bias, dt, dt, (M, M, 0, N, 1, 0, L, astride, 0, 0, aw, aws))  # fmt: skip
    assert torch.equal(got, want)


def test_unsupported_combinations_are_refused(isa):
    a, w, out = rnd(8, 8), rnd(4, 8), torch.empty(8, 4)
    m = omap_array((8, 8, 0, 4, 1, 0, 0, 0, 0, 0))
    lib = _native.lib()
    f32, bf16 = _native.dtype_code(torch.float32), _native.dtype_code(torch.bfloat16)
    args = (a.data_ptr(), 8, 1, 0, w.data_ptr(), 1, 8, 0, out.data_ptr(), 4, 0, 1, 8, 4, 8, None, 0)
    assert lib.sb_gemm_map(*args, f32, 0, 1, m) == -2  # SEQ order has no map
    ab = a.bfloat16()
    mt = (a.data_ptr(), 1, 8, 0)  # M-contiguous A
    assert lib.sb_gemm_map(ab.data_ptr(), *mt[1:], *args[4:], bf16, 1, 1, m) == -2
    bad = omap_array((0, 8, 0, 4, 1, 0, 0, 0, 0, 0))
    assert lib.sb_gemm_map(*args, f32, 1, 1, bad) == -2  # wq 0
    odd_run = omap_array((8, 8, 0, 4, 1, 0, 4, 8, 0, 0))  # a run not a multiple of 8
    assert lib.sb_gemm_map(*args, f32, 1, 1, odd_run) == -2
    pair_run = omap_array((8, 8, 0, 4, 1, 0, 1, 8, 0, 0))  # a PAIR run splits a pair
    ab, wb = a.bfloat16(), w.bfloat16()
    pargs = (ab.data_ptr(), *args[1:4], wb.data_ptr(), *args[5:])
    assert lib.sb_gemm_map(*pargs, bf16, 1, 1, pair_run) == -2
    wrap_k = omap_array((8, 8, 0, 4, 1, 0, 0, 0, 4, 0))  # awq needs an M-contiguous A
    assert lib.sb_gemm_map(*args, f32, 1, 1, wrap_k) == -2
    bf_out = omap_array((8, 8, 0, 4, 1, 0, 0, 0, 0, 1))  # bf16 C: PAIR only
    assert lib.sb_gemm_map(*args, f32, 1, 1, bf_out) == -2
    neg_group = omap_array((8, 8, 0, 4, 1, 0, 0, 0, 0, 0, -1, 0))
    assert lib.sb_gemm_map(*args, f32, 1, 1, neg_group) == -2
    mt_group = omap_array((8, 8, 0, 4, 1, 0, 0, 0, 8, 0, 2, 0))  # groups of an M-contiguous A
    assert lib.sb_gemm_map(*mt, *args[4:], f32, 1, 1, mt_group) == -2
    assert lib.sb_gemm_map(*args, f32, 1, 1, bf_out) == -2
    assert lib.sb_gemm_map(*args, f32, 1, 1, m) == 0


def test_bfloat16_output_is_the_float32_result_rounded_once(isa):
    """cbf: the PAIR kernel stores bfloat16, each result rounded as .to() rounds it,
    through the same map (here NCHW-transposed, two items)."""
    B, M, K, N = 2, 45, 96, 20
    a, w = rnd(B, M, K, seed=11, dtype=torch.bfloat16), rnd(N, K, seed=12, dtype=torch.bfloat16)
    bias = rnd(N, seed=13).bfloat16()
    want = plain(a, w, bias).to(torch.bfloat16)  # (B, M, N)
    got = torch.empty(B, N, M, dtype=torch.bfloat16)
    bf = _native.dtype_code(torch.bfloat16)
    _gemm_map(a.data_ptr(), K, 1, M * K, w.data_ptr(), K, 0, got.data_ptr(), N * M, B, M, N, K,
              bias, bf, bf, (M, M, 0, 1, M, 0, 0, 0, 0, 1))  # fmt: skip
    assert torch.equal(got.transpose(1, 2), want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape", [(2, 13, 70, 37), (1, 40, 301, 100), (3, 5, 7, 17)])
def test_k_major_b_with_row_bias_gives_the_transposed_bits(shape, dtype, isa):
    """DOT (float32) and PAIR (bfloat16) with B K-major (an NCHW image: element (k, p)
    at k * P + p) and the bias per row (flag 2), bfloat16 out (flag 1): out = W @ X +
    b[:, None] has, per element, the bits of the channels-last product X.T @ W.T + b
    (factors swapped, same chain)."""
    B, Co, K, P = shape
    w, x = rnd(Co, K, seed=21, dtype=dtype), rnd(B, K, P, seed=22, dtype=dtype)
    bias = rnd(Co, seed=23).to(dtype)
    want = plain(x.transpose(1, 2).contiguous(), w, bias).to(dtype)  # (B, P, Co)
    got = torch.empty(B, Co, P, dtype=dtype)
    dt = _native.dtype_code(dtype)
    m = omap_array((Co, Co, 0, P, 1, 0, 0, 0, 0, 2 | (dtype == torch.bfloat16)))
    status = _native.lib().sb_gemm_map(
        w.data_ptr(), K, 1, 0, x.data_ptr(), P, 1, K * P, got.data_ptr(), 0, Co * P, B, Co, P, K,
        bias.data_ptr(), dt, dt, 1, _native.nthreads(), m,
    )  # fmt: skip
    assert status == 0
    assert torch.equal(got.transpose(1, 2), want)


def test_unknown_map_flags_are_refused(isa):
    a, w, out = rnd(8, 8).bfloat16(), rnd(4, 8).bfloat16(), torch.empty(8, 4)
    bf, f32 = _native.dtype_code(torch.bfloat16), _native.dtype_code(torch.float32)
    args = (a.data_ptr(), 8, 1, 0, w.data_ptr(), 1, 8, 0, out.data_ptr(), 4, 0, 1, 8, 4, 8, None, 0)
    # flags above 3; a row bias with a K-contiguous B, or bfloat16 C, on float32 (DOT)
    for flags, dt in ((4, bf), (2, f32), (3, f32)):
        m = omap_array((8, 8, 0, 4, 1, 0, 0, 0, 0, flags))
        a32 = rnd(8, 8) if dt == f32 else a
        w32 = rnd(4, 8) if dt == f32 else w
        call = (a32.data_ptr(), *args[1:4], w32.data_ptr(), *args[5:])
        assert _native.lib().sb_gemm_map(*call, dt, 1, 1, m) == -2, flags
