"""Seeds, sampling and logprobs: what a completion's tokens and numbers are a function of.

- Seeds. A request without ``seed`` gets a fresh one from ``secrets`` (and is told it);
  choice ``j`` of a request with seed ``s`` samples with ``choice_seed(s, j)``: ``s``
  itself for ``j = 0``, else the first 8 bytes (little-endian, top bit cleared) of
  ``sha256(f"samebits:choice:{s}:{j}")``.
- Sampling. Token ``t`` of a choice with seed ``c`` is the argmax of
  ``logits / T + gumbel_noise(c, t)`` over the top-p set (Gumbel-max: a draw from
  ``softmax(logits / T)``), with noise that is a function of ``(c, t)`` only.
- Logprobs. ``log_softmax`` of the raw float32 logits (before temperature and top-p),
  computed under the mode, so that a row has the bits a trainer's forward under
  ``samebits.batch_invariant()`` gives at that position.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Protocol

import torch

SEED_BITS = 63  # fresh seeds and derived seeds are in [0, 2**63): a JSON integer any client keeps


class Sampled(Protocol):
    """What sampling reads of a choice (a Completion)."""

    temperature: float
    top_p: float
    seed: int


def fresh_seed() -> int:
    """A seed for a request that gave none: from the OS's CSPRNG, never a constant
    (a default seed makes every unseeded request, and every choice of a group, the same)."""
    return secrets.randbits(SEED_BITS)


def choice_seed(seed: int, index: int) -> int:
    """The seed of choice ``index`` of a request with ``seed`` (module docstring)."""
    if index == 0:
        return seed
    key = hashlib.sha256(f"samebits:choice:{seed}:{index}".encode()).digest()
    return int.from_bytes(key[:8], "little") & ((1 << SEED_BITS) - 1)


def gumbel_noise(seed: int, step: int, vocab: int) -> torch.Tensor:
    """Counter-based noise: a function of (seed, step) only, never of the batch."""
    key = hashlib.sha256(f"samebits:{seed}:{step}".encode()).digest()
    g = torch.Generator().manual_seed(int.from_bytes(key[:8], "little") & ((1 << 63) - 1))
    u = torch.rand(vocab, generator=g, dtype=torch.float64).clamp_(1e-300, 1.0 - 1e-16)
    return -torch.log(-torch.log(u))


def choose(logits: torch.Tensor, c: Sampled, step: int) -> int:
    """Greedy argmax at temperature 0; otherwise Gumbel-max over the top-p set, which
    samples from softmax(logits / T) with noise keyed by (seed, step)."""
    if c.temperature <= 0:
        return int(torch.argmax(logits))
    from samebits._mode import batch_invariant

    with batch_invariant(False):  # one item's own logits: float64 math, no batch involved
        return _sample(logits, c, step)


def _sample(logits: torch.Tensor, c: Sampled, step: int) -> int:
    z = logits.double() / c.temperature
    if c.top_p < 1.0:
        order = torch.argsort(z, descending=True, stable=True)
        p = torch.softmax(z[order], -1)
        keep = (p.cumsum(-1) - p) < c.top_p  # the smallest prefix reaching top_p
        mask = torch.full_like(z, float("-inf"))
        mask[order[keep]] = 0.0
        z = z + mask
    return int(torch.argmax(z + gumbel_noise(c.seed, step, z.numel())))


@dataclass(frozen=True)
class TokenLogprob:
    """A sampled token's logprob and the ``k`` most likely tokens at its position
    (``top``: (token id, logprob), most likely first, ties by lower id)."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


def logprobs_of(logits: torch.Tensor) -> torch.Tensor:
    """(rows, vocab) float32 logits -> their log_softmax, under the mode: each row has
    the bits of the same row in any batch, a trainer's forward included."""
    from samebits._mode import batch_invariant

    with batch_invariant():  # re-entrant: the worker already holds the mode
        return torch.log_softmax(logits.float(), dim=-1)


def top_alternatives(row: torch.Tensor, k: int) -> tuple[tuple[int, float], ...]:
    """The ``k`` largest entries of a logprob row as (id, logprob), largest first; equal
    values in order of id, whichever entries topk's implementation would pick."""
    if k <= 0:
        return ()
    from samebits._mode import batch_invariant

    with batch_invariant(False):  # selection only: no arithmetic, no batch
        k = min(k, row.numel())
        kth = torch.topk(row, k).values[-1]
        ids = torch.nonzero(row >= kth).flatten()  # every tie of the k-th value
        order = torch.sort(-row[ids], stable=True).indices[:k]  # ids ascend: ties by id
        picked = ids[order]
        return tuple(zip(picked.tolist(), row[picked].tolist(), strict=True))
