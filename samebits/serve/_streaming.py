"""Server-sent events for a completion job: every choice's tokens as they are made.

The worker thread hands each choice's events (``Emitted``) to the event loop; the
stream turns them into chunks with the endpoint's ``Chunks`` (completions and chat
differ only in shape), ends each choice with its final chunk, and ends the stream
with an optional usage chunk and ``data: [DONE]``. A refusal (queue full, worker
down) is a 503 before any byte; a client that goes away cancels the job's work.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from samebits.serve._batcher import ItemFailed, QueueFull, WorkerDown
from samebits.serve._completion import Completion, Emitted
from samebits.serve._http import busy_error, wait_disconnect
from samebits.serve._jobs import Job


class Chunks(Protocol):
    """An endpoint's chunk shapes (None: nothing to send for this event)."""

    def opening(self, i: int) -> dict | None: ...

    def delta(self, i: int, ev: Emitted) -> dict | None: ...

    def final(self, i: int, c: Completion) -> dict: ...

    def usage(self, done: list[Completion]) -> dict: ...


def sse(payload: dict) -> bytes:
    import orjson

    return b"data: " + orjson.dumps(payload) + b"\n\n"


DONE = b"data: [DONE]\n\n"


class ToQueue:
    """A choice's token callback: runs on the worker thread, queues on the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, q: asyncio.Queue, index: int) -> None:
        self.loop, self.q, self.index = loop, q, index

    def __call__(self, ev: Emitted) -> None:
        self.loop.call_soon_threadsafe(self.q.put_nowait, ("delta", self.index, ev))


def stream_job(req, job: Job, chunks: Chunks):
    """The StreamingResponse for ``job``; queued here, so a refusal is a 503."""
    from starlette.responses import StreamingResponse

    q: asyncio.Queue = asyncio.Queue()
    loop = asyncio.get_running_loop()
    for i, c in enumerate(job.items):
        c.on_token = ToQueue(loop, q, i)
    try:
        works = req.app.state.batcher.enqueue(job.items)
    except (QueueFull, WorkerDown) as e:
        raise busy_error(e) from e
    return StreamingResponse(events(req, job, chunks, works, q), media_type="text/event-stream")


async def forward_result(i: int, work, q: asyncio.Queue) -> None:
    """Queue choice i's end (after its deltas: the worker sent those first)."""
    try:
        q.put_nowait(("done", i, await work.future))
    except (WorkerDown, ItemFailed) as e:
        q.put_nowait(("error", i, e))  # ends this choice's stream with an error chunk


async def watch(req, q: asyncio.Queue) -> None:
    await wait_disconnect(req)
    q.put_nowait(("gone", -1, None))


async def events(req, job: Job, chunks: Chunks, works, q: asyncio.Queue):
    tasks = [asyncio.ensure_future(forward_result(i, w, q)) for i, w in enumerate(works)]
    watcher = asyncio.ensure_future(watch(req, q))
    done: list[Completion | None] = [None] * len(works)
    try:
        for i in range(len(works)):
            opening = chunks.opening(i)
            if opening is not None:
                yield sse(opening)
        remaining = len(works)
        while remaining:
            kind, i, value = await q.get()
            if kind == "gone":
                return  # the client went away: finally cancels its work
            if kind == "delta":
                payload = chunks.delta(i, value)
                if payload is not None:
                    yield sse(payload)
                continue
            remaining -= 1
            if kind == "error":
                yield sse(busy_error(value).body())
                continue
            done[i] = value
            yield sse(chunks.final(i, value))
        if job.include_usage:
            yield sse(chunks.usage([c for c in done if c is not None]))
        yield DONE
    finally:
        watcher.cancel()
        req.app.state.batcher.cancel(works)  # no-op for the finished ones
        for t in tasks:
            t.cancel()
