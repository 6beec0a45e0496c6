import pytest
import torch
import torch.nn.functional as F

import samebits
from samebits.errors import NotInvariantError, UnsupportedInputError
from samebits.ops import matmul
from tests.conftest import TOL, same_bits

DT = [torch.float32, torch.bfloat16, torch.float16]


def rnd(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


@pytest.mark.parametrize("dtype", DT, ids=str)
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (1, 7, 5), (3, 8, 4), (17, 33, 9), (64, 384, 130)])
def test_mm_matches_reference_both_orders(m, k, n, dtype):
    a, b = rnd(m, k, dtype=dtype), rnd(k, n, dtype=dtype, seed=1)
    ref = matmul._reference(a, b)
    torch.testing.assert_close(matmul.mm(a, b), ref, **TOL[dtype])  # SEQ (a generic product)
    bt = b.t().contiguous().t()  # same values, K-contiguous: still SEQ, the same bits
    assert same_bits(matmul.mm(a, bt), matmul.mm(a, b))
    dot = matmul.bmm_f32(a.unsqueeze(0), bt.unsqueeze(0), order="dot")[0].to(dtype)  # linear's
    torch.testing.assert_close(dot, ref, **TOL[dtype])


@pytest.mark.parametrize("dtype", DT, ids=str)
def test_linear_addmm_bmm_baddbmm_match_native(dtype):
    x, w, bias = (
        rnd(5, 3, 24, dtype=dtype),
        rnd(10, 24, dtype=dtype, seed=1),
        rnd(10, dtype=dtype, seed=2),
    )
    ref = F.linear(x.double(), w.double(), bias.double()).to(dtype)
    torch.testing.assert_close(matmul.linear(x, w, bias), ref, **TOL[dtype])
    torch.testing.assert_close(
        matmul.linear(x, w), F.linear(x.double(), w.double()).to(dtype), **TOL[dtype]
    )
    x2 = x.reshape(-1, 24)
    ref2 = (0.5 * bias.double() + 2.0 * x2.double() @ w.double().t()).to(dtype)
    torch.testing.assert_close(
        matmul.addmm(bias, x2, w.t(), beta=0.5, alpha=2.0), ref2, **TOL[dtype]
    )
    a, b, c = (
        rnd(4, 6, 9, dtype=dtype),
        rnd(4, 9, 3, dtype=dtype, seed=1),
        rnd(4, 6, 3, dtype=dtype, seed=2),
    )
    torch.testing.assert_close(matmul.bmm(a, b), (a.double() @ b.double()).to(dtype), **TOL[dtype])
    torch.testing.assert_close(
        matmul.baddbmm(c, a, b, beta=1, alpha=1),
        (c.double() + a.double() @ b.double()).to(dtype),
        **TOL[dtype],
    )


def test_mv_dot_and_strided_operands():
    a, v = rnd(9, 13), rnd(13, seed=1)
    torch.testing.assert_close(
        matmul.mv(a, v), (a.double() @ v.double()).float(), **TOL[torch.float32]
    )
    torch.testing.assert_close(
        matmul.dot(v, v), (v.double() @ v.double()).float(), **TOL[torch.float32]
    )
    big = rnd(20, 30)
    sa, sb = big[::2, 1:14], big[1:14:1, ::3]  # non-contiguous views
    torch.testing.assert_close(matmul.mm(sa, sb), matmul._reference(sa, sb), **TOL[torch.float32])


def test_empty_and_zero_k():
    assert matmul.mm(rnd(0, 4), rnd(4, 3)).shape == (0, 3)
    out = matmul.mm(torch.empty(3, 0), torch.empty(0, 5))
    assert out.shape == (3, 5) and torch.equal(out, torch.zeros(3, 5))


def test_integer_matmul_passes_through_exactly():
    a = torch.randint(-5, 5, (4, 6))
    b = torch.randint(-5, 5, (6, 3))
    with samebits.batch_invariant():
        out = a @ b
    assert torch.equal(out, (a.double() @ b.double()).long())


