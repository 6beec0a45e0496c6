"""Seeds, Gumbel noise, logprobs and top alternatives (samebits/serve/_sampling.py)."""

import hashlib

import pytest
import torch

import samebits
from samebits.serve._sampling import (
    SEED_BITS,
    choice_seed,
    fresh_seed,
    gumbel_noise,
    logprobs_of,
    top_alternatives,
)


def test_choice_seed_is_the_request_seed_then_the_documented_hash():
    """docs/serving.md: choice 0 samples with the request's seed; choice j > 0 with the
    first 8 bytes (little-endian, top bit cleared) of sha256("samebits:choice:{s}:{j}")."""
    for s in (0, 1, 7, 2**62 + 5, -3):
        assert choice_seed(s, 0) == s
        for j in (1, 2, 9):
            key = hashlib.sha256(f"samebits:choice:{s}:{j}".encode()).digest()
            assert choice_seed(s, j) == int.from_bytes(key[:8], "little") % 2**63


def test_choice_seeds_of_nearby_requests_never_collide():
    """Requests seeded 0, 1, 2, ... (as RL loops do) with n choices each: no two choices
    of any of them share a seed (seed + j would: (0, 1) and (1, 0))."""
    seeds = [choice_seed(s, j) for s in range(200) for j in range(16)]
    assert len(set(seeds)) == len(seeds)


def test_fresh_seeds_are_distinct_and_in_range():
    seeds = [fresh_seed() for _ in range(256)]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**SEED_BITS for s in seeds)


def test_gumbel_noise_is_a_function_of_seed_and_step():
    a = gumbel_noise(5, 3, 100)
    assert torch.equal(a, gumbel_noise(5, 3, 100))
    assert not torch.equal(a, gumbel_noise(5, 4, 100))
    assert not torch.equal(a, gumbel_noise(6, 3, 100))


def test_top_alternatives_largest_first_ties_by_id():
    row = torch.tensor([-1.0, -3.0, -0.5, -1.0, -0.5, -2.0, -1.0])
    expect = sorted(range(row.numel()), key=lambda i: (-row[i].item(), i))
    for k in range(0, 8):
        got = top_alternatives(row, k)
        assert [i for i, _ in got] == expect[:k]
        assert [v for _, v in got] == [row[i].item() for i in expect[:k]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("rows", [1, 2, 5, 13])
def test_logprobs_of_a_row_do_not_depend_on_the_batch(dtype, rows):
    """The server takes log_softmax of a batch of rows; each row must have the bits of
    the row alone (and of the same row in a trainer's (T, vocab) logits)."""
    g = torch.Generator().manual_seed(rows)
    logits = (torch.randn(rows, 1000, generator=g) * 4).to(dtype)
    batch = logprobs_of(logits)
    assert batch.dtype == torch.float32
    with samebits.batch_invariant():
        for i in range(rows):
            alone = torch.log_softmax(logits[i : i + 1].float(), dim=-1)[0]
            assert torch.equal(batch[i], alone), i
