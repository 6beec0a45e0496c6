"""The running batch of continuous batching: rows that decode together over one
left-padded KV cache, and the steps that change it (prefill new rows, decode one
token, merge two batches, keep some rows).

Layout: a cache holds (B, heads, T, head_dim) keys and values per layer; row i's real
keys are its last ``lens[i]`` columns, in order, and the columns before them are
padding that a mask hides. That is the layout HF's generate() uses for left-padded
prompts, and under the mode a row's attention over it has the bits of the row alone:
masked keys add exact zeros and the real keys keep their order (DESIGN.md, "padding"
and "cache" invariance). No batch is wider than its longest row: rows joining are
padded on the left to the batch's width (or the batch to theirs), and when rows
leave, the columns that only they used are cut off.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from samebits.serve._completion import Completion
from samebits.serve._engines import length_groups
from samebits.serve._prefix import PrefixCache


@dataclass
class DecodeBatch:
    """Rows decoding together; ``layers[l] = (keys, values)``, each (B, H, T, D), row i's
    real keys in its last ``lens[i]`` columns."""

    rows: list[Completion]
    layers: list[tuple[torch.Tensor, torch.Tensor]]
    lens: torch.Tensor  # (B,) int64

    @property
    def width(self) -> int:
        return self.layers[0][0].size(-2)


def make_cache(layers: list[tuple[torch.Tensor, torch.Tensor]] | None):
    """An HF DynamicCache holding ``layers`` as they are (or empty). Its layers take
    the tensors without a copy (DynamicCache(ddp_cache_data=...) would concatenate
    each onto an empty one), and the model's next update concatenates onto them."""
    from transformers import DynamicCache

    if not layers:
        return DynamicCache()
    cache = DynamicCache(ddp_cache_data=[(None, None)] * len(layers))
    for layer, (k, v) in zip(cache.layers, layers, strict=True):
        layer.lazy_initialization(k, v)
        layer.keys, layer.values = k, v
    return cache


