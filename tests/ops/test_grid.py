"""Invariance of every covered op under the mode, over op x dtype x threads x
batch size x position, with the other rows random. Bitwise equality only."""

import zlib

import pytest
import torch
import torch.nn.functional as F

import samebits
from samebits._native import last_kernel_threads
from tests.conftest import BATCH_SIZES, DTYPES, THREADS, same_bits

# float16 runs widened to float32 and rounded once, so the mode promises it too
GRID_DTYPES = [*DTYPES, torch.float16]

K, N = 96, 40
g = torch.Generator().manual_seed(0)
W = torch.randn(N, K, generator=g)
Wkn = torch.randn(K, N, generator=g)
B = torch.randn(N, generator=g)
LNW, LNB = torch.randn(K, generator=g), torch.randn(K, generator=g)

# Each op maps a batch (M, K) to a batch of per-row results.
ROW_OPS = {
    "linear": lambda x: F.linear(x, W.to(x.dtype), B.to(x.dtype)),
    "linear_nobias": lambda x: F.linear(x, W.to(x.dtype)),
    "mm_wT": lambda x: x @ W.to(x.dtype).t(),
    "mm_kn": lambda x: x @ Wkn.to(x.dtype),
    "addmm": lambda x: torch.addmm(B.to(x.dtype), x, W.to(x.dtype).t(), beta=0.5, alpha=2.0),
    "matmul_3d": lambda x: torch.matmul(x.view(-1, 1, K), Wkn.to(x.dtype)).view(-1, N),
    "bmm": lambda x: torch.bmm(
        x.view(-1, 4, K // 4), Wkn.to(x.dtype)[: K // 4].expand(x.size(0), -1, -1)
    ).view(x.size(0), -1),
    "einsum": lambda x: torch.einsum("mk,nk->mn", x, W.to(x.dtype)),
    "mv_rows": lambda x: torch.stack([torch.mv(W.to(x.dtype), r) for r in x]),
    "softmax": lambda x: torch.softmax(x, -1),
    "log_softmax": lambda x: torch.log_softmax(x, -1),
    "layer_norm": lambda x: F.layer_norm(x, (K,), LNW.to(x.dtype), LNB.to(x.dtype)),
    "rms_norm": lambda x: F.rms_norm(x, (K,), LNW.to(x.dtype), 1e-6),
    "sum": lambda x: x.sum(-1),
    "mean": lambda x: x.mean(-1, keepdim=True),
    "var": lambda x: x.var(-1),
    "std": lambda x: x.std(-1, correction=0),
    "norm": lambda x: torch.linalg.vector_norm(x, dim=-1),
    "gelu": lambda x: F.gelu(x * 3),
    "gelu_tanh": lambda x: F.gelu(x * 3, approximate="tanh"),
    "silu": F.silu,
    "sigmoid": torch.sigmoid,
    "rsqrt": lambda x: torch.rsqrt(x.abs() + 0.1),
    "sdpa_rows": lambda x: F.scaled_dot_product_attention(
        x.view(-1, 1, 4, K // 4), x.view(-1, 1, 4, K // 4).flip(-2), x.view(-1, 1, 4, K // 4)
    ).reshape(x.size(0), -1),
}


@pytest.mark.parametrize("dtype", GRID_DTYPES, ids=str)
@pytest.mark.parametrize("name", sorted(ROW_OPS))
def test_row_invariance(name, dtype, threads):
    op = ROW_OPS[name]
    # crc32, not hash(): str hashes change with PYTHONHASHSEED, and so would the data
    gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    item = torch.randn(1, K, generator=gen).to(dtype)
    team = 1  # the most threads a kernel of this case ran on
    with samebits.batch_invariant():
        threads(1)
        alone = op(item)[0]
        for t in THREADS:
            threads(t)
            for m in BATCH_SIZES:
                for pos in sorted({0, m // 2, m - 1}):
                    batch = torch.randn(m, K, generator=gen).to(dtype)
                    batch[pos] = item[0]
                    out = op(batch)[pos]
                    team = max(team, last_kernel_threads())
                    assert same_bits(out, alone), f"{name} {dtype} threads={t} M={m} pos={pos}"
    # the thread axis is real: SAMEBITS_MIN_PARALLEL_WORK=0 (tests/conftest.py) makes
    # these small shapes split across the threads they are given
    assert team >= 2, f"{name} {dtype}: every kernel call ran on one thread"


def test_thread_count_does_not_change_our_whole_sum(threads):
    x = torch.randn(4_000_000, generator=torch.Generator().manual_seed(1))
    ours = set()
    for t in THREADS:
        threads(t)
        with samebits.batch_invariant():
            ours.add((x.sum().item(), x.mean().item(), x.view(100, -1).sum(1).sum().item()))
    assert len(ours) == 1


def test_canary_native_whole_sum_varies_with_threads(threads):
    """A canary on torch, not a test of samebits: the native sum's bits change with
    the thread count on the hosts we measured; where they do not, it skips."""
    x = torch.randn(4_000_000, generator=torch.Generator().manual_seed(1))
    native = set()
    for t in THREADS:
        threads(t)
        native.add(x.sum().item())
    if len(native) == 1:
        pytest.skip("canary: this torch build's whole-tensor sum does not vary with threads")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("side", ["left", "right"])
def test_sequence_reductions_ignore_padding(dtype, side):
    """Masked mean pooling and attention over a padded sequence axis (B, L, H)."""
    gen = torch.Generator().manual_seed(2)
    L, H = 7, 32
    item = torch.randn(1, L, H, generator=gen).to(dtype)
    mask1 = torch.ones(1, L, dtype=torch.bool)

    def pool(x, mask):
        m = mask.unsqueeze(-1).to(x.dtype)
        return (x * m).sum(1) / m.sum(1).clamp(min=1)

    def attend(x, mask):
        q = x.view(x.size(0), x.size(1), 4, H // 4).transpose(1, 2)  # (B, h, L, d)
        return F.scaled_dot_product_attention(q, q, q, attn_mask=mask[:, None, None, :])

    with samebits.batch_invariant():
        p_alone, a_alone = pool(item, mask1)[0], attend(item, mask1)[0]
        for pad in (1, 4, 9):
            x = torch.randn(3, L + pad, H, generator=gen).to(dtype)
            mask = torch.zeros(3, L + pad, dtype=torch.bool)
            sl = slice(pad, None) if side == "left" else slice(0, L)
            x[1, sl], mask[1, sl] = item[0], True
            mask[0], mask[2] = True, True
            assert same_bits(pool(x, mask)[1], p_alone)
            assert same_bits(attend(x, mask)[1][:, sl], a_alone)


def test_the_grid_catches_native_variance():
    """The same comparisons fail without the mode on BLAS builds whose GEMV/GEMM
    paths differ by M (MKL here): the grid is able to fail. A canary elsewhere."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(64, 384, generator=gen)
    w = torch.randn(1536, 384, generator=gen)
    full = F.linear(x, w)
    if all(same_bits(F.linear(x[:m], w)[0], full[0]) for m in (1, 2, 3)):
        pytest.skip("canary: this torch/BLAS build's linear rows do not vary with M")
    with samebits.batch_invariant():
        full = F.linear(x, w)
        assert all(same_bits(F.linear(x[:m], w)[0], full[0]) for m in (1, 2, 3))


def test_native_gelu_bits_depend_on_position_ours_do_not():
    """torch's scalar tail and SLEEF body disagree for gelu in float32."""
    x = torch.randn(4096, generator=torch.Generator().manual_seed(4)) * 3
    tail = torch.stack([F.gelu(x[i : i + 1])[0] for i in range(256)])
    if same_bits(tail, F.gelu(x)[:256]):
        pytest.skip("canary: this torch build's gelu tail and body agree")
    with samebits.batch_invariant():
        tail = torch.stack([F.gelu(x[i : i + 1])[0] for i in range(256)])
        assert same_bits(tail, F.gelu(x)[:256])
