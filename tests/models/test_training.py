"""Training under the mode: a backward pass started in the mode runs in the mode, and a
sequence's gradients (every parameter's, the embedding table's included) have the same
bits whether its forward and backward ran alone or inside a padded batch, the loss a
sum over sequences of which one sequence's term is back-propagated. Gradients are
close to torch's own. A tiny Llama (left and right padding), the real all-MiniLM-L6-v2
(BERT) and a tiny ViT, in float32 and bfloat16."""

import pytest
import torch

import samebits
from tests.conftest import same_bits

transformers = pytest.importorskip("transformers")
DTYPES = [torch.float32, torch.bfloat16]


def llama(dtype):
    cfg = transformers.LlamaConfig(
        vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg).to(dtype).eval()


def sequences():
    g = torch.Generator().manual_seed(3)
    return [torch.randint(1, 128, (n,), generator=g) for n in (6, 9, 4)]


def batch(seqs, side):
    L = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), L, dtype=torch.long)
    am = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        sl = slice(L - len(s), L) if side == "left" else slice(0, len(s))
        ids[i, sl], am[i, sl] = s, 1
    pos = (am.cumsum(-1) - 1).clamp(min=0)
    return ids, am, pos


def token_logprob_sum(logits, ids, am, row):
    """The summed log-probability of the row's next tokens (its real positions only)."""
    lp = torch.log_softmax(logits[row, :-1].float(), -1)
    tgt = ids[row, 1:]
    picked = lp.gather(-1, tgt[:, None])[:, 0]
    return (picked * am[row, 1:] * am[row, :-1]).sum()


def grads(model) -> list[torch.Tensor]:
    """Every parameter's gradient (a parameter the loss does not reach: None)."""
    return [None if p.grad is None else p.grad.clone() for p in model.parameters()]


def same(a, b) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and same_bits(a, b))


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_llama_sequence_gradients_alone_and_padded(dtype, side):
    lm = llama(dtype)
    seqs = sequences()
    with samebits.batch_invariant():
        lm.zero_grad()
        ids, am, pos = batch(seqs[:1], side)
        token_logprob_sum(
            lm(input_ids=ids, attention_mask=am, position_ids=pos).logits, ids, am, 0
        ).backward()
        alone = grads(lm)
        lm.zero_grad()
        ids, am, pos = batch([seqs[1], seqs[0], seqs[2]], side)  # the sequence at row 1
        token_logprob_sum(
            lm(input_ids=ids, attention_mask=am, position_ids=pos).logits, ids, am, 1
        ).backward()
        padded = grads(lm)
    assert all(same(a, b) for a, b in zip(alone, padded, strict=True))
    assert sum(g is not None for g in padded) == len(padded)  # every parameter took part
    lm.zero_grad()  # torch's own gradients of the same loss, outside the mode
    token_logprob_sum(
        lm(input_ids=ids, attention_mask=am, position_ids=pos).logits, ids, am, 1
    ).backward()
    tol = dict(rtol=1e-3, atol=1e-4) if dtype == torch.float32 else dict(rtol=0.1, atol=0.05)
    for ours, native in zip(padded, grads(lm), strict=True):
        scale = native.float().abs().max().clamp(min=1e-6)
        torch.testing.assert_close(ours.float() / scale, native.float() / scale, **tol)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_minilm_sequence_gradients_alone_and_padded(dtype):
    from samebits.models import load_sentence_model

    bert = load_sentence_model()[0].auto_model.to(dtype).eval()
    tok = load_sentence_model().tokenizer
    texts = ["a short one", "a somewhat longer sentence about invariance", "mid length text"]

    def loss(enc, row):
        out = bert(**enc).last_hidden_state  # (B, T, H)
        m = enc["attention_mask"][row, :, None]
        return ((out[row] * m).float() ** 2).sum()

    with samebits.batch_invariant():
        bert.zero_grad()
        loss(tok(texts[1:2], return_tensors="pt", padding=True), 0).backward()
        alone = grads(bert)
        bert.zero_grad()
        enc = tok(texts, return_tensors="pt", padding=True)
        loss(enc, 1).backward()
        padded = grads(bert)
    assert all(same(a, b) for a, b in zip(alone, padded, strict=True))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_vit_image_gradients_alone_and_batched(dtype):
    cfg = transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, num_labels=5,
    )  # fmt: skip
    torch.manual_seed(0)
    vit = transformers.ViTForImageClassification(cfg).to(dtype).eval()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1)).to(dtype)

    def loss(px, row):
        return torch.log_softmax(vit(pixel_values=px).logits.float(), -1)[row, 2]

    with samebits.batch_invariant():
        vit.zero_grad()
        loss(x[2:3], 0).backward()
        alone = grads(vit)
        vit.zero_grad()
        loss(x, 2).backward()
        batched = grads(vit)
    assert all(same(a, b) for a, b in zip(alone, batched, strict=True))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_layer_norm_forward_in_the_mode_then_torchs_backward(dtype):
    """The statistics the mode's layer_norm saves are in the input's dtype, which torch's
    own backward requires (it raised 'expected scalar type BFloat16 but found Float')."""
    norm = torch.nn.LayerNorm(16).to(dtype)
    x = torch.randn(3, 16).to(dtype).requires_grad_()
    with samebits.batch_invariant():
        y = norm(x)
    y.float().sum().backward()  # outside the mode: torch's kernel
    assert x.grad.dtype == dtype and torch.isfinite(x.grad.float()).all()