def test_float64_is_refused_with_a_clear_message():
    with (
        samebits.batch_invariant(),
        pytest.raises(NotInvariantError, match=r"aten::mm.*float64.*shape=\(2, 3\)"),
    ):
        torch.mm(torch.ones(2, 3, dtype=torch.float64), torch.ones(3, 2, dtype=torch.float64))


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(UnsupportedInputError, match="do not chain"):
        matmul.mm(rnd(2, 3), rnd(4, 2))


def test_out_and_inplace_variants_are_covered():
    a, w, bias = rnd(3, 16), rnd(8, 16, seed=1), rnd(8, seed=2)
    with samebits.batch_invariant():
        ref = torch.addmm(bias, a, w.t())
        out = torch.empty(0)
        torch.addmm(bias, a, w.t(), out=out)
        inplace = bias.expand(3, 8).clone().addmm_(a, w.t())
        assert same_bits(out, ref) and same_bits(inplace, ref)
        # the single row inside a batch, through the out= path, matches too
        one = torch.empty(0)
        torch.addmm(bias, a[1:2], w.t(), out=one)
        assert same_bits(one[0], ref[1])


def test_generic_products_share_one_order_whatever_the_layout():
    """addmm and matmul are generic products: SEQ order, the same bits for W.T as a view
    or as a contiguous copy. linear (the weight's role) keeps its own DOT order."""
    x, w = rnd(7, 40), rnd(12, 40, seed=1)
    with samebits.batch_invariant():
        b, c = torch.addmm(torch.zeros(12), x, w.t()), x @ w.t()
        d = x @ w.t().contiguous()
        a = F.linear(x, w)
    assert same_bits(b, c) and same_bits(c, d)
    seq = matmul.bmm_f32(x.unsqueeze(0), w.t().unsqueeze(0), order="seq")[0]
    dot = matmul.bmm_f32(x.unsqueeze(0), w.t().unsqueeze(0), order="dot")[0]
    assert same_bits(c, seq) and same_bits(a, dot)


