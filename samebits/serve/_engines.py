"""The work a batch does: embeddings (sentence-transformers) and completions
(a Hugging Face causal LM with a KV cache). Both run inside the batcher's worker
thread, which holds ``batch_invariant()``: an item's result has the same bits in
any batch, so batching never changes an answer."""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch


class RequestError(ValueError):
    """A request the engine refuses (reported as HTTP 400)."""


@dataclass(frozen=True)
class Tokens:
    """A text and its token ids, made once on the event loop (see EmbeddingEngine.prepare)."""

    text: str
    ids: tuple[int, ...]
    type_ids: tuple[int, ...]


class EmbeddingEngine:
    kind = "embeddings"

    def __init__(self, st, name: str) -> None:
        from samebits.models import SentenceEmbedder

        self.st, self.name = st, name
        self.module = SentenceEmbedder(st)
        self.max_tokens = int(getattr(st, "max_seq_length", 256) or 256)
        self.tokenizer = st.tokenizer
        # Rust tokenizers raise "Already borrowed" when two threads use one at once:
        # the model's tokenizer is used under this lock (by prepare() when there is no
        # private copy, and by the worker's length-grouped path).
        self.tok_lock = threading.Lock()
        self.encoder = _packing_encoder(st)
        self.after = list(st)[1:]  # pooling, normalization
        # Token ids are made on the event loop by a private copy of the Rust tokenizer
        # (no truncation, no padding: the ids of the text alone, as the model's own
        # tokenizer makes them; tests/serve/test_engines.py compares them).
        self.fast = _plain_copy(self.tokenizer)

    def prepare_many(self, texts: list[str]) -> list[Tokens]:
        """prepare() for each text, in one call to the Rust tokenizer's encode_batch,
        which releases the GIL (its encode does not): run in a thread, a 4 MiB input
        then leaves the event loop free. Raises RequestError naming the first text
        the model cannot take whole."""
        if self.fast is None:
            return [self._checked(i, self.prepare, t) for i, t in enumerate(texts)]
        encs = self.fast.encode_batch(texts, add_special_tokens=True)
        out = []
        for i, (t, enc) in enumerate(zip(texts, encs, strict=True)):
            self._checked(i, self._check_length, enc.ids)
            out.append(Tokens(t, tuple(enc.ids), tuple(enc.type_ids)))
        return out

    @staticmethod
    def _checked(i: int, fn, arg):
        try:
            return fn(arg)
        except RequestError as e:
            raise RequestError(f"input[{i}]: {e}") from e

    def _check_length(self, ids) -> None:
        if len(ids) > self.max_tokens:
            raise RequestError(
                f"input has {len(ids)} tokens; this model takes at most {self.max_tokens}"
            )

    def prepare(self, text: str) -> Tokens:
        """A batch item: the text with its token ids, made here, on the caller's
        thread (the packed path runs them as they are; the length-grouped path
        takes their lengths). Raises RequestError if the model cannot take the text
        whole."""
        if self.fast is not None:
            enc = self.fast.encode(text, add_special_tokens=True)
            ids, types = enc.ids, enc.type_ids
        else:
            with self.tok_lock:
                ids = self.tokenizer(text, add_special_tokens=True)["input_ids"]
            types = [0] * len(ids)
        self._check_length(ids)
        return Tokens(text, tuple(ids), tuple(types))

    @torch.inference_mode()
    def run(self, items: list[Tokens | str]) -> list[torch.Tensor]:
        """Embed a batch: packed into few sequences where the model allows it (see
        _packing_encoder), else regrouped by token length so that padding wastes
        little compute. Either is safe only because the worker holds
        batch_invariant(): an item's bits do not depend on what shares its pass."""
        items = [t if isinstance(t, Tokens) else self.prepare(t) for t in items]
        if self.encoder is not None:
            return self._run_packed(items)
        from samebits.models import tokenize_for

        texts, lens = [t.text for t in items], [len(t.ids) for t in items]
        out: list[torch.Tensor | None] = [None] * len(texts)
        for group in length_groups(lens):
            with self.tok_lock:
                feats = tokenize_for(self.st, [texts[i] for i in group])
            emb = self.module(**feats)["sentence_embedding"]
            for row, i in enumerate(group):
                out[i] = emb[row].float().clone()
        return out

    def _run_packed(self, items: list[Tokens]) -> list[torch.Tensor]:
        """Several texts in one sequence, with no padding: a block-diagonal mask keeps
        each text's tokens attending to their own text only, and position ids restart
        at 0 for each text. Each text's vector has the bits of the text embedded
        alone: every row-wise op (linear, layer norm, gelu) gives a row the same bits
        in any batch, and in attention another text's keys get p = 0 exactly, which
        adds exact zeros to the sums (activations are finite). Pooling and
        normalization run for all texts in one call, each text with its alone bits
        (see _pool).
        Measured on the demo texts in batches of 16, 2 threads: ~3.3 ms per text
        packed, ~12 ms one at a time."""
        lens = [len(t.ids) for t in items]
        out: list[torch.Tensor | None] = [None] * len(items)
        for group in pack_groups(lens, PACK_TOKENS):
            n = [lens[i] for i in group]
            input_ids = torch.tensor([[x for i in group for x in items[i].ids]])
            token_types = torch.tensor([[x for i in group for x in items[i].type_ids]])
            seg, pos = segments(n)
            mask = torch.full((len(seg), len(seg)), -math.inf)  # -inf: attention skips these keys
            mask.masked_fill_(seg[:, None] == seg[None, :], 0.0)
            hidden = self.encoder(
                input_ids=input_ids,
                attention_mask=mask[None, None],
                token_type_ids=token_types,
                position_ids=pos[None],
            ).last_hidden_state
            emb = self._pool(hidden[0], seg, pos)
            for row, i in enumerate(group):
                out[i] = emb[row].float().clone()
        return out

    def _pool(self, hidden: torch.Tensor, seg: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """The post-transformer modules (pooling, normalization) on a pack's texts in
        one call: (texts, dim), for the pack's rows `hidden` of texts `seg` at
        positions `pos` (see segments()). The texts' token rows are laid out right-padded
        under a 0 mask. Each text's result has the bits of the modules run on its rows
        alone: masking turns a pad into a signed zero (pads are -0.0: -0.0 * 0 = -0.0,
        and x + (-0.0) == x for every x), which the sum over tokens adds after the
        text's own rows, in order; the token count is an exact integer; normalization
        is per row. tests/serve/test_engines.py checks it on rows of -0.0, 0, huge
        values, inf and NaN."""
        P, K = int(seg[-1]) + 1, int(pos.max()) + 1
        tokens = hidden.new_full((P, K, hidden.size(-1)), -0.0)
        tokens[seg, pos] = hidden
        mask = torch.zeros(P, K, dtype=torch.long)
        mask[seg, pos] = 1
        f = {"token_embeddings": tokens, "attention_mask": mask}
        for module in self.after:
            f = module(f)
        return f["sentence_embedding"]


def segments(lens: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """For texts of these lengths laid end to end: each token's text and its
    position within its text."""
    seg = torch.repeat_interleave(torch.arange(len(lens)), torch.tensor(lens))
    return seg, torch.cat([torch.arange(k) for k in lens])


def _plain_copy(tokenizer):
    """A private copy of a fast tokenizer's Rust backend with truncation and padding
    off, or None for a tokenizer without one (prepare() then calls the tokenizer
    itself)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    from tokenizers import Tokenizer

    fast = Tokenizer.from_str(backend.to_str())
    fast.no_truncation()
    fast.no_padding()
    return fast


# tokens per packed pass: attention scores each row over its own text's keys only
# (the mask's live windows), so a pass costs about what its texts cost apart, plus
# one forward's fixed overhead (~9 ms here); batches of 16 and 32 demo texts measured
# the same per text at 512 and 1024, and up to 10% faster than at 256 when a batch
# needed two passes there
PACK_TOKENS = 512


def _packing_encoder(st):
    """The HF encoder to run packed sequences through, or None where packing is not
    known to give each text its alone bits: only BERT encoders (absolute position ids
    taken as given, a 4-D additive mask taken as given), right-padding tokenizers,
    and Pooling / Normalize after the transformer."""
    try:
        from sentence_transformers.models import Normalize, Pooling, Transformer
    except ImportError:  # pragma: no cover - the hf extra is installed with serve
        return None
    modules = list(st)
    if not modules or not isinstance(modules[0], Transformer):
        return None
    model = getattr(modules[0], "auto_model", None)
    cfg = getattr(model, "config", None)
    if (
        cfg is None
        or cfg.model_type != "bert"
        or getattr(cfg, "is_decoder", False)
        or getattr(cfg, "position_embedding_type", "absolute") != "absolute"
        or getattr(st.tokenizer, "padding_side", "right") != "right"
        or not all(isinstance(m, (Pooling, Normalize)) for m in modules[1:])
    ):
        return None
    return model


def pack_groups(lens: list[int], budget: int) -> list[list[int]]:
    """Items in order of length, cut into runs of at most ``budget`` tokens (an item
    longer than the budget gets a run of its own)."""
    order = sorted(range(len(lens)), key=lambda i: lens[i])
    groups: list[list[int]] = []
    total = 0
    for i in order:
        if groups and total + lens[i] <= budget:
            groups[-1].append(i)
            total += lens[i]
        else:
            groups.append([i])
            total = lens[i]
    return groups


def length_groups(
    lens: list[int], overhead_tokens: int = 48, max_group: int = 32
) -> list[list[int]]:
    """Split items into forward passes minimizing ``overhead_tokens`` per pass plus
    padded tokens (group size x its longest length), by dynamic programming over
    the items sorted by length. A pass costs roughly 48 tokens' worth of fixed
    per-forward overhead on MiniLM here (measured: ~10 ms, ~0.2 ms per token)."""
    order = sorted(range(len(lens)), key=lambda i: lens[i])
    ls = [lens[i] for i in order]
    n = len(ls)
    best, cut = [0.0] + [float("inf")] * n, [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(max(0, j - max_group), j):
            c = best[i] + overhead_tokens + (j - i) * ls[j - 1]
            if c < best[j]:
                best[j], cut[j] = c, i
    groups, j = [], n
    while j > 0:
        groups.append(order[cut[j] : j])
        j = cut[j]
    return groups[::-1]


@dataclass
class Completion:
    """One prompt to complete, with its decoding settings."""

    prompt_ids: list[int]
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    on_token: Callable[[int, str], None] | None = None  # streaming callback (worker thread)
    prompt: str = ""
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: str | None = None
    cancelled: bool = False  # set from the event loop when the client went away
    sent: int = 0  # characters of text already given to on_token (kept across reset())

    def reset(self) -> None:
        """Back to the prompt alone, for a run again (the batcher's retry item by item).
        ``sent`` stays: the run again gives the same text, so nothing is sent twice."""
        self.tokens, self.text, self.finish_reason = [], "", None


def held_back(text: str, stops: list[str]) -> int:
    """How many trailing characters of ``text`` a stream must hold back: the longest
    tail that is a proper prefix of a stop string (the next token may complete the
    stop string, and the non-streamed text drops it), or a trailing U+FFFD (an
    incomplete UTF-8 sequence the next token may complete)."""
    keep = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), keep, -1):
            if text.endswith(s[:k]):
                keep = k
                break
    if text.endswith("\ufffd"):
        keep = max(keep, len(text) - len(text.rstrip("\ufffd")))
    return keep


def gumbel_noise(seed: int, step: int, vocab: int) -> torch.Tensor:
    """Counter-based noise: a function of (seed, step) only, never of the batch."""
    key = hashlib.sha256(f"samebits:{seed}:{step}".encode()).digest()
    g = torch.Generator().manual_seed(int.from_bytes(key[:8], "little") & ((1 << 63) - 1))
    u = torch.rand(vocab, generator=g, dtype=torch.float64).clamp_(1e-300, 1.0 - 1e-16)
    return -torch.log(-torch.log(u))


def choose(logits: torch.Tensor, c: Completion, step: int) -> int:
    """Greedy argmax at temperature 0; otherwise Gumbel-max over the top-p set,
    which samples from softmax(logits / T) with noise keyed by (seed, step)."""
    if c.temperature <= 0:
        return int(torch.argmax(logits))
    from samebits._mode import batch_invariant

    with batch_invariant(False):  # one item's own logits: float64 math, no batch involved
        return _sample(logits, c, step)


def _sample(logits: torch.Tensor, c: Completion, step: int) -> int:
    z = logits.double() / c.temperature
    if c.top_p < 1.0:
        order = torch.argsort(z, descending=True, stable=True)
        p = torch.softmax(z[order], -1)
        keep = (p.cumsum(-1) - p) < c.top_p  # the smallest prefix reaching top_p
        mask = torch.full_like(z, float("-inf"))
        mask[order[keep]] = 0.0
        z = z + mask
    return int(torch.argmax(z + gumbel_noise(c.seed or 0, step, z.numel())))


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
        self.tok_lock = threading.Lock()  # see EmbeddingEngine.tok_lock

    def encode(self, prompt: str) -> list[int]:
        with self.tok_lock:
            ids = self.tok(prompt, add_special_tokens=True)["input_ids"]
        if not ids:
            raise RequestError("prompt encodes to no tokens")
        return list(ids)

    def decode(self, ids: list[int]) -> str:
        with self.tok_lock:
            return self.tok.decode(ids, skip_special_tokens=True)

    @torch.inference_mode()
    def run(self, items: list[Completion]) -> list[Completion]:
        from transformers import DynamicCache

        n, L = len(items), max(len(c.prompt_ids) for c in items)
        ids = torch.full((n, L), self.pad, dtype=torch.long)
        mask = torch.zeros((n, L), dtype=torch.long)
        for i, c in enumerate(items):  # left padding: every row's last token is at L - 1
            ids[i, L - len(c.prompt_ids) :] = torch.tensor(c.prompt_ids)
            mask[i, L - len(c.prompt_ids) :] = 1
        cache = DynamicCache()
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = self._step(ids, mask, pos, cache)
        steps = max(c.max_tokens for c in items)
        for step in range(steps):
            nxt = []
            for i, c in enumerate(items):
                if c.cancelled and c.finish_reason is None:
                    c.finish_reason = "cancelled"  # its client went away: stop decoding it
                if c.finish_reason is not None:
                    nxt.append(self.pad)
                    continue
                tok = choose(logits[i], c, step)
                c.tokens.append(tok)
                self._advance(c, tok)
                nxt.append(tok)
            if all(c.finish_reason is not None for c in items):
                break
            mask = torch.cat([mask, torch.ones(n, 1, dtype=torch.long)], 1)
            pos = pos[:, -1:] + 1
            logits = self._step(torch.tensor(nxt)[:, None], mask, pos, cache)
        for c in items:
            c.finish_reason = c.finish_reason or "length"
        return items

    def _step(
        self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache
    ) -> torch.Tensor:
        """One forward over the cache; the float32 logits of each row's last position."""
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            past_key_values=cache,
            use_cache=True,
        )
        return out.logits[:, -1].float()

    def _advance(self, c: Completion, tok: int) -> None:
        if self.eos is not None and tok == self.eos:
            c.tokens.pop()
            c.finish_reason = "stop"
            return
        text = self.decode(c.tokens)
        ats = [at for at in (text.find(s) for s in c.stop) if at >= 0]
        if ats:
            c.text, c.finish_reason = text[: min(ats)], "stop"
        else:
            c.text = text
            if len(c.tokens) >= c.max_tokens:
                c.finish_reason = "length"
            elif len(c.prompt_ids) + len(c.tokens) >= self.max_context:
                c.finish_reason = "length"
        # stream what can no longer change: all of it once finished, else all but a
        # tail that may still turn into a stop string (see held_back)
        end = len(c.text) if c.finish_reason else len(c.text) - held_back(c.text, c.stop)
        if c.on_token and end > c.sent:
            delta, c.sent = c.text[c.sent : end], end
            c.on_token(tok, delta)


def load_engine(spec: str):
    """--model minilm | a sentence-transformers directory | a causal LM directory."""
    from pathlib import Path

    from samebits.models import (
        ModelLoadError,
        is_sentence_model_dir,
        load_causal_lm,
        load_sentence_model,
    )

    if spec == "minilm":
        return EmbeddingEngine(load_sentence_model(), "minilm")
    path = Path(spec)
    if not path.is_dir():
        raise ModelLoadError(f"--model {spec!r}: expected 'minilm' or a local model directory")
    if is_sentence_model_dir(path):
        return EmbeddingEngine(load_sentence_model(path), path.name)
    model, tok = load_causal_lm(path)
    if tok is None:
        raise ModelLoadError(f"{spec!r} has no tokenizer: serving completions needs one")
    return CompletionEngine(model, tok, path.name)


def digest(t: torch.Tensor) -> str:
    from samebits.record.compare import raw_bytes

    return hashlib.sha256(raw_bytes(t)).hexdigest()


def describe(engine) -> dict[str, Any]:
    return {"id": engine.name, "object": "model", "owned_by": "samebits", "kind": engine.kind}
