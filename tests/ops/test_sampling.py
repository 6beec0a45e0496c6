"""multinomial: samples follow the distribution (against float64 frequencies), never a
zero-probability category; a row's samples depend on its probabilities and its draws
alone (the generator's stream from row i * num_samples), at any thread count, kernel
path and batch; HF sampling (top-k, top-p, temperature, repetition penalty, typical)
runs under the mode and repeats its tokens at any thread count."""

import pytest
import torch
import transformers as T

import samebits
from samebits.ops import sampling

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def probs(*shape, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    p = torch.softmax(torch.randn(*shape, generator=g) * 2, -1)
    p[..., 3] = 0  # a category that must never come out
    return p.to(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_frequencies_follow_the_distribution(dtype):
    p = probs(2, 12, dtype=dtype)
    g = torch.Generator().manual_seed(1)
    with samebits.batch_invariant():
        draws = torch.multinomial(p, 20000, replacement=True, generator=g)
    want = sampling._reference_frequencies(p)
    for r in range(2):
        freq = torch.bincount(draws[r], minlength=12).double() / 20000
        torch.testing.assert_close(freq, want[r], rtol=0, atol=0.015)
    assert not (draws == 3).any()


def test_without_replacement_draws_distinct_categories():
    p = probs(3, 9)
    with samebits.batch_invariant():
        out = torch.multinomial(p, 8, generator=torch.Generator().manual_seed(2))
        with pytest.raises(samebits.UnsupportedInputError, match="sums to 0"):
            torch.multinomial(p, 9, generator=torch.Generator().manual_seed(2))
        with pytest.raises(samebits.UnsupportedInputError, match="element < 0"):
            torch.multinomial(-p, 1)
        one = torch.multinomial(p[0], 2, generator=torch.Generator().manual_seed(2))
    assert all(len(set(r.tolist())) == 8 and 3 not in r.tolist() for r in out)
    assert one.shape == (2,)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("replacement", [False, True])
def test_a_row_depends_on_its_probabilities_and_its_draws_alone(dtype, replacement, isa, threads):
    n = 3
    item = probs(1, 40, seed=3, dtype=dtype)
    gen = torch.Generator().manual_seed(4)
    with samebits.batch_invariant():
        for t in (1, 2, 3):
            threads(t)
            for m in (1, 2, 5):
                for pos in sorted({0, m - 1}):
                    batch = probs(m, 40, seed=10 * m + t, dtype=dtype)
                    batch[pos] = item[0]
                    seed = int(torch.randint(0, 2**31, (1,), generator=gen))
                    got = torch.multinomial(
                        batch, n, replacement, generator=torch.Generator().manual_seed(seed)
                    )
                    g = torch.Generator().manual_seed(seed)
                    torch.rand(pos * n, dtype=torch.float64, generator=g)  # the rows before
                    alone = torch.multinomial(item, n, replacement, generator=g)
                    assert torch.equal(got[pos : pos + 1], alone), (m, pos, t)


def test_hf_sampling_runs_under_the_mode_and_repeats_at_any_thread_count(threads):
    cfg = T.LlamaConfig(
        vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(0)
    model = T.LlamaForCausalLM(cfg).eval()
    ids = torch.randint(1, 128, (2, 5), generator=torch.Generator().manual_seed(5))
    settings = (
        dict(top_k=20, top_p=0.9, temperature=0.7, repetition_penalty=1.3),
        dict(top_k=0, typical_p=0.8, min_p=0.05),
    )
    for kw in settings:
        outs = []
        for t in (1, 3):
            threads(t)
            torch.manual_seed(6)
            with torch.no_grad(), samebits.batch_invariant():
                outs.append(
                    model.generate(
                        ids,
                        attention_mask=torch.ones_like(ids),
                        do_sample=True,
                        max_new_tokens=6,
                        pad_token_id=0,
                        **kw,
                    )  # fmt: skip
                )
        assert torch.equal(outs[0], outs[1]), kw
