"""Logprobs in OpenAI's two response shapes.

Each value is ``log_softmax`` of the raw float32 logits at the token's position
(before temperature and top-p; see _sampling), a float32 written as the float64 of the
same value: a client reading it back as float32 gets the exact bits.

- chat: ``{"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token",
  "logprob", "bytes"}, ...]}, ...]}``;
- completions (legacy): ``{"tokens", "token_logprobs", "top_logprobs": [{token:
  logprob}, ...], "text_offset"}``, where ``text_offset[j]`` is the character offset
  of token j in the choice's text, counted as the lengths of the tokens before it.
"""

from __future__ import annotations

from samebits.serve._sampling import TokenLogprob


def chat_entry(engine, e: TokenLogprob) -> dict:
    text, data = engine.piece(e.token)
    return {
        "token": text,
        "logprob": e.logprob,
        "bytes": list(data),
        "top_logprobs": [_alternative(engine, t, lp) for t, lp in e.top],
    }


def _alternative(engine, token: int, logprob: float) -> dict:
    text, data = engine.piece(token)
    return {"token": text, "logprob": logprob, "bytes": list(data)}


def chat_logprobs(engine, entries) -> dict:
    return {"content": [chat_entry(engine, e) for e in entries]}


def legacy_logprobs(engine, entries, offset: int = 0) -> tuple[dict, int]:
    """The legacy object for ``entries``, whose first token starts at character
    ``offset``; and the offset after the last one (a stream's next chunk starts there)."""
    tokens, offsets, tops = [], [], []
    for e in entries:
        text = engine.piece(e.token)[0]
        tokens.append(text)
        offsets.append(offset)
        offset += len(text)
        top: dict[str, float] = {}
        for t, lp in e.top:  # two ids with one text: the likelier one's value
            top.setdefault(engine.piece(t)[0], lp)
        tops.append(top)
    body = {
        "tokens": tokens,
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": tops,
        "text_offset": offsets,
    }
    return body, offset
