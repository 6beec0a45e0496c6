"""``POST /v1/completions``: OpenAI's legacy text completions, with ``n``, seeds and
``logprobs`` (the legacy shape: see _logprobs)."""

from __future__ import annotations

import asyncio

from samebits.serve._completion import Completion, Emitted
from samebits.serve._http import fast_json, parse, submit
from samebits.serve._jobs import Job, completion_job
from samebits.serve._logprobs import legacy_logprobs
from samebits.serve._schemas import CompletionRequest
from samebits.serve._streaming import stream_job


async def completions(req):
    state = req.app.state
    r = await parse(req, CompletionRequest)
    job = await asyncio.to_thread(completion_job, state, r)  # tokenizes: off the loop
    if r.stream:
        return stream_job(req, job, CompletionChunks(state, job))
    done = await submit(req, job.items)
    return fast_json(completion_body(state, job, done))


def completion_body(state, job: Job, done: list[Completion]) -> dict:
    engine = state.engine
    choices = [
        {
            "text": c.text,
            "index": i,
            "logprobs": legacy_logprobs(engine, c.token_logprobs)[0]
            if c.logprobs is not None
            else None,
            "finish_reason": c.finish_reason,
        }
        for i, c in enumerate(done)
    ]
    return {
        "id": job.id,
        "object": "text_completion",
        "created": job.created,
        "model": engine.name,
        "choices": choices,
        "usage": job.usage(done),
        "samebits": job.samebits(done, state.fingerprint_id),
    }


class CompletionChunks:
    """text_completion chunks: ``{"choices": [{"text", "index", "logprobs",
    "finish_reason"}]}``; the final chunk of a choice carries its ``samebits``."""

    def __init__(self, state, job: Job) -> None:
        self.state, self.job = state, job
        n = len(job.items)
        self.sent = [0] * n  # characters of each choice's text streamed
        self.sent_tokens = [0] * n  # tokens of each choice whose logprobs were streamed
        self.offset = [0] * n  # text_offset of each choice's next token
        self.base = {
            "id": job.id,
            "object": "text_completion",
            "created": job.created,
            "model": state.engine.name,
        }

    def opening(self, i: int) -> None:
        return None

    def _logprobs(self, i: int, entries) -> dict | None:
        if self.job.items[i].logprobs is None:
            return None
        body, self.offset[i] = legacy_logprobs(self.state.engine, entries, self.offset[i])
        self.sent_tokens[i] += len(entries)
        return body

    def delta(self, i: int, ev: Emitted) -> dict | None:
        if not ev.text and not ev.logprobs:
            return None
        self.sent[i] += len(ev.text)
        choice = {"text": ev.text, "index": i, "logprobs": self._logprobs(i, ev.logprobs)}
        return {**self.base, "choices": [{**choice, "finish_reason": None}]}

    def final(self, i: int, c: Completion) -> dict:
        choice = {
            "text": c.text[self.sent[i] :],  # the tail held back (see held_back)
            "index": i,
            "logprobs": self._logprobs(i, c.token_logprobs[self.sent_tokens[i] :]),
            "finish_reason": c.finish_reason,
        }
        info = self.job.choice_samebits([i], [c], self.state.fingerprint_id)
        return {**self.base, "choices": [choice], "samebits": info}

    def usage(self, done: list[Completion]) -> dict:
        return {**self.base, "choices": [], "usage": self.job.usage(done)}
