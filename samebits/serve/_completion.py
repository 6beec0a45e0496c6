"""One choice to generate (``Completion``) and how each new token updates it: its text,
its stop strings, its finish reason, and what a stream may send so far."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from samebits.serve._sampling import TokenLogprob


@dataclass(frozen=True)
class Emitted:
    """What a stream gets after a token: the text no later token can change
    (``text``, possibly empty: see held_back), and the tokens generated since the last
    event with their logprobs (empty when the request asked for none)."""

    text: str
    tokens: tuple[int, ...]
    logprobs: tuple[TokenLogprob, ...]


@dataclass
class Completion:
    """One choice to generate: a prompt's token ids and the choice's decoding settings.
    ``seed`` is the choice's own seed (see _sampling.choice_seed); ``logprobs`` is
    None for no logprobs, else how many top alternatives each token reports."""

    prompt_ids: list[int]
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: list[str] = field(default_factory=list)
    logprobs: int | None = None
    on_token: Callable[[Emitted], None] | None = None  # streaming callback (worker thread)
    prompt: str = ""
    tokens: list[int] = field(default_factory=list)
    token_logprobs: list[TokenLogprob] = field(default_factory=list)
    text: str = ""
    finish_reason: str | None = None
    cancelled: bool = False  # set from the event loop when the client went away
    sent: int = 0  # characters of text already given to on_token (kept across reset())
    sent_tokens: int = 0  # tokens already given to on_token (kept across reset())

    def reset(self) -> None:
        """Back to the prompt alone, for a run again (the batcher's retry item by item).
        ``sent`` and ``sent_tokens`` stay: the run again gives the same tokens and text,
        so nothing is sent twice."""
        self.tokens, self.token_logprobs, self.text, self.finish_reason = [], [], "", None


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


def advance(
    c: Completion,
    tok: int,
    entry: TokenLogprob | None,
    decode: Callable[[list[int]], str],
    eos: int | None,
    max_context: int,
) -> None:
    """Append the sampled token ``tok`` (and its logprob ``entry``) to ``c``; set its
    finish reason once it ends (EOS, a stop string, max_tokens, the context); give a
    stream what can no longer change. The EOS token itself is not kept."""
    if eos is not None and tok == eos:
        c.finish_reason = "stop"
    else:
        c.tokens.append(tok)
        if entry is not None:
            c.token_logprobs.append(entry)
        text = decode(c.tokens)
        ats = [at for at in (text.find(s) for s in c.stop) if at >= 0]
        if ats:
            c.text, c.finish_reason = text[: min(ats)], "stop"
        else:
            c.text = text
            if len(c.tokens) >= c.max_tokens or len(c.prompt_ids) + len(c.tokens) >= max_context:
                c.finish_reason = "length"
    if c.on_token is not None:
        emit(c)


def emit(c: Completion) -> None:
    """Give ``c.on_token`` the tokens not yet sent and the text that can no longer
    change: all of it once finished, else all but a tail that may still turn into a
    stop string (see held_back)."""
    end = len(c.text) if c.finish_reason else len(c.text) - held_back(c.text, c.stop)
    text = c.text[c.sent : end] if end > c.sent else ""
    tokens = tuple(c.tokens[c.sent_tokens :])
    logprobs = tuple(c.token_logprobs[c.sent_tokens :]) if c.logprobs is not None else ()
    if not text and not tokens:
        return
    c.sent = max(c.sent, end)
    c.sent_tokens = max(c.sent_tokens, len(c.tokens))
    c.on_token(Emitted(text, tokens, logprobs))