@pytest.mark.parametrize("k", [3, 9, 517, 1029])
def test_float32_rows_read_in_place_have_the_packed_bits(k):
    """The DOT kernel reads float32 rows of A in place when they are short (stride
    < 2048, not a multiple of 1024) and packs them otherwise (lanes past K then
    multiply packed zeros): both give the same bits, also for rows of -0, inf, NaN."""
    x = rnd(70, k)
    x[3] = -0.0
    x[4, 0], x[5, k - 1], x[6, k // 2] = float("inf"), float("nan"), -float("inf")
    w = rnd(600, k, seed=1)
    w[7] = -0.0
    wide = torch.zeros(70, 4096 + k)
    wide[:, :k] = x
    strided = wide[:, :k]  # row stride 4096 + k floats: the packing path
    assert strided.stride(0) >= 2048 and x.stride(0) < 2048 and x.stride(0) % 1024
    direct = matmul.bmm_f32(x.unsqueeze(0), w.t().unsqueeze(0), order="dot")[0]
    packed = matmul.bmm_f32(strided.unsqueeze(0), w.t().unsqueeze(0), order="dot")[0]
    assert same_bits(direct, packed)
    assert direct[3].eq(0).all() and not direct[3].signbit().any()  # +0, as the packed zeros give


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("k", [7, 8, 9, 384, 517, 1029, 4100])
@pytest.mark.parametrize("order", ["dot", "seq"])
def test_every_kernel_path_gives_the_same_row_bits(order, k, dtype, threads):
    """Few rows and many rows run different kernels (in-place vs packed, K blocks,
    column tiles); each output row must come out with the same bits either way."""
    n = 600  # not a multiple of the 16-column panels; wide enough for the packed DOT kernel
    x = rnd(70, k, dtype=dtype)
    w = rnd(n, k, dtype=dtype, seed=1)  # (N, K): w.t() is K-contiguous, DOT order
    bias = rnd(n, dtype=dtype, seed=2)
    b = w.t() if order == "dot" else w.t().contiguous()
    full = matmul.bmm_f32(x.unsqueeze(0), b.unsqueeze(0), order=order, bias=bias)[0]
    tol = dict(TOL[torch.float32])
    tol["atol"] *= max(1.0, k / 1024)  # float32 sums of k products: error grows with k
    torch.testing.assert_close(full, (x.double() @ b.double() + bias.double()).float(), **tol)
    # 17..64 rows with K >= 1024 run the in-place kernel on AVX-512 too (float32)
    for lo, hi in [(0, 1), (5, 7), (10, 14), (20, 28), (30, 43), (69, 70), (0, 40), (6, 70)]:
        part = matmul.bmm_f32(x[lo:hi].unsqueeze(0), b.unsqueeze(0), order=order, bias=bias)[0]
        assert same_bits(part, full[lo:hi]), (lo, hi)
    for t in (1, 3):
        threads(t)
        again = matmul.bmm_f32(x.unsqueeze(0), b.unsqueeze(0), order=order, bias=bias)[0]
        assert same_bits(again, full), t


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("m,k,n", [(1, 1536, 384), (3, 9, 600), (70, 384, 40), (33, 2, 5)])
def test_linear_fast_path_has_the_general_paths_bits(m, k, n, dtype):
    """linear's direct call (contiguous rows, same-dtype bias) and the general
    bmm_f32 path (taken for strided rows) give the same bits."""
    x, w, b = rnd(m, k, dtype=dtype), rnd(n, k, dtype=dtype, seed=1), rnd(n, dtype=dtype, seed=2)
    fast = matmul.linear(x, w, b)
    assert matmul._linear_direct(x, w, b, dtype) is not None
    general = matmul.bmm_f32(x.unsqueeze(0), w.t().unsqueeze(0), order="dot", bias=b)[0].to(dtype)
    assert fast.dtype == dtype
    assert same_bits(fast, general)
    if m > 1:  # strided rows take the general path through linear itself
        strided = torch.cat([x, x], dim=1)[:, :k]
        assert matmul._linear_direct(strided, w, b, dtype) is None
        assert same_bits(matmul.linear(strided, w, b), fast)
        assert same_bits(matmul.linear(strided, w), matmul.linear(x, w))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_batched_matmul_with_a_transposed_key_is_batch_invariant(dtype, threads):
    """Eager attention's q @ k.transpose(-1, -2) on a (B, S, H, D) projection: torch's
    matmul folds (1, H, D, S) without a copy and (3, H, D, S) with one, which once
    changed the order with the batch size; the order is now the generic products' SEQ
    whatever the layout."""
    g = torch.Generator().manual_seed(0)
    B, S, H, D = 5, 10, 4, 8
    k = torch.randn(B, S, H * D, generator=g).to(dtype).view(B, S, H, D).transpose(1, 2)
    q = torch.randn(B, H, S, D, generator=g).to(dtype)
    with samebits.batch_invariant():
        threads(2)
        full = torch.matmul(q, k.transpose(2, 3))
        threads(1)
        rows = [torch.matmul(q[i : i + 1], k[i : i + 1].transpose(2, 3)) for i in range(B)]
    for i in range(B):
        assert torch.equal(full[i : i + 1], rows[i])
    torch.testing.assert_close(full, (q.double() @ k.double().transpose(2, 3)).to(dtype))


EINSUMS = {
    "bhqd,bhkd->bhqk": lambda q, k: (q, k),
    "bqhd,bkhd->bhqk": lambda q, k: (q.transpose(1, 2), k.transpose(1, 2)),
    "bhqk,bhkd->bhqd": lambda q, k: (torch.softmax(q @ k.transpose(2, 3), -1), k),
}


@pytest.mark.parametrize("eq", sorted(EINSUMS))
def test_two_operand_einsum_is_batch_invariant(eq, threads):
    g = torch.Generator().manual_seed(1)
    B, S, H, D = 4, 9, 4, 8
    q = torch.randn(B, S, H * D, generator=g).view(B, S, H, D).transpose(1, 2)
    k = torch.randn(B, S, H * D, generator=g).view(B, S, H, D).transpose(1, 2)
    with samebits.batch_invariant():
        threads(2)
        full = torch.einsum(eq, *EINSUMS[eq](q, k))
        threads(1)
        rows = [torch.einsum(eq, *EINSUMS[eq](q[i : i + 1], k[i : i + 1])) for i in range(B)]
    assert all(torch.equal(full[i : i + 1], rows[i]) for i in range(B))
    ops = [t.double() for t in EINSUMS[eq](q, k)]
    torch.testing.assert_close(full, torch.einsum(eq, *ops).float(), **TOL[torch.float32])


@pytest.mark.parametrize(
    "eq,shapes",
    [("ij,jk", [(4, 5), (5, 6)]), ("i,j->ij", [(4,), (6,)]), ("bi,bi->b", [(4, 5), (4, 5)]),
     ("ii->i", [(3, 3)]), ("ij,jk,kl->il", [(4, 5), (5, 6), (6, 2)]),
     ("...ij,...jk->...ik", [(2, 4, 5), (5, 3)])],
)  # fmt: skip
def test_einsum_forms_match_float64(eq, shapes):
    g = torch.Generator().manual_seed(2)
    ops = [torch.randn(*s, generator=g) for s in shapes]
    with samebits.batch_invariant():
        out = torch.einsum(eq, *ops)
    ref = torch.einsum(eq, *[o.double() for o in ops]).float()
    torch.testing.assert_close(out, ref, **TOL[torch.float32])


# -------------------------------------------------- the batch on every axis
# The order of a product comes from the role of the reduced dimension (linear: the
# weight's input features, DOT/PAIR; every generic product: SEQ), never from strides,
# contiguity or which sizes are 1. So an item's outputs have the same bits wherever the
# batch sits: rows of A, columns of B, the batch of bmm, at 1, 2 and 9 items, and
# whatever layout the batch's tensor has.
AXES = {
    # name: (build the batched call from items stacked along dim 0, how to slice item i)
    "mm rows of A": (lambda X, W: torch.mm(X, W.t()), lambda y, i: y[i]),
    "mm columns of B": (lambda X, W: torch.mm(W, X.t()), lambda y, i: y[:, i]),
    "mm columns of B (contiguous)": (
        lambda X, W: torch.mm(W, X.t().contiguous()),
        lambda y, i: y[:, i],
    ),
    "matmul columns of B": (lambda X, W: torch.matmul(W, X.t()), lambda y, i: y[:, i]),
    "matmul rows of A": (lambda X, W: torch.matmul(X.unsqueeze(1), W.t()), lambda y, i: y[i, 0]),
    "bmm batch": (
        lambda X, W: torch.bmm(X.view(X.size(0), 4, 8), W[:8, :4].expand(X.size(0), 8, 4)),
        lambda y, i: y[i],
    ),
    "einsum columns": (lambda X, W: torch.einsum("nk,mk->mn", X, W), lambda y, i: y[:, i]),
    "linear rows": (lambda X, W: F.linear(X, W), lambda y, i: y[i]),
    "mv": (lambda X, W: torch.stack([torch.mv(W, x) for x in X], 1), lambda y, i: y[:, i]),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("axis", sorted(AXES))
def test_an_item_has_the_same_bits_wherever_the_batch_sits(axis, dtype, threads):
    batched, item = AXES[axis]
    g = torch.Generator().manual_seed(7)
    W = torch.randn(24, 32, generator=g).to(dtype)  # (M, K) weight-like
    X = torch.randn(9, 32, generator=g).to(dtype)  # 9 items of K features
    with samebits.batch_invariant():
        threads(1)
        alone = [item(batched(X[i : i + 1], W), 0) for i in range(9)]
        for n in (1, 2, 9):
            for t in (1, 2):
                threads(t)
                out = batched(X[:n], W)
                for i in range(n):
                    assert same_bits(item(out, i), alone[i]), (axis, n, t, i)
        # the batch as a transposed view: the same items, another layout
        out = batched(X.t().contiguous().t(), W)
        assert all(same_bits(item(out, i), alone[i]) for i in range(9))
