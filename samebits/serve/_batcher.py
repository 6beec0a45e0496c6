"""Dynamic batching: requests' items wait at most ``max_wait_ms`` to share a batch
of at most ``max_batch_size``; one worker thread runs batches under
``batch_invariant()``, so an item's result does not depend on its batch."""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from samebits._mode import batch_invariant

log = logging.getLogger("samebits.serve")


@dataclass
class _Work:
    item: Any
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    enqueued: float


class Batcher:
    def __init__(
        self, engine, max_batch_size: int, max_wait_ms: float, max_idle_ms: float = 1.0
    ) -> None:
        self.engine, self.max_batch, self.max_wait = (
            engine,
            max(1, max_batch_size),
            max_wait_ms / 1000.0,
        )
        # A batch also closes once it holds as many items as the one before it and no
        # item has come for max_idle_ms: when arrivals have stopped, waiting out
        # max_wait_ms only leaves the cores idle. Short of the previous size it waits
        # on (up to max_wait_ms): clients that fell into two groups (one answered
        # while the other ran) then merge again instead of paying two forward
        # passes per round.
        self.max_idle = max_idle_ms / 1000.0
        self.last_size = 1
        self.q: queue.Queue[_Work | None] = queue.Queue()
        self.thread = threading.Thread(target=self._loop, name="samebits-batcher", daemon=True)
        self.batches = 0

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Finish everything queued, then end the worker."""
        self.q.put(None)
        self.thread.join()

    async def submit(self, item: Any) -> Any:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.q.put(_Work(item, fut, loop, time.perf_counter()))
        return await fut

    def _loop(self) -> None:
        with batch_invariant():  # per thread: this worker runs every model call
            stopping = False
            while not stopping:
                first = self.q.get()
                if first is None:
                    break
                batch, deadline = [first], time.perf_counter() + self.max_wait
                while len(batch) < self.max_batch:
                    left = deadline - time.perf_counter()
                    if len(batch) >= self.last_size:
                        left = min(left, self.max_idle)
                    try:
                        w = self.q.get(timeout=left) if left > 0 else self.q.get_nowait()
                    except queue.Empty:
                        break
                    if w is None:
                        stopping = True
                        break
                    batch.append(w)
                self.last_size = len(batch)
                self._run(batch)

    def _run(self, batch: list[_Work]) -> None:
        start = time.perf_counter()
        wait_ms = (start - min(w.enqueued for w in batch)) * 1000
        try:
            results = self.engine.run([w.item for w in batch])
            error = None
        except Exception as e:  # noqa: BLE001 - delivered to every waiting request
            results, error = None, e
        self.batches += 1
        log.info(
            json.dumps(
                {
                    "event": "batch",
                    "kind": self.engine.kind,
                    "size": len(batch),
                    "wait_ms": round(wait_ms, 2),
                    "run_ms": round((time.perf_counter() - start) * 1000, 2),
                }
            )
        )
        for i, w in enumerate(batch):
            if error is not None:
                w.loop.call_soon_threadsafe(_set_exc, w.future, error)
            else:
                w.loop.call_soon_threadsafe(_set, w.future, results[i])


def _set(fut: asyncio.Future, value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exc(fut: asyncio.Future, exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
