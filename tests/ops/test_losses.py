"""cross_entropy / nll_loss: close to float64 torch for every reduction, weights, label
smoothing and ignore_index; a row's loss has the same bits alone and in a batch; a
batch's sum and mean are the SUM order over its rows' losses, so ignored (padding)
tokens anywhere change no bit; gradients through nll_loss_backward."""

import pytest
import torch
import torch.nn.functional as F

import samebits
from samebits.ops import losses
from samebits.ops.reductions import _sum_f64
from tests.conftest import TOL, same_bits

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
C = 11
IGNORE = -100


def rnd(*shape, dtype=torch.float32, seed=0):
    return (torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 2).to(dtype)


def targets(*shape, seed=0, ignore_every=4):
    t = torch.randint(0, C, shape, generator=torch.Generator().manual_seed(seed))
    t.view(-1)[::ignore_every] = IGNORE
    return t


VARIANTS = {
    "plain": {},
    "weight": {"weight": True},
    "smooth": {"label_smoothing": 0.1},
    "weight_smooth": {"weight": True, "label_smoothing": 0.25},
}


def kwargs(name, dtype):
    kw = dict(VARIANTS[name])
    if kw.pop("weight", False):
        kw["weight"] = (torch.rand(C, generator=torch.Generator().manual_seed(9)) + 0.5).to(dtype)
    return kw


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_matches_float64(dtype, variant):
    kw = kwargs(variant, dtype)
    for x, t in (
        (rnd(9, C, dtype=dtype), targets(9)),
        (rnd(2, C, 3, 4, dtype=dtype), targets(2, 3, 4)),
    ):
        for reduction in ("none", "mean", "sum"):
            with samebits.batch_invariant():
                got = F.cross_entropy(x, t, reduction=reduction, ignore_index=IGNORE, **kw)
                if "label_smoothing" not in kw:  # torch's composite: log_softmax + nll_loss
                    nll = F.nll_loss(F.log_softmax(x, 1), t, kw.get("weight"), reduction=reduction)
                    assert same_bits(nll, got)
            ref = losses._reference(x, t, reduction=reduction, ignore_index=IGNORE, **kw)
            torch.testing.assert_close(got, ref, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_probability_targets_match_float64(dtype):
    x, p = rnd(7, C, dtype=dtype), torch.softmax(rnd(7, C, seed=1), 1).to(dtype)
    for reduction in ("none", "mean", "sum"):
        for ls in (0.0, 0.2):
            kw = dict(
                reduction=reduction, label_smoothing=ls, weight=kwargs("weight", dtype)["weight"]
            )
            with samebits.batch_invariant():
                got = F.cross_entropy(x, p, **kw)
            torch.testing.assert_close(got, losses._reference(x, p, **kw), **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_sequence_loss_is_the_same_alone_and_in_a_batch(dtype, variant, isa, threads):
    """reduction='none' rows, and a sequence's own mean, at any batch size and place."""
    kw = kwargs(variant, dtype)
    T = 6
    item, item_t = rnd(1, C, T, dtype=dtype, seed=1), targets(1, T, seed=1)
    gen = torch.Generator().manual_seed(2)
    with samebits.batch_invariant():
        threads(1)
        alone = F.cross_entropy(item, item_t, reduction="none", **kw)
        alone_mean = F.cross_entropy(item, item_t, **kw)
        for t in (1, 2, 3):
            threads(t)
            for m in (2, 5):
                for pos in (0, m - 1):
                    x = (torch.randn(m, C, T, generator=gen) * 2).to(dtype)
                    tt = torch.randint(0, C, (m, T), generator=gen)
                    x[pos], tt[pos] = item[0], item_t[0]
                    out = F.cross_entropy(x, tt, reduction="none", **kw)
                    assert same_bits(out[pos : pos + 1], alone), (m, pos, t)
                    assert same_bits(
                        F.cross_entropy(x[pos : pos + 1], tt[pos : pos + 1], **kw), alone_mean
                    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_ignored_padding_changes_no_bit_of_sum_and_mean(dtype, variant, isa, threads):
    kw = kwargs(variant, dtype)
    x, t = rnd(13, C, dtype=dtype, seed=3), targets(13, seed=3, ignore_every=5)
    with samebits.batch_invariant():
        threads(1)
        ref = {r: F.cross_entropy(x, t, reduction=r, **kw) for r in ("sum", "mean")}
        rows = F.cross_entropy(x, t, reduction="none", **kw)
        for t_ in (2, 3):
            threads(t_)
            for left, right in ((3, 0), (0, 4), (2, 7)):
                xp = torch.cat(
                    [rnd(left, C, dtype=dtype, seed=4), x, rnd(right, C, dtype=dtype, seed=5)]
                )
                tp = torch.cat([torch.full((left,), IGNORE), t, torch.full((right,), IGNORE)])
                for r in ("sum", "mean"):
                    assert same_bits(F.cross_entropy(xp, tp, reduction=r, **kw), ref[r]), (r, left)
    if dtype == torch.float32:  # the sum is the SUM order over the rows' own losses
        assert same_bits(ref["sum"], _sum_f64(rows, [0]).float())


def test_nll_forward_forms_and_total_weight():
    x, t = F.log_softmax(rnd(8, C), 1), targets(8)
    w = torch.rand(C) + 0.5
    with samebits.batch_invariant():
        out, tw = torch.ops.aten.nll_loss_forward(x, t, w, 1, IGNORE)
        o2, tw2 = torch.empty(()), torch.empty(())
        torch.ops.aten.nll_loss_forward.output(x, t, w, 1, IGNORE, output=o2, total_weight=tw2)
        none, tw0 = torch.ops.aten.nll_loss_forward(x, t, w, 0, IGNORE)
        all_ignored = F.nll_loss(x, torch.full((8,), IGNORE))
    assert same_bits(out, o2) and same_bits(tw, tw2) and tw0.item() == 0
    torch.testing.assert_close(tw, w[t[t != IGNORE]].sum())
    assert torch.isnan(all_ignored)
    with (
        samebits.batch_invariant(),
        pytest.raises(samebits.UnsupportedInputError, match="out of bounds"),
    ):
        F.nll_loss(x, torch.full((8,), C))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_gradients_match_float64_and_rows_are_alone(dtype, reduction, threads):
    w = kwargs("weight", dtype)["weight"]
    x, t = rnd(5, C, 4, dtype=dtype, seed=6), targets(5, 4, seed=6)

    def grad(xx, tt, smoothing=0.1):
        xx = xx.detach().clone().requires_grad_()
        loss = F.cross_entropy(xx, tt, weight=w, reduction=reduction, label_smoothing=smoothing)
        (loss.sum() if reduction == "none" else loss).backward()
        return xx.grad

    with samebits.batch_invariant():
        got = grad(x, t)
        threads(1)
        row = grad(x[2:3], t[2:3])
        threads(3)
        batch = grad(x, t)
    xd = x.double().requires_grad_()
    loss = F.cross_entropy(xd, t, weight=w.double(), reduction=reduction, label_smoothing=0.1)
    (loss.sum() if reduction == "none" else loss).backward()
    torch.testing.assert_close(got, xd.grad.to(dtype), **TOL[dtype])
    assert same_bits(got, batch)
    if reduction != "mean":  # the mean divides by the batch's own total weight
        assert same_bits(batch[2:3], row)
