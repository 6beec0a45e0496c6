"""The prefix cache (samebits/serve/_prefix.py): exact prefix matching, a memory bound
with least-recently-used eviction, and prompts started from cached blocks with the
bits of a full recompute (float32 and bfloat16)."""

import pytest
import torch

import samebits
from samebits.serve._completion import Completion
from samebits.serve._decode_batch import prefill
from samebits.serve._prefix import PrefixCache

H, D, LAYERS = 2, 8, 3


def fake_layers(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(H, n, D, generator=g), torch.randn(H, n, D, generator=g))
        for _ in range(LAYERS)
    ]


def test_lookup_matches_whole_prefixes_only():
    cache = PrefixCache(1 << 20, 16)
    a = list(range(100, 140))  # 40 tokens: 2 full blocks
    layers = fake_layers(40, 0)
    cache.store(a, layers)
    assert len(cache.blocks) == 2
    assert cache.tokens(cache.lookup(a, 39)) == 32
    assert cache.tokens(cache.lookup(a, 31)) == 16  # at most `limit` tokens
    b = a[:20] + [7] + a[21:]  # differs in the second block
    assert cache.tokens(cache.lookup(b, 39)) == 16
    assert cache.lookup([7] + a[1:], 39) == []  # differs at the first token
    got = cache.gather(cache.lookup(a, 39), 32)
    for (k, v), (rk, rv) in zip(got, layers, strict=True):
        assert torch.equal(k, rk[:, :32]) and torch.equal(v, rv[:, :32])


def test_memory_is_bounded_and_prefixes_lose_their_last_blocks_first():
    per_block = LAYERS * 2 * H * 4 * D * 4  # bytes of one 4-token block
    cache = PrefixCache(7 * per_block, 4)
    shared = list(range(1, 9))  # two blocks every prompt shares
    prompts = [shared + [50 + i] * 8 for i in range(6)]  # 4 blocks each
    for i, p in enumerate(prompts):
        cache.store(p, fake_layers(len(p), i))
        assert cache.nbytes <= cache.max_bytes
        cache.lookup(prompts[0], len(prompts[0]))  # prompt 0 stays in use
    assert cache.nbytes == 7 * per_block
    assert cache.tokens(cache.lookup(prompts[0], 16)) == 16  # the one in use survived whole
    for p in prompts:  # what is left of any prompt is a prefix of its chain: no orphans
        chain = cache.digests(p, 4)
        present = [d in cache.blocks for d in chain]
        assert present == sorted(present, reverse=True), present


def test_a_block_larger_than_the_bound_is_not_kept():
    cache = PrefixCache(10, 4)
    cache.store(list(range(8)), fake_layers(8, 0))
    assert cache.nbytes == 0 and not cache.blocks


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError, match="max_bytes >= 1"):
        PrefixCache(0, 4)


SYSTEM = "You are a careful assistant. Answer briefly."


def chat_rows(llm, users):
    texts = [
        llm.chat_prompt([{"role": "system", "content": SYSTEM}, {"role": "user", "content": u}])
        for u in users
    ]
    return [Completion(llm.encode(t, special=False), 4) for t in texts]


def real_layers(batch, i):
    """Row i's keys and values at its real columns, per layer: (H, len, D) each."""
    n = int(batch.lens[i])
    return [(k[i, :, -n:], v[i, :, -n:]) for k, v in batch.layers]


@pytest.mark.parametrize("block", [1, 4, 16])
def test_prefill_from_cached_blocks_equals_a_full_recompute(llm, block):
    """Chat prompts sharing a system prompt: prefilled alone with no cache (the
    reference), then through a prefix cache one after another and all together. The
    first logits and every key and value must be bitwise the reference's."""
    users = ["hi", "What is 2 + 2?", "hi", "Tell me a story about a fox"]
    rows = chat_rows(llm, users)
    with samebits.batch_invariant():  # what the server's worker holds
        check_prefills(llm, rows, block)


def check_prefills(llm, rows, block):
    ref = [prefill(llm, [c], None) for c in rows]
    cache = PrefixCache(1 << 24, block)
    for c, (rb, rl) in zip(rows, ref, strict=True):
        batch, logits = prefill(llm, [c], cache)
        assert torch.equal(logits, rl)
        for (k, v), (rk, rv) in zip(real_layers(batch, 0), real_layers(rb, 0), strict=True):
            assert torch.equal(k, rk) and torch.equal(v, rv)
    assert cache.hit_tokens >= len(rows[0].prompt_ids) - block  # the shared prefix was reused
    batch, logits = prefill(llm, rows, cache)  # all at once, each from its cached blocks
    for i, (rb, rl) in enumerate(ref):
        assert torch.equal(logits[i], rl[0])
        for (k, v), (rk, rv) in zip(real_layers(batch, i), real_layers(rb, 0), strict=True):
            assert torch.equal(k, rk) and torch.equal(v, rv)
