"""The completion engine (samebits/serve/_generate.py): logprobs with the bits of a
trainer's forward, token pieces, and the chat template."""

import pytest
import torch

import samebits
from samebits.serve._completion import Completion
from samebits.serve._generate import CompletionEngine, RequestError, _byte_decoder
from tests.serve.conftest import run_continuous


def trainer_logprobs(model, prompt_ids, tokens):
    """What an RL trainer computes: one forward over prompt + completion with autograd
    on, under the mode; log_softmax of the float32 logits at each completion token's
    position. Returns (the tokens' logprobs, the full logprob rows)."""
    ids = torch.tensor([list(prompt_ids) + list(tokens)])
    with samebits.batch_invariant():
        logits = model(input_ids=ids).logits[0]  # (T, vocab)
        assert logits.requires_grad  # a training forward, not inference
        lp = torch.log_softmax(logits.float(), dim=-1)
    rows = lp[len(prompt_ids) - 1 : len(prompt_ids) + len(tokens) - 1].detach()
    return rows[torch.arange(len(tokens)), torch.tensor(tokens)], rows


def test_served_logprobs_have_the_bits_of_a_trainers_forward(llm):
    """A group of n = 4 samples of one prompt and other requests decoding beside them
    (continuous batching, a prefix cache): every reported logprob and top alternative
    equals the trainer's, bitwise."""
    from samebits.serve._prefix import PrefixCache

    prompt = llm.encode("Once upon a time")
    group = [Completion(list(prompt), 16, 1.0, seed=100 + j, logprobs=3) for j in range(4)]
    others = [Completion(llm.encode(p), 9, 0.8, seed=7, logprobs=0) for p in ("a", "Hello world")]
    results, _ = run_continuous(llm, [(0.0, group), (0.01, others)], prefix=PrefixCache(1 << 22, 4))
    checked = 0
    for c in results[0] + results[1]:
        want, rows = trainer_logprobs(llm.model, c.prompt_ids, c.tokens)
        got = torch.tensor([e.logprob for e in c.token_logprobs], dtype=torch.float32)
        assert torch.equal(got, want)
        for e, row in zip(c.token_logprobs, rows, strict=True):
            order = sorted(range(row.numel()), key=lambda i: (-row[i].item(), i))
            assert [t for t, _ in e.top] == order[: c.logprobs]
            assert torch.equal(torch.tensor([v for _, v in e.top]), row[order[: c.logprobs]])
        checked += len(c.tokens)
    assert checked > 40
    assert len({tuple(c.tokens) for c in results[0]}) > 1  # the group's samples differ


def test_static_batching_logprobs_equal_the_trainers_too(llm):
    items = [Completion(llm.encode(p), 6, 1.0, seed=3, logprobs=1) for p in ("zq", "The fox")]
    with samebits.batch_invariant():
        done = llm.run(items)
    for c in done:
        want, _ = trainer_logprobs(llm.model, c.prompt_ids, c.tokens)
        got = torch.tensor([e.logprob for e in c.token_logprobs], dtype=torch.float32)
        assert torch.equal(got, want)


def test_pieces_of_a_character_level_vocabulary(llm):
    for ch in "aZ~ 0":
        (tok,) = llm.encode(ch, special=False)
        assert llm.piece(tok) == (ch, ch.encode())


def test_byte_level_alphabet_is_a_bijection_onto_bytes():
    dec = _byte_decoder()
    assert sorted(dec.values()) == list(range(256)) and len(dec) == 256
    assert dec["A"] == ord("A") and dec["Ġ"] == ord(" ")  # GPT-2 writes a space as Ġ


def test_a_model_without_a_chat_template_is_named(llama_dir):
    from samebits.models import load_causal_lm

    model, tok = load_causal_lm(llama_dir)
    engine = CompletionEngine(model, tok, "tiny-llama")
    assert not engine.has_chat_template
    with pytest.raises(RequestError, match="'tiny-llama' has no chat template"):
        engine.chat_prompt([{"role": "user", "content": "hi"}])


def test_chat_prompt_uses_the_template(llm):
    text = llm.chat_prompt(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    )
    assert text == "<s><|system|>Be brief.\n<|user|>hi\n<|assistant|>"
