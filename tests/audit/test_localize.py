"""The model audit names the op that computed a different value (not a view after
it), says where an already-differing input came from, and sizes the difference in
the output's own scale."""

import torch

import samebits


class ViewThenSoftmax(torch.nn.Module):
    """Attention scores over every position, padding included (the mask is ignored).
    Integer-valued embeddings make the matmul exact, so the first op that computes a
    different value is the softmax, after a view and a transpose that only move
    numbers (and move the sequence dim, which item slicing must follow)."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(20, 8)
        with torch.no_grad():
            self.emb.weight.copy_(
                torch.randint(-2, 3, (20, 8), generator=torch.Generator().manual_seed(0))
            )
        self.attn = Scores()

    def forward(self, input_ids, attention_mask):
        return self.attn(self.emb(input_ids))


class Scores(torch.nn.Module):
    def forward(self, h):
        B, T, _ = h.shape
        q = h.view(B, T, 2, 4).transpose(1, 2)  # (B, H, T, D)
        s = q @ q.transpose(-1, -2)  # (B, H, T, T), exact: small integers
        out = torch.softmax(s / 4, dim=-1) @ q  # (B, H, T, D)
        return out.transpose(1, 2).reshape(B, T, 8)  # (B, T, H * D)


class MeanOverPadding(torch.nn.Module):
    """The root's own code subtracts a mean over all positions, padding included; the
    first module to see it is ``proj``, whose input already differs."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(20, 8)
        self.proj = torch.nn.Linear(8, 8)

    def forward(self, input_ids, attention_mask):
        h = self.emb(input_ids)
        return self.proj(h - h.mean(dim=1, keepdim=True))


def tokens():
    ids = torch.tensor([[3, 4, 5, 0, 0], [6, 7, 8, 9, 10], [11, 12, 0, 0, 0]])
    return {"input_ids": ids, "attention_mask": (ids != 0).long()}


def padding(model):
    torch.manual_seed(0)
    return {
        f.check: f for f in samebits.audit(model.eval(), tokens(), checks=["padding"]).findings
    }["padding"]


def test_first_computing_op_after_a_view_is_named():
    f = padding(ViewThenSoftmax())
    assert not f.passed
    assert f.module == "attn" and f.op in ("aten::softmax", "aten::_softmax"), f.detail
    assert f"first op to compute a different value: attn ({f.op})" in f.detail
    assert "already differs" not in f.detail


def test_an_input_that_already_differs_is_traced_to_its_origin():
    f = padding(MeanOverPadding())
    assert not f.passed and f.module == "proj"
    assert "its input 0 already differs, made by aten::sub in '<root>'" in f.detail, f.detail


def test_headline_size_is_in_the_outputs_scale():
    f = padding(ViewThenSoftmax())
    assert f.max_abs > 0 and 0 < f.max_rel < 1 and f.ulp_at_max > 0
    assert f"{f.max_abs:.3g} (" in f.detail and "of the largest element" in f.detail
    assert f"per element up to {f.max_ulp} ulp" in f.detail
    # ULPs at the largest element never exceed the per-element maximum
    assert f.ulp_at_max <= f.max_ulp


def test_a_weight_is_not_sliced_as_if_it_held_items():
    # a (1536, 384) weight divides into 6 "items" of 256 rows; it must still count as equal
    from samebits.audit._align import differ
    from samebits.audit._audit import Pair, Probe

    w = torch.randn(1536, 384)
    pair = Pair(Probe(None, 6, 0), Probe(None, 6, 5), "position 0 vs 5")
    assert not differ([w], [w.clone()], pair)
    x = torch.randn(1, 4).repeat(6, 1)  # every item the same
    y = x.clone()
    y[5] += 1  # item 5 of the test batch, the item compared, changed
    assert differ([x], [y], pair)
    y = x.clone()
    y[3] += 1  # another item changed: the whole tensors differ, the compared item does not
    assert not torch.equal(x, y) and not differ([x], [y], pair)
