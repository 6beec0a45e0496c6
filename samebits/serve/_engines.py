"""The work a batch does: embeddings (sentence-transformers) here, completions (a
Hugging Face causal LM with a KV cache) in _generate. Both run inside the batcher's
worker thread, which holds ``batch_invariant()``: an item's result has the same bits
in any batch, so batching never changes an answer."""

from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import dataclass
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


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def load_engine(spec: str, dtype: str = "auto"):
    """--model minilm | a sentence-transformers directory | a causal LM directory;
    --dtype auto (as loaded) | float32 | bfloat16 for a causal LM."""
    from pathlib import Path

    from samebits.models import (
        ModelLoadError,
        is_sentence_model_dir,
        load_causal_lm,
        load_sentence_model,
    )
    from samebits.serve._generate import CompletionEngine

    if dtype != "auto" and dtype not in DTYPES:
        raise ModelLoadError(f"--dtype {dtype!r}: expected auto, {', '.join(DTYPES)}")
    path = Path(spec)
    if spec != "minilm" and not path.is_dir():
        raise ModelLoadError(f"--model {spec!r}: expected 'minilm' or a local model directory")
    if spec == "minilm" or is_sentence_model_dir(path):
        if dtype != "auto":
            raise ModelLoadError(
                f"--dtype {dtype}: only a causal LM takes --dtype; {spec!r} is not one"
            )
        st = load_sentence_model() if spec == "minilm" else load_sentence_model(path)
        return EmbeddingEngine(st, "minilm" if spec == "minilm" else path.name)
    model, tok = load_causal_lm(path)
    if tok is None:
        raise ModelLoadError(f"{spec!r} has no tokenizer: serving completions needs one")
    if dtype != "auto":
        model = model.to(DTYPES[dtype])
    return CompletionEngine(model, tok, path.name)


def digest(t: torch.Tensor) -> str:
    from samebits.record.compare import raw_bytes

    return hashlib.sha256(raw_bytes(t)).hexdigest()


def describe(engine) -> dict[str, Any]:
    return {"id": engine.name, "object": "model", "owned_by": "samebits", "kind": engine.kind}
