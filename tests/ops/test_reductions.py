import functools
import math

import numpy as np
import pytest
import torch

import samebits
from samebits.errors import NotInvariantError, UnsupportedInputError
from samebits.ops import reductions
from tests.conftest import TOL, same_bits


def rnd(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("dim", [None, 0, 1, -1, (0, 2), (1, 2), ()])
@pytest.mark.parametrize("keepdim", [False, True])
def test_sum_mean_match_torch(dtype, dim, keepdim):
    x = rnd(4, 5, 6, dtype=dtype)
    with samebits.batch_invariant():
        s = x.sum(dim=dim, keepdim=keepdim) if dim is not None else x.sum()
        m = x.mean(dim=dim, keepdim=keepdim) if dim is not None else x.mean()
    xs = x.double()
    rs = xs.sum(dim=dim, keepdim=keepdim) if dim is not None else xs.sum()
    rm = xs.mean(dim=dim, keepdim=keepdim) if dim is not None else xs.mean()
    torch.testing.assert_close(s, rs.to(dtype), **TOL[dtype])
    torch.testing.assert_close(m, rm.to(dtype), **TOL[dtype])


@pytest.mark.parametrize("correction", [0, 1, 2])
def test_var_std_var_mean(correction):
    x = rnd(6, 9) * 5 + 3
    with samebits.batch_invariant():
        v, s = x.var(1, correction=correction), x.std(0, correction=correction)
        vm = torch.var_mean(x, 1, correction=correction, keepdim=True)
        sm = torch.std_mean(x, 1, correction=correction)
    torch.testing.assert_close(v, x.double().var(1, correction=correction).float())
    torch.testing.assert_close(s, x.double().std(0, correction=correction).float())
    torch.testing.assert_close(
        vm[0], x.double().var(1, correction=correction, keepdim=True).float()
    )
    torch.testing.assert_close(vm[1], x.double().mean(1, keepdim=True).float())
    torch.testing.assert_close(sm[0], x.double().std(1, correction=correction).float())


def test_vector_norm_and_dtype_arg():
    x = rnd(5, 7)
    with samebits.batch_invariant():
        n = torch.linalg.vector_norm(x, dim=1)
        total = torch.ones(3, 4, dtype=torch.int64).sum(dtype=torch.float32)
        ints = torch.arange(10).sum()
        wide = torch.linalg.vector_norm(x, 1, dtype=torch.float64)
        with pytest.raises(NotInvariantError, match="ord=3 with dtype=float64"):
            torch.linalg.vector_norm(x, 3, dtype=torch.float64)
    torch.testing.assert_close(n, x.double().norm(dim=1).float())
    assert total.dtype == torch.float32 and total.item() == 12 and ints.item() == 45
    assert wide.dtype == torch.float64 and wide.item() == x.double().abs().sum().item()


ORDS = [2, 1, math.inf, -math.inf, 0, 3, 0.5, -1.5]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("ord", ORDS, ids=str)
def test_p_norms_match_float64_in_every_form(dtype, ord):
    x = rnd(4, 6, 5, dtype=dtype)
    x[0, 0, 0] = 0
    for dim, keepdim in ((None, False), (1, True), ((0, 2), False)):
        ref = torch.linalg.vector_norm(x.double(), ord, dim, keepdim).to(dtype)
        with samebits.batch_invariant():
            got = torch.linalg.vector_norm(x, ord, dim, keepdim)
            legacy = torch.norm(x, ord, dim, keepdim) if dim is not None else torch.norm(x, ord)
            out = torch.empty(0, dtype=dtype)
            torch.linalg.vector_norm(x, ord, dim, keepdim, out=out)
        torch.testing.assert_close(got, ref, **TOL[dtype])
        assert same_bits(legacy, got) and same_bits(out, got), (dim, keepdim)
    with samebits.batch_invariant():
        d = torch.dist(x[0], x[1], ord)
        rn = torch.renorm(x, ord, 0, 2.0) if ord > 0 else None
    torch.testing.assert_close(
        d, torch.dist(x[0].double(), x[1].double(), ord).to(dtype), **TOL[dtype]
    )
    if rn is not None:
        torch.testing.assert_close(
            rn, torch.renorm(x.double(), ord, 0, 2.0).to(dtype), **TOL[dtype]
        )


def test_matrix_norms_reach_the_covered_reductions():
    x = rnd(3, 5, 4)
    with samebits.batch_invariant():
        got = [torch.linalg.matrix_norm(x, o) for o in ("fro", 1, -1, math.inf, -math.inf)]
        got.append(torch.linalg.norm(x, dim=(1, 2)))
        got.append(torch.ops.aten.linalg__powsum(x, 3, [2]))
    refs = [torch.linalg.matrix_norm(x.double(), o) for o in ("fro", 1, -1, math.inf, -math.inf)]
    refs += [torch.linalg.norm(x.double(), dim=(1, 2)), x.double().abs().pow(3).sum(2)]
    for a, r in zip(got, refs, strict=True):
        torch.testing.assert_close(a, r.float())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("dim", [-1, 0, (0, 2)], ids=str)
@pytest.mark.parametrize("keepdim", [False, True])
def test_logsumexp_matches_float64(dtype, dim, keepdim):
    x = rnd(4, 5, 6, dtype=dtype) * 8
    with samebits.batch_invariant():
        got = torch.logsumexp(x, dim, keepdim)
        out = torch.empty(0, dtype=dtype)
        torch.logsumexp(x, dim, keepdim, out=out)
    torch.testing.assert_close(
        got, torch.logsumexp(x.double(), dim, keepdim).to(dtype), **TOL[dtype]
    )
    assert same_bits(out, got)


def test_logsumexp_special_rows_follow_torch():
    inf, nan = math.inf, math.nan
    x = torch.tensor([[-inf] * 3, [1, inf, -inf], [nan, 1, 2], [1, 2, -inf], [inf, inf, 0]])
    with samebits.batch_invariant():
        got = torch.logsumexp(x, 1)
        empty = torch.logsumexp(torch.zeros(3, 0), 1)
        ints = torch.logsumexp(torch.arange(6).view(2, 3), 1)
    assert torch.equal(got.isnan(), torch.logsumexp(x, 1).isnan())
    assert torch.equal(got.nan_to_num(0), torch.logsumexp(x, 1).nan_to_num(0))
    assert torch.equal(empty, torch.full((3,), -inf)) and ints.dtype == torch.float32
    torch.testing.assert_close(ints, torch.logsumexp(torch.arange(6.0).view(2, 3), 1))


def test_logsumexp_masked_positions_add_nothing():
    row = rnd(9) * 3
    with samebits.batch_invariant():
        alone = torch.logsumexp(row, 0)
        for pad in (1, 4):
            mask = torch.full((pad,), -math.inf)
            assert same_bits(torch.logsumexp(torch.cat([mask, row, mask]), 0), alone)


ROW_OPS = {
    "logsumexp": lambda x: torch.logsumexp(x, -1),
    **{f"norm_{o}": functools.partial(torch.linalg.vector_norm, ord=o, dim=-1) for o in ORDS},
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("name", sorted(ROW_OPS))
def test_a_row_has_the_same_bits_alone_and_in_a_batch(name, dtype, isa, threads):
    op = ROW_OPS[name]
    item = rnd(1, 37, dtype=dtype, seed=11) * 4
    gen = torch.Generator().manual_seed(12)
    with samebits.batch_invariant():
        threads(1)
        alone = op(item)
        for t in (1, 2, 3):
            threads(t)
            for m in (2, 5):
                for pos in (0, m - 1):
                    batch = (torch.randn(m, 37, generator=gen) * 4).to(dtype)
                    batch[pos] = item[0]
                    assert same_bits(op(batch)[pos : pos + 1], alone), (m, pos, t)
                    cols = op(batch.t().contiguous().t())  # a transposed layout
                    assert same_bits(cols[pos : pos + 1], alone), (m, pos, t)


@pytest.mark.parametrize("dim", [None, 0, 1])
def test_a_float64_sum_of_float32_data_accumulates_in_float64(dim):
    """x.sum(dtype=torch.float64) of float32 values is a float64 sum (whole-tensor and
    along dims), never a float32 sum widened afterwards: float32 rounding would be off
    by millions of float64 ulp here. Invariant to the thread count and to rows."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(64, 1000, generator=g) * torch.logspace(-3, 3, 1000)  # wide magnitudes
    exact = x.double().sum() if dim is None else x.double().sum(dim)
    with samebits.batch_invariant():
        got = x.sum(dtype=torch.float64) if dim is None else x.sum(dim, dtype=torch.float64)
        f32 = x.sum() if dim is None else x.sum(dim)
    assert got.dtype == torch.float64
    rel = ((got - exact).abs() / exact.abs().clamp(min=1e-300)).max().item()
    assert rel < 1e-12, rel
    widened = ((f32.double() - exact).abs() / exact.abs().clamp(min=1e-300)).max().item()
    assert widened > 1e-9  # the float32 sum is measurably off: this test would see it
    if dim == 1:
        with samebits.batch_invariant():
            row = x[5:6].sum(1, dtype=torch.float64)
        assert same_bits(row, got[5:6])


def test_sum_is_sequential_so_zero_padding_is_free():
    x = rnd(10)
    with samebits.batch_invariant():
        alone = x.sum(0)
        for pad in (1, 5):
            z = torch.zeros(pad)
            assert same_bits(torch.cat([z, x, z]).sum(0), alone)


def all_order(x: torch.Tensor) -> float:
    """The ALL order in plain Python: 4096-element chunks, each in eight double lanes
    summed in order, the lane tree, then the chunks left to right."""
    v = x.reshape(-1).double().tolist()
    total = 0.0
    for a in range(0, len(v), 4096):
        lanes = [0.0] * 8
        for i, e in enumerate(v[a : a + 4096]):
            lanes[i % 8] += e
        l0, l1, l2, l3, l4, l5, l6, l7 = lanes
        total += ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))
    return total


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_whole_sum_is_the_all_order_on_every_path(dtype, isa, threads):
    """Full chunks run several side by side, the rest one by one: both the order's bits.
    Large values of mixed signs make every double rounding count."""
    g = torch.Generator().manual_seed(7)
    n = 8 * 4096 * 5 + 5 * 4096 + 77  # groups of 8 (or 4) full chunks, 5 more, a tail
    x = (torch.randn(n, generator=g) * torch.exp(torch.randn(n, generator=g) * 8)).to(dtype)
    want = all_order(x)
    for nt in (1, 2):
        threads(nt)
        got = reductions.sum_all(x, keep_f64=True)  # the double before its one rounding
        assert got.item() == want, (isa, nt)
        with samebits.batch_invariant():
            assert same_bits(x.sum(), torch.tensor(want, dtype=torch.float64).to(dtype))


def test_empty_reductions_follow_torch():
    e = torch.empty(0, 3)
    with samebits.batch_invariant():
        assert torch.equal(e.sum(0), torch.zeros(3)) and e.sum().item() == 0
        assert torch.isnan(e.mean(0)).all() and math.isnan(e.mean().item())


def test_bad_dim():
    with pytest.raises(UnsupportedInputError, match="dim 3 out of range"):
        reductions.sum(rnd(2, 2), 3)


def sequential_scan(x: torch.Tensor, dim: int, op: str) -> torch.Tensor:
    """An independent scan in numpy: one element after another along dim, in torch's
    accumulate type (double for float32, float for bfloat16 and float16)."""
    acc = np.float64 if x.dtype == torch.float32 else np.float32
    a = np.moveaxis(x.float().numpy().astype(acc), dim, -1)
    out, c = np.empty_like(a), np.full(a.shape[:-1], 0 if op == "sum" else 1, dtype=acc)
    for i in range(a.shape[-1]):
        c = c + a[..., i] if op == "sum" else c * a[..., i]
        out[..., i] = c
    return torch.from_numpy(np.moveaxis(out, -1, dim).copy()).to(x.dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("op", ["sum", "prod"])
def test_cumsum_cumprod_are_the_sequential_scan(dtype, op, threads):
    """cumsum and cumprod run torch's kernel under the mode (native): it must be the
    scan of docs/design.md at every thread count and layout, with rows alone."""
    g = torch.Generator().manual_seed(13)
    for shape, dim in (((7, 300), -1), ((300, 7), 0), ((3, 65, 33), 1), ((2, 5000), 1)):
        x = (torch.rand(*shape, generator=g) - 0.5) * 6
        x = (1 + x * 0.01 if op == "prod" else x).to(dtype)
        want = sequential_scan(x, dim, op)
        for t in (1, 2, 3):
            threads(t)
            for v in (x, x.transpose(0, -1).contiguous().transpose(0, -1)):
                with samebits.batch_invariant():
                    got = v.cumsum(dim) if op == "sum" else v.cumprod(dim)
                    other = 1 if dim == 0 else 0  # a row across the scanned dim
                    part = v.narrow(other, 1, 1)
                    row = part.cumsum(dim) if op == "sum" else part.cumprod(dim)
                assert same_bits(got, want), (shape, t)
                assert same_bits(row, want.narrow(other, 1, 1)), (shape, t)


def test_cumsum_padding_is_free():
    x = rnd(2, 50)
    with samebits.batch_invariant():
        full = x.cumsum(-1)
        padded = torch.cat([torch.zeros(2, 7), x], -1).cumsum(-1)[:, 7:]
        assert same_bits(full, padded) and same_bits(x[1:].cumsum(-1)[0], full[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_nansum_reads_nan_as_zero_in_the_sum_orders(dtype, threads):
    x = rnd(4, 9, dtype=dtype)
    x[1, 3] = x[2, 0] = math.nan
    clean = torch.where(x.isnan(), 0, x)
    with samebits.batch_invariant():
        for t in (1, 2):
            threads(t)
            assert same_bits(torch.nansum(x, 1), clean.sum(1))
            assert same_bits(torch.nansum(x), clean.sum())
            assert same_bits(torch.nansum(x[1:2], 1), clean.sum(1)[1:2])
        mean = torch.nanmean(x, 1)
    torch.testing.assert_close(mean, torch.nanmean(x.double(), 1).to(dtype), **TOL[dtype])
