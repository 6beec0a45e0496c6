"""The reducing backward kernels (softmax, log_softmax, layer_norm, embedding): close to
torch's gradients, and each row's (or each sequence's) gradient has the same bits
alone as inside a batch whose other rows carry exact-zero gradients."""

import pytest
import torch
import torch.nn.functional as F

import samebits
from samebits.ops import backward
from tests.conftest import TOL, same_bits

DTYPES = [torch.float32, torch.bfloat16]


def rnd(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_backward_matches_torch_and_rows_are_alone(log, dtype, threads):
    x, g = rnd(9, 37, dtype=dtype), rnd(9, 37, dtype=dtype, seed=1)
    y = (torch.log_softmax if log else torch.softmax)(x, -1)
    fn = backward.log_softmax_backward_data if log else backward.softmax_backward_data
    native = (
        torch.ops.aten._log_softmax_backward_data if log else torch.ops.aten._softmax_backward_data
    )
    full = fn(g, y, -1, dtype)
    tol = dict(TOL[dtype])
    if dtype == torch.bfloat16:
        tol = dict(rtol=5e-2, atol=5e-2)
    torch.testing.assert_close(
        full, native(g.double(), y.double(), -1, torch.float64).to(dtype), **tol
    )
    for t in (1, 2):
        threads(t)
        for i in range(9):
            assert same_bits(fn(g[i : i + 1], y[i : i + 1], -1, dtype), full[i : i + 1])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_layer_norm_backward_matches_torch(dtype):
    x, g = rnd(6, 5, 32, dtype=dtype), rnd(6, 5, 32, dtype=dtype, seed=1)
    w, b = rnd(32, dtype=dtype, seed=2), rnd(32, dtype=dtype, seed=3)
    _, mean, rstd = torch.ops.aten.native_layer_norm(x, [32], w, b, 1e-5)
    got = backward.native_layer_norm_backward(g, x, [32], mean, rstd, w, b, [True, True, True])
    xd, wd, bd = (t.double().requires_grad_() for t in (x, w, b))
    ref = torch.autograd.grad(
        (F.layer_norm(xd, (32,), wd, bd, 1e-5) * g.double()).sum(), [xd, wd, bd]
    )
    tol = TOL[dtype] if dtype == torch.float32 else dict(rtol=5e-2, atol=1e-1)
    for a, r in zip(got, ref, strict=True):
        torch.testing.assert_close(a, r.to(dtype), **tol)


def test_embedding_backward_sums_occurrences_in_order():
    g = rnd(2, 6, 8)
    ids = torch.tensor([[3, 1, 3, 0, 5, 3], [1, 1, 0, 2, 5, 4]])
    got = backward.embedding_dense_backward(g, ids, 7, 0, False)
    ref = torch.ops.aten.embedding_dense_backward(g.double(), ids, 7, 0, False)
    torch.testing.assert_close(got, ref.float())
    assert got[0].eq(0).all() and got[6].eq(0).all()  # padding_idx and an unused row
    scaled = backward.embedding_dense_backward(g, ids, 7, -1, True)
    torch.testing.assert_close(scaled, torch.ops.aten.embedding_dense_backward(g, ids, 7, -1, True))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_a_sequences_gradients_are_the_same_alone_and_in_a_padded_batch(dtype):
    """Embedding -> layer_norm -> softmax/log_softmax, the loss one sequence's term: that
    sequence's input gradient and every weight gradient have the same bits when it runs
    alone and when it sits, right-padded, among other sequences."""
    torch.manual_seed(0)
    emb = torch.nn.Embedding(30, 16).to(dtype)
    norm = torch.nn.LayerNorm(16).to(dtype)
    seqs = [torch.randint(1, 30, (n,)) for n in (5, 9, 3)]

    def grads(batch_ids, row, length):
        emb.zero_grad(), norm.zero_grad()
        h = norm(emb(batch_ids))
        out = torch.softmax(h, -1) * torch.log_softmax(h * 3, -1)
        out[row, :length].sum().backward()
        return [p.grad.clone() for p in (emb.weight, norm.weight, norm.bias)]

    with samebits.batch_invariant():
        alone = grads(seqs[0].unsqueeze(0), 0, 5)
        padded = torch.zeros(3, 9, dtype=torch.long)
        for i, s in enumerate(seqs):
            padded[i, : s.numel()] = s
        for row in (0,):
            batch = grads(padded, row, 5)
        # and at another position in the batch
        moved = padded[[1, 2, 0]]
        batch2 = grads(moved, 2, 5)
    for a, b, c in zip(alone, batch, batch2, strict=True):
        assert same_bits(a, b) and same_bits(a, c)


CONVS = [  # (dims, stride, padding, dilation, groups, kernel)
    (1, 3, 2, 1, 1, 3), (2, 1, 1, 1, 1, 3), (2, 2, 1, 2, 2, 3), (2, 8, 0, 1, 1, 8),
    (3, 1, 1, 1, 1, 3),
]  # fmt: skip


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CONVS, ids=str)
def test_convolution_backward_matches_torch_and_a_samples_gradients_are_its_own(case, dtype):
    nd, stride, pad, dil, groups, k = case
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 4, *([12] * nd), generator=g).to(dtype)
    w = torch.randn(6, 4 // groups, *([k] * nd), generator=g).to(dtype)
    b = torch.randn(6, generator=g).to(dtype)

    def grads(xs, row):
        ps = [t.clone().requires_grad_() for t in (xs, w, b)]
        y = conv(*ps, stride, pad, dil, groups)
        (y[row] ** 2).sum().backward()
        return ps[0].grad[row], ps[1].grad, ps[2].grad

    with samebits.batch_invariant():
        alone = grads(x[2:3], 0)
        batch = grads(x, 2)
    for a, c in zip(alone, batch, strict=True):
        assert same_bits(a, c)
    ps = [t.double().requires_grad_() for t in (x, w, b)]
    (conv(*ps, stride, pad, dil, groups)[2] ** 2).sum().backward()
    tol = TOL[dtype] if dtype == torch.float32 else dict(rtol=2e-2, atol=5e-2)
    for got, ref in zip(batch, (ps[0].grad[2], ps[1].grad, ps[2].grad), strict=True):
        scale = ref.abs().max().item()
        torch.testing.assert_close(got.double() / scale, ref / scale, **tol)
