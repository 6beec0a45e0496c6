"""``POST /v1/chat/completions``: ``messages`` through the tokenizer's chat template,
with ``n``, seeds, ``stop``, ``logprobs`` / ``top_logprobs`` and streaming, in
OpenAI's ``chat.completion`` and ``chat.completion.chunk`` shapes."""

from __future__ import annotations

import asyncio

from samebits.serve._completion import Completion, Emitted
from samebits.serve._http import fast_json, parse, submit
from samebits.serve._jobs import Job, chat_job
from samebits.serve._logprobs import chat_logprobs
from samebits.serve._schemas import ChatRequest
from samebits.serve._streaming import stream_job


async def chat_completions(req):
    state = req.app.state
    r = await parse(req, ChatRequest)
    job = await asyncio.to_thread(chat_job, state, r)  # the template and tokenizer: off the loop
    if r.stream:
        return stream_job(req, job, ChatChunks(state, job))
    done = await submit(req, job.items)
    return fast_json(chat_body(state, job, done))


def chat_body(state, job: Job, done: list[Completion]) -> dict:
    engine = state.engine
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": c.text},
            "logprobs": chat_logprobs(engine, c.token_logprobs) if c.logprobs is not None else None,
            "finish_reason": c.finish_reason,
        }
        for i, c in enumerate(done)
    ]
    return {
        "id": job.id,
        "object": "chat.completion",
        "created": job.created,
        "model": engine.name,
        "system_fingerprint": f"samebits-{state.fingerprint_id}",
        "choices": choices,
        "usage": job.usage(done),
        "samebits": job.samebits(done, state.fingerprint_id),
    }


class ChatChunks:
    """chat.completion.chunk: a choice opens with ``delta: {"role": "assistant",
    "content": ""}``, goes on with ``delta: {"content": ...}`` (and the logprobs of
    the tokens made since the last chunk), and ends with its ``finish_reason`` and
    ``samebits``."""

    def __init__(self, state, job: Job) -> None:
        self.state, self.job = state, job
        n = len(job.items)
        self.sent = [0] * n
        self.sent_tokens = [0] * n
        self.base = {
            "id": job.id,
            "object": "chat.completion.chunk",
            "created": job.created,
            "model": state.engine.name,
            "system_fingerprint": f"samebits-{state.fingerprint_id}",
        }

    def _choice(self, i: int, delta: dict, entries, finish: str | None) -> dict:
        logprobs = None
        if self.job.items[i].logprobs is not None and entries is not None:
            logprobs = chat_logprobs(self.state.engine, entries)
            self.sent_tokens[i] += len(entries)
        return {"index": i, "delta": delta, "logprobs": logprobs, "finish_reason": finish}

    def opening(self, i: int) -> dict:
        choice = self._choice(i, {"role": "assistant", "content": ""}, None, None)
        return {**self.base, "choices": [choice]}

    def delta(self, i: int, ev: Emitted) -> dict | None:
        if not ev.text and not ev.logprobs:
            return None
        self.sent[i] += len(ev.text)
        return {**self.base, "choices": [self._choice(i, {"content": ev.text}, ev.logprobs, None)]}

    def final(self, i: int, c: Completion) -> dict:
        tail = c.text[self.sent[i] :]
        entries = c.token_logprobs[self.sent_tokens[i] :]
        choice = self._choice(i, {"content": tail} if tail else {}, entries, c.finish_reason)
        info = self.job.choice_samebits([i], [c], self.state.fingerprint_id)
        return {**self.base, "choices": [choice], "samebits": info}

    def usage(self, done: list[Completion]) -> dict:
        return {**self.base, "choices": [], "usage": self.job.usage(done)}