def cache_layers(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


def left_mask(lens: torch.Tensor, width: int) -> torch.Tensor:
    """(B, width) int64: 1 on each row's last lens[i] columns."""
    return (torch.arange(width)[None, :] >= (width - lens)[:, None]).long()


def pad_left(t: torch.Tensor, width: int) -> torch.Tensor:
    """(B, H, T, D) -> (B, H, width, D), zeros in front (hidden by the mask)."""
    extra = width - t.size(-2)
    if extra <= 0:
        return t
    return torch.cat([t.new_zeros(*t.shape[:-2], extra, t.size(-1)), t], dim=-2)


def merge(a: DecodeBatch | None, b: DecodeBatch) -> DecodeBatch:
    """``a``'s rows, then ``b``'s, over one cache as wide as the wider of the two."""
    if a is None:
        return b
    w = max(a.width, b.width)
    layers = [
        (
            torch.cat([pad_left(ka, w), pad_left(kb, w)]),
            torch.cat([pad_left(va, w), pad_left(vb, w)]),
        )
        for (ka, va), (kb, vb) in zip(a.layers, b.layers, strict=True)
    ]
    return DecodeBatch(a.rows + b.rows, layers, torch.cat([a.lens, b.lens]))


def keep(batch: DecodeBatch, idx: list[int]) -> DecodeBatch | None:
    """The rows ``idx`` alone (None for none), cut to the longest one's width: rows that
    left are no longer computed, and no row pays for their length."""
    if not idx:
        return None
    if len(idx) == len(batch.rows):
        return batch
    sel = torch.tensor(idx)
    lens = batch.lens[sel]
    start = batch.width - int(lens.max())
    layers = [
        (k.index_select(0, sel)[..., start:, :], v.index_select(0, sel)[..., start:, :])
        for k, v in batch.layers
    ]
    return DecodeBatch([batch.rows[i] for i in idx], layers, lens)


@torch.inference_mode()
def decode_step(engine, batch: DecodeBatch) -> torch.Tensor:
    """Feed each row its last sampled token; (B, vocab) float32 logits of the next one."""
    ids = torch.tensor([c.tokens[-1] for c in batch.rows])[:, None]  # (B, 1)
    lens = batch.lens + 1
    cache = make_cache(batch.layers)
    logits = engine.forward(ids, left_mask(lens, batch.width + 1), batch.lens[:, None], cache)
    batch.layers, batch.lens = cache_layers(cache), lens
    return logits


@torch.inference_mode()
def prefill(
    engine, rows: list[Completion], prefix: PrefixCache | None
) -> tuple[DecodeBatch, torch.Tensor]:
    """Prefill new rows into a DecodeBatch and return it with their first logits.

    Rows with the same prompt ids (the n choices of a request) share one prefill row.
    A prompt whose leading blocks are in ``prefix`` starts from their keys and values
    and runs only the rest (chunked prefill: the same bits as a full one). Prompts are
    grouped into passes by how many tokens each still needs (length_groups)."""
    uniq: dict[tuple[int, ...], int] = {}
    for c in rows:
        uniq.setdefault(tuple(c.prompt_ids), len(uniq))
    prompts = list(uniq)
    hits = [prefix.lookup(p, len(p) - 1) if prefix else [] for p in prompts]
    reuse = [prefix.tokens(h) if prefix else 0 for h in hits]
    todo = [len(p) - r for p, r in zip(prompts, reuse, strict=True)]
    parts, logits = [], [None] * len(prompts)
    for group in length_groups(todo, max_group=max(1, len(prompts))):
        layers, lens, out = _prefill_pass(
            engine, [prompts[u] for u in group], [hits[u] for u in group], prefix
        )
        parts.append((group, layers, lens))
        for j, u in enumerate(group):
            logits[u] = out[j]
    merged = None
    order: list[int] = []
    for group, layers, lens in parts:
        merged = merge(merged, DecodeBatch([], layers, lens))
        order += group
    where = {u: i for i, u in enumerate(order)}
    sel = torch.tensor([where[uniq[tuple(c.prompt_ids)]] for c in rows])
    layers = [(k.index_select(0, sel), v.index_select(0, sel)) for k, v in merged.layers]
    first = torch.stack([logits[uniq[tuple(c.prompt_ids)]] for c in rows])
    return DecodeBatch(list(rows), layers, merged.lens[sel]), first


def _prefill_pass(engine, prompts, hits, prefix):
    """One forward for ``prompts``: (layers, lens, last-position logits).

    Q = the most tokens any prompt still needs; every prompt's real tokens end at the
    last column, the cached part of each (its first len - Q tokens, taken from its
    prefix blocks) before the Q input columns, so no row has a gap."""
    lens = [len(p) for p in prompts]
    reuse = [prefix.tokens(h) if prefix else 0 for h in hits]
    q = max(n - r for n, r in zip(lens, reuse, strict=True))
    past = max(0, max(lens) - q)
    width = past + q
    ids = torch.full((len(prompts), q), engine.pad, dtype=torch.long)
    for i, p in enumerate(prompts):
        tail = p[max(0, len(p) - q) :]
        ids[i, q - len(tail) :] = torch.tensor(tail)
    lens_t = torch.tensor(lens)
    mask = left_mask(lens_t, width)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)[:, past:]  # (B, Q)
    cache = make_cache(_past_layers(prompts, hits, past, q, prefix) if past else None)
    if prefix is not None:
        prefix.hit_tokens += sum(max(0, n - q) for n in lens)
    logits = engine.forward(ids, mask, pos, cache)
    layers = cache_layers(cache)
    if prefix is not None:
        for i, p in enumerate(prompts):
            start = width - len(p)
            prefix.store(p, [(k[i, :, start:], v[i, :, start:]) for k, v in layers])
    return layers, lens_t, logits


def _past_layers(prompts, hits, past: int, q: int, prefix: PrefixCache):
    """The cache before a pass: each prompt's first ``len - q`` tokens' keys and values
    (from its prefix blocks, which hold at least that many) in the last columns of
    ``past``; zeros before them, which the mask hides."""
    rows = [
        prefix.gather(h, len(p) - q) if len(p) > q else None
        for p, h in zip(prompts, hits, strict=True)
    ]
    proto = next(r for r in rows if r is not None)
    out = []
    for layer, (k0, v0) in enumerate(proto):
        k = k0.new_zeros(len(prompts), k0.size(0), past, k0.size(-1))  # (B, H, past, D)
        v = v0.new_zeros(len(prompts), v0.size(0), past, v0.size(-1))
        for i, r in enumerate(rows):
            if r is not None:
                n = r[layer][0].size(-2)
                k[i, :, past - n :], v[i, :, past - n :] = r[layer]
        out.append((k, v))
    return out
