"""The prefix cache: keys and values of prompt prefixes, kept to start later prompts
that share them (a chat's system prompt, a group's n samples sent again).

A prompt is cut into blocks of ``block_tokens`` tokens. A block is stored under a
chained SHA-256 of every token from the prompt's start to the block's end, so a hit
means the whole prefix is equal, token for token. Blocks hold each layer's keys and
values for their tokens, (heads, block_tokens, head_dim), copied out of the batch that
computed them. Under the mode a token's keys and values do not depend on the batch,
the padding or the chunking that computed them (DESIGN.md, "cache" invariance), so a
prompt started from cached blocks gets the bits of a full recompute;
tests/serve/test_prefix.py checks it in float32 and bfloat16.

Memory is bounded by ``max_bytes`` (the tensors' bytes): the least recently used
blocks go first. A lookup touches a chain's blocks from the last to the first, so a
prefix's first blocks, which more prompts share, outlive its last ones.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import torch

Layers = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class Block:
    """One block's keys and values per layer, each (heads, block_tokens, head_dim)."""

    digest: bytes
    layers: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    nbytes: int


class PrefixCache:
    """An LRU of prompt-prefix blocks, at most ``max_bytes`` of tensors (worker thread only)."""

    def __init__(self, max_bytes: int, block_tokens: int = 16) -> None:
        if max_bytes < 1 or block_tokens < 1:
            raise ValueError(
                f"PrefixCache needs max_bytes >= 1 and block_tokens >= 1, "
                f"got {max_bytes} and {block_tokens}"
            )
        self.max_bytes, self.block = max_bytes, block_tokens
        self.blocks: OrderedDict[bytes, Block] = OrderedDict()
        self.nbytes = 0
        self.hit_tokens = 0  # prompt tokens started from cached blocks (for /health)

    def digests(self, ids, nblocks: int) -> list[bytes]:
        """The chained digests of the first ``nblocks`` blocks of ``ids``."""
        out, d = [], hashlib.sha256(b"samebits:prefix").digest()
        for b in range(nblocks):
            chunk = torch.tensor(ids[b * self.block : (b + 1) * self.block], dtype=torch.int64)
            d = hashlib.sha256(d + chunk.numpy().astype("<i8").tobytes()).digest()
            out.append(d)
        return out

    def lookup(self, ids, limit: int) -> list[Block]:
        """The cached blocks that start ``ids``, covering at most ``limit`` tokens."""
        found = []
        for d in self.digests(ids, max(0, limit) // self.block):
            blk = self.blocks.get(d)
            if blk is None:
                break
            found.append(blk)
        self._touch([blk.digest for blk in found])
        return found

    def _touch(self, chain: list[bytes]) -> None:
        for d in reversed(chain):  # the first block ends most recently used
            if d in self.blocks:
                self.blocks.move_to_end(d)

    def tokens(self, blocks: list[Block]) -> int:
        return len(blocks) * self.block

    @staticmethod
    def gather(blocks: list[Block], n: int) -> Layers:
        """The first ``n`` tokens' keys and values per layer, each (heads, n, head_dim)."""
        out = []
        for layer in range(len(blocks[0].layers)):
            k = torch.cat([b.layers[layer][0] for b in blocks], dim=-2)[:, :n]
            v = torch.cat([b.layers[layer][1] for b in blocks], dim=-2)[:, :n]
            out.append((k, v))
        return out

    def store(self, ids, layers: Layers) -> None:
        """Keep the full blocks of ``ids`` not yet cached, from ``layers`` (per layer
        keys and values of every token of ids, each (heads, len(ids), head_dim)).
        Room is made by dropping least recently used blocks of other prefixes."""
        chain = self.digests(ids, len(ids) // self.block)
        mine = set(chain)
        for b, d in enumerate(chain):
            if d in self.blocks:
                continue
            sl = slice(b * self.block, (b + 1) * self.block)
            kv = tuple((k[:, sl].clone(), v[:, sl].clone()) for k, v in layers)
            nbytes = sum(t.numel() * t.element_size() for pair in kv for t in pair)
            if not self._make_room(nbytes, mine):
                break
            self.blocks[d] = Block(d, kv, nbytes)
            self.nbytes += nbytes
        self._touch(chain)

    def _make_room(self, nbytes: int, keep: set[bytes]) -> bool:
        """Drop least recently used blocks outside ``keep`` until ``nbytes`` more fit;
        False if they cannot."""
        while self.nbytes + nbytes > self.max_bytes:
            old = next((d for d in self.blocks if d not in keep), None)
            if old is None:
                return False
            self.nbytes -= self.blocks.pop(old).nbytes
        return True
