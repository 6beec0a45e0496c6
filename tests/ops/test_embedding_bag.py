"""embedding_bag (nn.EmbeddingBag): sum / mean / max with offsets, include_last_offset,
per_sample_weights and padding_idx against float64 (and torch's auxiliary outputs); a
bag has the same bits alone and among any bags, on every kernel path and thread
count; gradients, where bags with zero gradient change no bit of the table's."""

import pytest
import torch
import torch.nn.functional as F

import samebits
from samebits.ops import embedding_bag
from tests.conftest import TOL, same_bits

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
MODES = ["sum", "mean", "max"]
V, D = 20, 12


def table(dtype=torch.float32, seed=0):
    return torch.randn(V, D, generator=torch.Generator().manual_seed(seed)).to(dtype)


IDX = torch.tensor([1, 2, 4, 5, 4, 3, 2, 19, 0, 7, 7, 4])
OFF = torch.tensor([0, 2, 2, 5, 11])  # an empty bag, a one-entry bag


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pad", [None, 4])
@pytest.mark.parametrize("last", [False, True])
def test_matches_float64_and_torchs_auxiliary_outputs(dtype, mode, pad, last):
    w = table(dtype)
    off = torch.cat([OFF, torch.tensor([12])]) if last else OFF
    psw = torch.rand(12, generator=torch.Generator().manual_seed(1)).to(dtype)
    psw = psw if mode == "sum" else None
    kw = dict(mode=mode, padding_idx=pad, include_last_offset=last, per_sample_weights=psw)
    args = (w, IDX, off, False, MODES.index(mode), False, psw, last, -1 if pad is None else pad)
    with samebits.batch_invariant():
        got = F.embedding_bag(IDX, w, off, **kw)
        full = torch.ops.aten._embedding_bag(*args)
        fwd = torch.ops.aten._embedding_bag_forward_only(*args)
    torch.testing.assert_close(got, embedding_bag._reference(w, IDX, off, **kw), **TOL[dtype])
    native = torch.ops.aten._embedding_bag(*args)
    for k in (1, 2) + ((3,) if mode == "max" else ()):
        assert torch.equal(full[k], native[k]) and torch.equal(fwd[k], native[k]), k
    assert same_bits(full[0], got) and same_bits(fwd[0], got)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("mode", MODES)
def test_a_bag_has_the_same_bits_among_any_bags(dtype, mode, isa, threads):
    w = table(dtype)
    item = torch.tensor([3, 9, 3, 17, 0, 4])
    gen = torch.Generator().manual_seed(2)
    psw_item = torch.rand(6, generator=gen).to(dtype) if mode == "sum" else None
    with samebits.batch_invariant():
        threads(1)
        alone = F.embedding_bag(item, w, torch.tensor([0]), mode=mode, per_sample_weights=psw_item)
        for t in (1, 2, 3):
            threads(t)
            for sizes in ((6,), (2, 6, 0, 9), (0, 6), (6, 1, 1, 1, 30)):
                where = sizes.index(6)
                bags = [torch.randint(0, V, (n,), generator=gen) for n in sizes]
                bags[where] = item
                idx = torch.cat(bags)
                off = torch.tensor([0, *sizes[:-1]]).cumsum(0)
                psw = None
                if mode == "sum":
                    psw = torch.rand(idx.numel(), generator=gen).to(dtype)
                    psw[off[where] : off[where] + 6] = psw_item
                out = F.embedding_bag(idx, w, off, mode=mode, per_sample_weights=psw)
                assert same_bits(out[where : where + 1], alone), (sizes, t)
            rows = torch.randint(0, V, (4, 6), generator=gen)
            rows[2] = item
            psw2 = None if psw_item is None else psw_item.expand(4, 6)
            out2 = F.embedding_bag(rows, w, mode=mode, per_sample_weights=psw2)  # 2D input
            assert same_bits(out2[2:3], alone)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pad", [None, 4])
def test_gradients_match_float64_and_zero_bags_add_nothing(mode, pad, threads):
    w0 = table()
    g = torch.randn(5, D, generator=torch.Generator().manual_seed(3))
    psw0 = torch.rand(12, generator=torch.Generator().manual_seed(4)) if mode == "sum" else None

    def grads(w, psw, g, idx=IDX, off=OFF):
        w = w.clone().requires_grad_()
        psw = None if psw is None else psw.clone().requires_grad_()
        out = F.embedding_bag(idx, w, off, mode=mode, padding_idx=pad, per_sample_weights=psw)
        (out * g).sum().backward()
        return w.grad, None if psw is None else psw.grad

    with samebits.batch_invariant():
        threads(1)
        gw, gp = grads(w0, psw0, g)
        threads(3)
        # two more bags whose gradient is zero, before and after
        idx = torch.cat([torch.tensor([4, 1, 3]), IDX, torch.tensor([2, 2])])
        off = torch.cat([torch.tensor([0]), OFF + 3, torch.tensor([15])])
        psw = None if psw0 is None else torch.cat([torch.rand(3), psw0, torch.rand(2)])
        gz = torch.cat([torch.zeros(1, D), g, torch.zeros(1, D)])
        gw2, gp2 = grads(w0, psw, gz, idx, off)
    assert same_bits(gw2, gw)
    if gp is not None:
        assert same_bits(gp2[3:15], gp)
    rw, rp = grads(w0.double(), None if psw0 is None else psw0.double(), g.double())
    torch.testing.assert_close(gw, rw.float(), **TOL[torch.float32])
    if gp is not None:
        torch.testing.assert_close(gp, rp.float(), **TOL[torch.float32])


def test_scale_grad_by_freq_divides_each_occurrence_by_its_count():
    """The embedding's rule (torch's bag kernel divides some rows by another id's count)."""
    w = table().requires_grad_()
    idx, off = torch.tensor([1, 4, 4, 3, 4]), torch.tensor([0, 2])
    with samebits.batch_invariant():
        F.embedding_bag(idx, w, off, scale_grad_by_freq=True, mode="sum").sum().backward()
    counts = torch.bincount(idx, minlength=V).float().clamp(min=1)
    want = (torch.bincount(idx, minlength=V).float() / counts).unsqueeze(1).expand(V, D)
    assert torch.equal(w.grad, want)


def test_sparse_gradients_are_refused():
    w = table().requires_grad_()
    with samebits.batch_invariant(), pytest.raises(samebits.UnsupportedInputError, match="sparse"):
        F.embedding_bag(IDX, w, OFF, sparse=True).sum().backward()
