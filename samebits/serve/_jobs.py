"""From a validated completion or chat request to the work the batcher runs: one
``Completion`` per choice, with its prompt ids, limits and seed; and the parts of a
response every completion endpoint shares (usage, the ``samebits`` object).

Choices are prompt-major: choice ``k`` of a request with ``n`` choices per prompt is
sample ``k % n`` of prompt ``k // n`` and samples with ``choice_seed(seed, k)``; a
request without a seed gets a fresh one (returned as ``samebits.seed``)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import torch

from samebits.serve._completion import Completion
from samebits.serve._engines import digest
from samebits.serve._generate import RequestError
from samebits.serve._http import HTTPError, items_of
from samebits.serve._sampling import choice_seed, fresh_seed


@dataclass
class Job:
    """One request's choices (``items``, prompt-major) and what its answer reports."""

    id: str
    created: int
    prompt_ids: list[list[int]]
    n: int
    seed: int
    items: list[Completion]
    include_usage: bool = False

    def usage(self, done: list[Completion]) -> dict:
        """OpenAI's counts: each prompt once, every choice's tokens."""
        p = sum(len(ids) for ids in self.prompt_ids)
        c = sum(len(x.tokens) for x in done)
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    def samebits(self, done: list[Completion], fid: str) -> dict:
        """What a client needs to check and replay the answer."""
        out = self.choice_samebits(list(range(len(done))), done, fid)
        out["prompt_token_ids"] = self.prompt_ids
        return out

    def choice_samebits(self, idx: list[int], done: list[Completion], fid: str) -> dict:
        """The ``samebits`` object for choices ``idx`` (``done``: their completions)."""
        return {
            "seed": self.seed,
            "seeds": [self.items[i].seed for i in idx],
            "tokens": [c.tokens for c in done],
            "sha256": [digest(torch.tensor(c.tokens, dtype=torch.int64)) for c in done],
            "fingerprint_id": fid,
            "hashed": "int64 little-endian completion token ids",
        }


def completion_job(state, r) -> Job:
    """/v1/completions: each prompt tokenized (special tokens added), n choices each."""
    engine, config = state.engine, state.config
    require_completion_model(engine)
    prompts = items_of(r.prompt, "prompt", config.max_items)
    check_limits(config, r, len(prompts), r.max_tokens)
    ids = []
    for i, p in enumerate(prompts):
        try:
            ids.append(engine.encode(p))
        except RequestError as e:
            raise HTTPError(400, f"prompt[{i}]: {e}", param="prompt") from e
        if len(ids[-1]) + r.max_tokens > engine.max_context:
            raise HTTPError(
                400,
                f"prompt[{i}] has {len(ids[-1])} tokens; with max_tokens={r.max_tokens} that "
                f"exceeds the context of {engine.max_context}",
                param="prompt",
            )
    return make_job("cmpl", r, prompts, ids, r.max_tokens, r.logprobs)


def chat_job(state, r) -> Job:
    """/v1/chat/completions: the messages through the tokenizer's chat template."""
    engine, config = state.engine, state.config
    require_completion_model(engine)
    if r.top_logprobs is not None and not r.logprobs:
        raise HTTPError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
    asked = r.max_completion_tokens or r.max_tokens
    check_limits(config, r, 1, asked or 1)
    try:
        text = engine.chat_prompt([m.as_template_input() for m in r.messages])
        ids = engine.encode(text, special=False)  # the template wrote the special tokens
    except RequestError as e:
        raise HTTPError(400, str(e), param="messages") from e
    room = engine.max_context - len(ids)
    max_tokens = asked or min(config.max_tokens, room)
    if room < 1 or len(ids) + max_tokens > engine.max_context:
        raise HTTPError(
            400,
            f"messages make a prompt of {len(ids)} tokens; with max_tokens={max_tokens} that "
            f"exceeds the context of {engine.max_context}",
            param="messages",
        )
    logprobs = (r.top_logprobs or 0) if r.logprobs else None
    return make_job("chatcmpl", r, [text], [ids], max_tokens, logprobs)


def require_completion_model(engine) -> None:
    if engine.kind != "completions":
        raise HTTPError(
            400, f"{engine.name!r} is an embedding model: use /v1/embeddings", param="model"
        )


def check_limits(config, r, prompts: int, max_tokens: int) -> None:
    """The server's limits on choices and tokens, and stop strings that can match."""
    if prompts * r.n > config.max_items:
        raise HTTPError(
            400,
            f"n={r.n} with {prompts} prompt(s) asks for {prompts * r.n} choices; this "
            f"server's limit is {config.max_items} (--max-items)",
            param="n",
        )
    if max_tokens > config.max_tokens:
        raise HTTPError(
            400,
            f"max_tokens={max_tokens} exceeds this server's limit {config.max_tokens}",
            param="max_tokens",
        )
    for i, s in enumerate(stops_of(r)):
        if not s:
            raise HTTPError(400, f"stop[{i}] is an empty string: it would match at once", "stop")


def stops_of(r) -> list[str]:
    return [r.stop] if isinstance(r.stop, str) else list(r.stop or [])


def make_job(kind: str, r, prompts, ids, max_tokens: int, logprobs: int | None) -> Job:
    seed = r.seed if r.seed is not None else fresh_seed()
    items = [
        Completion(
            list(ids[k // r.n]),
            max_tokens,
            float(r.temperature),
            float(r.top_p),
            choice_seed(seed, k),
            stops_of(r),
            logprobs=logprobs,
            prompt=prompts[k // r.n],
        )
        for k in range(len(prompts) * r.n)
    ]
    usage = bool(r.stream_options and r.stream_options.include_usage)
    job_id = f"{kind}-{uuid.uuid4().hex[:24]}"
    return Job(job_id, int(time.time()), [list(x) for x in ids], r.n, seed, items, usage)
