"""The completion engine: a Hugging Face causal LM with a KV cache, its tokenizer and
chat template, one sampling step for a batch of rows (``pick``), and static batching
(``run``: a batch decodes until its longest row ends). Continuous batching
(_decode_batch, _continuous) uses the same forward and the same ``pick``."""

from __future__ import annotations

import inspect
import json
import re
import threading

import torch

from samebits.serve._completion import Completion, advance
from samebits.serve._sampling import TokenLogprob, choose, logprobs_of, top_alternatives


class RequestError(ValueError):
    """A request the engine refuses (reported as HTTP 400)."""


_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")  # sentencepiece byte fallback


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, inverted: the character a byte-level BPE vocabulary
    writes for each byte -> the byte."""
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


class CompletionEngine:
    kind = "completions"

    def __init__(self, model, tokenizer, name: str, max_context: int | None = None) -> None:
        self.model, self.tok, self.name = model.eval(), tokenizer, name
        cfg = model.config
        self.max_context = max_context or int(getattr(cfg, "max_position_embeddings", 2048))
        self.eos = getattr(tokenizer, "eos_token_id", None)
        if self.eos is None:
            self.eos = getattr(cfg, "eos_token_id", None)
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (self.eos or 0)
        # Rust tokenizers raise "Already borrowed" when two threads use one at once
        self.tok_lock = threading.Lock()
        # transformers 5 renamed past_key_values to cache (the old name warns)
        params = inspect.signature(model.forward).parameters
        self.cache_kw = "cache" if "cache" in params else "past_key_values"
        self.byte_level = _is_byte_level(tokenizer)
        self.continuous_blocker = continuous_blocker(model)
        self.pieces: dict[int, tuple[str, bytes]] = {}

    # -- text <-> ids (event loop threads) ---------------------------------------------

    def encode(self, prompt: str, special: bool = True) -> list[int]:
        with self.tok_lock:
            ids = self.tok(prompt, add_special_tokens=special)["input_ids"]
        if not ids:
            raise RequestError("prompt encodes to no tokens")
        return list(ids)

    def decode(self, ids: list[int]) -> str:
        with self.tok_lock:
            return self.tok.decode(ids, skip_special_tokens=True)

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tok, "chat_template", None))

    def chat_prompt(self, messages: list[dict]) -> str:
        """The prompt text the tokenizer's chat template makes of ``messages``, ending
        with the assistant's turn (its ids: ``encode(text, special=False)``, since
        the template writes the special tokens itself)."""
        if not self.has_chat_template:
            raise RequestError(
                f"model {self.name!r} has no chat template (its tokenizer_config.json "
                "defines no 'chat_template'): send a prompt to /v1/completions instead, "
                "or serve a model whose tokenizer has one"
            )
        try:
            with self.tok_lock:
                return self.tok.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=True
                )
        except Exception as e:  # noqa: BLE001 - a template's raise_exception(), or a bad role
            raise RequestError(f"the model's chat template refused these messages: {e}") from e

    def piece(self, token: int) -> tuple[str, bytes]:
        """One token's text and bytes, for logprobs: the text ``decode`` gives the token
        alone (special tokens included), and its bytes, exact for byte-level and
        byte-fallback vocabularies (where one token may hold part of a character)."""
        got = self.pieces.get(token)
        if got is None:
            with self.tok_lock:
                text = self.tok.decode([token], skip_special_tokens=False)
                raw = self.tok.convert_ids_to_tokens(token)
            data = text.encode("utf-8")
            m = _BYTE_PIECE.fullmatch(raw or "")
            if m:
                data = bytes([int(m.group(1), 16)])
            elif self.byte_level and raw and all(ch in _BYTES for ch in raw):
                data = bytes(_BYTES[ch] for ch in raw)
            got = self.pieces[token] = (text, data)
        return got

    # -- the model (worker thread, under the mode) ----------------------------------------

    def forward(self, ids, mask, pos, cache) -> torch.Tensor:
        """One forward over the cache; the float32 logits of each row's last position
        (bfloat16 logits widen exactly)."""
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            use_cache=True,
            **{self.cache_kw: cache},
        )
        return out.logits[:, -1].float()

    def pick(self, rows: list[Completion], logits: torch.Tensor) -> None:
        """One token for every unfinished row from its logits row (``logits[i]`` for
        ``rows[i]``), with its logprob when asked; a row whose client went away is
        finished instead ("cancelled")."""
        want = [i for i, c in enumerate(rows) if c.logprobs is not None and c.finish_reason is None]
        lp = logprobs_of(logits[want]) if want else None
        where = {i: j for j, i in enumerate(want)}
        for i, c in enumerate(rows):
            if c.cancelled and c.finish_reason is None:
                c.finish_reason = "cancelled"
            if c.finish_reason is not None:
                continue
            tok = choose(logits[i], c, len(c.tokens))
            entry = None
            if lp is not None and i in where:
                row = lp[where[i]]
                entry = TokenLogprob(tok, float(row[tok]), top_alternatives(row, c.logprobs or 0))
            advance(c, tok, entry, self.decode, self.eos, self.max_context)

    @torch.inference_mode()
    def run(self, items: list[Completion]) -> list[Completion]:
        """Static batching: prefill every prompt (left-padded), then decode all rows
        until the last one ends; a finished row is fed padding until then."""
        from transformers import DynamicCache

        n, L = len(items), max(len(c.prompt_ids) for c in items)
        ids = torch.full((n, L), self.pad, dtype=torch.long)
        mask = torch.zeros((n, L), dtype=torch.long)
        for i, c in enumerate(items):  # left padding: every row's last token is at L - 1
            ids[i, L - len(c.prompt_ids) :] = torch.tensor(c.prompt_ids)
            mask[i, L - len(c.prompt_ids) :] = 1
        cache = DynamicCache()
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = self.forward(ids, mask, pos, cache)
        for _ in range(max(c.max_tokens for c in items)):
            self.pick(items, logits)
            if all(c.finish_reason is not None for c in items):
                break
            nxt = [self.pad if c.finish_reason else c.tokens[-1] for c in items]
            mask = torch.cat([mask, torch.ones(n, 1, dtype=torch.long)], 1)
            pos = pos[:, -1:] + 1
            logits = self.forward(torch.tensor(nxt)[:, None], mask, pos, cache)
        for c in items:
            c.finish_reason = c.finish_reason or "length"
        return items


_BYTES = _byte_decoder()


def continuous_blocker(model) -> str | None:
    """Why continuous batching cannot run this model (None: it can). It rearranges a
    DynamicCache's per-layer key and value tensors, which is right for full
    attention layers only; sliding-window and linear-attention layers keep state
    beyond them."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=model.config)
    layers = getattr(cache, "layers", None)
    if layers is None:
        return "this transformers version's DynamicCache has no per-layer tensors"
    kinds = sorted({type(layer).__name__ for layer in layers if type(layer) is not DynamicLayer})
    if kinds:
        return f"the model's cache has {', '.join(kinds)} layers, not only full attention"
    return None


def _is_byte_level(tokenizer) -> bool:
    """Whether the fast tokenizer's decoder is byte-level (GPT-2 style)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    try:
        decoder = json.loads(backend.to_str()).get("decoder") or {}
    except (ValueError, AttributeError):
        return False
    kinds = [decoder.get("type")] + [d.get("type") for d in decoder.get("decoders") or []]
    return "ByteLevel" in kinds
