"""A small LlamaForCausalLM built from a config with a fixed seed (no download):
prompt alone vs left/right padded batches with position ids, greedy generate
batched vs alone, KV-cache decode and chunked prefill vs full recompute."""

import pytest
import torch

import samebits
from tests.conftest import same_bits

transformers = pytest.importorskip("transformers")

VOCAB = 256


def make_llama(dtype):
    cfg = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=128,
        intermediate_size=352,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg).to(dtype).eval()


PROMPT_LENS = [5, 11, 3, 8, 1]


def prompts():
    g = torch.Generator().manual_seed(1)
    return [torch.randint(1, VOCAB, (n,), generator=g) for n in PROMPT_LENS]


def padded(ps, side):
    L = max(len(p) for p in ps)
    ids = torch.zeros(len(ps), L, dtype=torch.long)
    am = torch.zeros_like(ids)
    for i, p in enumerate(ps):
        sl = slice(L - len(p), L) if side == "left" else slice(0, len(p))
        ids[i, sl], am[i, sl] = p, 1
    return ids, am


def real(out, i, n, side):
    L = out.size(1)
    return out[i, L - n :] if side == "left" else out[i, :n]


def alone_logits(lm, p):
    return lm(input_ids=p[None], attention_mask=torch.ones(1, len(p), dtype=torch.long)).logits[0]


@pytest.fixture(scope="module", params=[torch.float32, torch.bfloat16], ids=str)
def lm(request):
    return make_llama(request.param)


def test_native_llama_is_padding_variant():
    lm = make_llama(torch.float32)
    ps = prompts()
    with torch.inference_mode():
        ids, am = padded(ps, "left")
        out = lm(
            input_ids=ids, attention_mask=am, position_ids=(am.cumsum(-1) - 1).clamp(min=0)
        ).logits
        assert any(
            not same_bits(real(out, i, len(p), "left"), alone_logits(lm, p))
            for i, p in enumerate(ps)
        )


@pytest.mark.parametrize("nthreads", [1, 3])
@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_equals_alone(lm, side, nthreads, threads):
    ps = prompts()
    with torch.inference_mode(), samebits.batch_invariant():
        threads(1)
        alone = [alone_logits(lm, p) for p in ps]
        threads(nthreads)
        for order in (ps, ps[::-1]):
            ids, am = padded(order, side)
            pos = (am.cumsum(-1) - 1).clamp(min=0)
            out = lm(input_ids=ids, attention_mask=am, position_ids=pos).logits
            for i, p in enumerate(order):
                j = next(k for k, q in enumerate(ps) if q is p)
                assert same_bits(real(out, i, len(p), side), alone[j]), f"prompt {j} side={side}"


def test_greedy_generate_batched_equals_alone_and_cache_equals_recompute(lm):
    ps = prompts()
    kw = dict(
        max_new_tokens=6,
        do_sample=False,
        pad_token_id=0,
        output_logits=True,
        return_dict_in_generate=True,
    )
    with torch.inference_mode(), samebits.batch_invariant():
        ids, am = padded(ps, "left")
        batched = lm.generate(input_ids=ids, attention_mask=am, **kw)
        blogits = torch.stack(batched.logits, 1)
        for i, p in enumerate(ps):
            one = lm.generate(
                input_ids=p[None], attention_mask=torch.ones(1, len(p), dtype=torch.long), **kw
            )
            assert torch.equal(one.sequences[0, len(p) :], batched.sequences[i, ids.size(1) :])
            ologits = torch.stack(one.logits, 1)[0]
            assert same_bits(ologits, blogits[i])
            seq = one.sequences[0]
            # generate returns float32 logits; widening bf16 to float32 is exact
            recompute = lm(input_ids=seq[None]).logits[0, len(p) - 1 : len(seq) - 1].float()
            assert same_bits(recompute, ologits), "KV-cache decode differs from a full forward"


def test_chunked_prefill_equals_full_prefill(lm):
    seq = torch.randint(1, VOCAB, (1, 23), generator=torch.Generator().manual_seed(5))
    with torch.inference_mode(), samebits.batch_invariant():
        full = lm(input_ids=seq).logits
        cache = transformers.DynamicCache()
        parts = []
        for a, b in ((0, 7), (7, 16), (16, 23)):
            out = lm(
                input_ids=seq[:, a:b],
                past_key_values=cache,
                use_cache=True,
                position_ids=torch.arange(a, b)[None],
            )
            parts.append(out.logits)
        assert same_bits(torch.cat(parts, 1), full)
