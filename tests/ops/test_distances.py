"""cdist: every p against float64, both definitions (direct and mm), a query row's
distances the same bits alone and among any number of queries (torch switches
algorithms past 25 rows), on every kernel path and thread count; gradients."""

import math

import pytest
import torch

import samebits
from samebits.ops import distances
from tests.conftest import TOL, same_bits

PS = [2.0, 1.0, math.inf, 0.0, 3.0, 0.5]
MODES = [
    "use_mm_for_euclid_dist_if_necessary",
    "use_mm_for_euclid_dist",
    "donot_use_mm_for_euclid_dist",
]


def rnd(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("p", PS, ids=str)
def test_matches_float64(dtype, p):
    a, b = rnd(2, 30, 7, dtype=dtype), rnd(1, 27, 7, dtype=dtype, seed=1)  # batch broadcast
    ref = distances._reference(a, b, p)
    tol = TOL[dtype] if dtype == torch.float32 else dict(rtol=3e-2, atol=3e-2)
    for mode in MODES:
        with samebits.batch_invariant():
            got = torch.cdist(a, b, p, mode)
        assert got.shape == ref.shape and got.dtype == dtype
        torch.testing.assert_close(
            got,
            ref,
            **(
                tol
                if p != 2 or mode != MODES[1]
                else dict(rtol=1e-3, atol=1e-3)
                if dtype == torch.float32
                else tol
            ),
        )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("p", PS, ids=str)
@pytest.mark.parametrize("mode", MODES)
def test_a_query_has_the_same_bits_among_any_queries(dtype, p, mode, isa, threads):
    db = rnd(40, 9, dtype=dtype, seed=2)
    q = rnd(1, 9, dtype=dtype, seed=3)
    gen = torch.Generator().manual_seed(4)
    with samebits.batch_invariant():
        threads(1)
        alone = torch.cdist(q, db, p, mode)
        alone_db = torch.cdist(db[5:6], q, p, mode)
        for t in (1, 2, 3):
            threads(t)
            for m in (2, 30):  # either side of torch's 25-row switch
                for pos in (0, m - 1):
                    qs = torch.randn(m, 9, generator=gen).to(dtype)
                    qs[pos] = q[0]
                    assert same_bits(torch.cdist(qs, db, p, mode)[pos : pos + 1], alone), (m, pos)
                    assert same_bits(torch.cdist(db, qs, p, mode)[5:6, pos : pos + 1], alone_db)
            one = torch.cdist(q[None], db[None].expand(3, -1, -1), p, mode)  # batched
            assert same_bits(one[0], alone)


@pytest.mark.parametrize("p", [2.0, 1.0, math.inf, 3.0, 0.5, 1.5], ids=str)
def test_gradients_match_float64(p, threads):
    a, b = rnd(4, 6), rnd(5, 6, seed=1)
    b[0] = a[0]  # a zero distance
    w = rnd(4, 5, seed=2)
    ga, gb = [], []
    for t in (1, 2):
        threads(t)
        ar, br = a.clone().requires_grad_(), b.clone().requires_grad_()
        with samebits.batch_invariant():
            (torch.cdist(ar, br, p) * w).sum().backward()
        ga.append(ar.grad)
        gb.append(br.grad)
    ad, bd = a.double().requires_grad_(), b.double().requires_grad_()
    (torch.cdist(ad, bd, p) * w.double()).sum().backward()
    torch.testing.assert_close(ga[0], ad.grad.float(), **TOL[torch.float32])
    torch.testing.assert_close(gb[0], bd.grad.float(), **TOL[torch.float32])
    assert same_bits(ga[0], ga[1]) and same_bits(gb[0], gb[1])


def test_euclidean_dist_is_the_mm_definition():
    a, b = rnd(3, 8), rnd(4, 8, seed=1)
    with samebits.batch_invariant():
        mm = torch.cdist(a, b, compute_mode="use_mm_for_euclid_dist")
        ed = torch.ops.aten._euclidean_dist(a, b)
        empty = torch.cdist(rnd(3, 0), rnd(2, 0))
    assert same_bits(mm, ed) and torch.equal(empty, torch.zeros(3, 2))
