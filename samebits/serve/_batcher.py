"""Dynamic batching: requests' items wait at most ``max_wait_ms`` to share a batch
of at most ``max_batch_size``; one worker thread runs batches under
``batch_invariant()``, so an item's result does not depend on its batch.

Under load and faults:
- at most ``max_queue`` items wait; a request that would pass it is refused at once
  (QueueFull, HTTP 503), never parked;
- an item whose request went away (cancelled future) is dropped before it runs, and a
  completion already running stops at its next token;
- a batch that raises is run again item by item: batch invariance gives every item
  the bits it would have had in the batch, and only the items that fail alone fail;
- a supervisor restarts the worker if it dies; until then ``healthy`` is False and
  submissions get WorkerDown (HTTP 503).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from samebits._mode import batch_invariant

log = logging.getLogger("samebits.serve")


def log_error(event: str, e: BaseException) -> str:
    """Log ``e``'s traceback as one JSON line under a fresh error id, and return the id
    (what a client is told instead of the exception)."""
    error_id = os.urandom(6).hex()
    log.error(
        json.dumps(
            {"event": event, "error_id": error_id, "error": "".join(traceback.format_exception(e))}
        )
    )
    return error_id


FAULTS_ENV = "SAMEBITS_SERVE_TEST_FAULTS"


class QueueFull(Exception):
    """The queue holds max_queue items: come back later."""


class WorkerDown(Exception):
    """The worker died (and is being restarted), or is stopping."""


class ItemFailed(Exception):
    """The item raised when run alone; the traceback is in the server log under ``error_id``."""

    def __init__(self, error_id: str) -> None:
        super().__init__(error_id)
        self.error_id = error_id


class _InjectedDeath(BaseException):
    """Raised by the fault hook outside every ``except Exception``: the worker dies."""


@dataclass(frozen=True)
class Faults:
    """Faults for tests, from ``SAMEBITS_SERVE_TEST_FAULTS``, e.g.
    ``kill-worker-at-batch=3,fail-item=BOOM,restart-s=1,slow-item=SLOW``: the worker
    thread dies when it takes its 3rd batch (once), any item whose text contains
    ``BOOM`` raises in the engine, the supervisor waits 1 s before restarting the
    worker, and completions whose prompt contains ``SLOW`` sleep 50 ms per token."""

    kill_worker_at_batch: int = 0
    fail_item: str = ""
    restart_s: float = 0.5
    slow_item: str = ""  # completions whose prompt holds this take 50 ms per streamed token

    @classmethod
    def from_env(cls) -> Faults:
        spec = os.environ.get(FAULTS_ENV, "").strip()
        if not spec:
            return cls()
        kw: dict[str, Any] = {}
        for part in spec.split(","):
            key, _, value = part.partition("=")
            name = key.strip().replace("-", "_")
            if name not in cls.__dataclass_fields__:
                raise ValueError(f"{FAULTS_ENV}: unknown fault {key!r}")
            kw[name] = type(getattr(cls(), name))(value)
        return cls(**kw)


@dataclass
class _Work:
    item: Any
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    enqueued: float
    cancelled: bool = field(default=False)


def _text_of(item: Any) -> str:
    return str(getattr(item, "text", "") or getattr(item, "prompt", "") or "")


class Batcher:
    def __init__(
        self,
        engine,
        max_batch_size: int,
        max_wait_ms: float,
        max_idle_ms: float = 1.0,
        max_queue: int = 4096,
        faults: Faults | None = None,
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
        self.max_queue = max(1, max_queue)
        self.faults = faults or Faults()
        self.last_size = 1
        self.q: queue.Queue[_Work | None] = queue.Queue()
        self.lock = threading.Lock()
        self.waiting = 0  # items queued and not yet taken by the worker
        self.healthy = False
        self.stopping = False
        self.batches = 0
        self.max_batch_seen = 0
        self.deaths = 0
        self.dropped = 0  # items whose client went away before they ran
        self._taken = 0  # batches taken (the fault hook counts these)
        self._ended = False  # the worker saw the stop sentinel and returned
        self.supervisor = threading.Thread(
            target=self._supervise, name="samebits-supervisor", daemon=True
        )

    # -- event-loop side -------------------------------------------------------------

    def start(self) -> None:
        self.healthy = True
        self.supervisor.start()

    def request_stop(self) -> None:
        """Let the worker finish what is queued, then end; returns at once."""
        self.stopping = True
        self.q.put(None)

    def stop(self, timeout: float | None = None) -> None:
        """Finish everything queued, then end the worker (blocks: not on the event loop)."""
        self.request_stop()
        self.supervisor.join(timeout)

    async def submit(self, item: Any) -> Any:
        return (await self.submit_all([item]))[0]

    async def submit_all(self, items: list[Any]) -> list[Any]:
        """Queue a request's items together and await their results (see enqueue).
        Cancelling the caller cancels every item that has not finished."""
        works = self.enqueue(items)
        try:
            return list(await asyncio.gather(*(w.future for w in works)))
        except BaseException:
            self.cancel(works)
            raise

    def enqueue(self, items: list[Any]) -> list[_Work]:
        """Queue all of the items, or none: QueueFull when they would pass max_queue,
        WorkerDown while the worker is down or stopping. Call on the event loop."""
        loop = asyncio.get_running_loop()
        if not self.healthy or self.stopping:
            raise WorkerDown()
        with self.lock:
            if self.waiting + len(items) > self.max_queue:
                raise QueueFull()
            self.waiting += len(items)
        now = time.perf_counter()
        works = [_Work(it, loop.create_future(), loop, now) for it in items]
        for w in works:
            self.q.put(w)
        return works

    @staticmethod
    def cancel(works: list[_Work]) -> None:
        """The client went away: the worker skips these items, and a completion
        already running stops at its next token."""
        for w in works:
            w.cancelled = True
            if hasattr(w.item, "cancelled"):
                w.item.cancelled = True
            w.future.cancel()

    # -- worker side -------------------------------------------------------------------

    def _take(self, timeout: float | None) -> _Work | None:
        w = self.q.get(timeout=timeout) if timeout is None or timeout > 0 else self.q.get_nowait()
        if w is not None:
            with self.lock:
                self.waiting -= 1
        return w

    def _supervise(self) -> None:
        while True:
            worker = threading.Thread(target=self._loop, name="samebits-batcher", daemon=True)
            worker.start()
            worker.join()
            if self._ended:
                return
            self.healthy = False
            self.deaths += 1
            log.error(json.dumps({"event": "worker_died", "deaths": self.deaths}))
            time.sleep(self.faults.restart_s)
            self.healthy = True
            log.info(json.dumps({"event": "worker_restarted", "deaths": self.deaths}))

    def _loop(self) -> None:
        batch: list[_Work] = []
        try:
            with batch_invariant():  # per thread: this worker runs every model call
                while True:
                    batch = self._collect()
                    if batch is None:
                        self._ended = True
                        return
                    self._taken += 1
                    if self._taken == self.faults.kill_worker_at_batch:
                        raise _InjectedDeath(f"injected worker death at batch {self._taken}")
                    self._run(batch)
                    batch = []
        except BaseException as e:  # noqa: BLE001 - the supervisor restarts the worker
            log.error(
                json.dumps(
                    {"event": "worker_error", "error": "".join(traceback.format_exception(e))}
                )
            )
            for w in batch or []:
                _deliver(w, _set_exc, WorkerDown())

    def _collect(self) -> list[_Work] | None:
        """The next batch (None when told to stop and the queue is drained)."""
        while True:
            first = self._take(None)
            if first is None:
                return None
            if not first.cancelled:
                break
            self._dropped(first)
        batch, deadline = [first], time.perf_counter() + self.max_wait
        while len(batch) < self.max_batch:
            left = deadline - time.perf_counter()
            if len(batch) >= self.last_size:
                left = min(left, self.max_idle)
            try:
                w = self._take(left)
            except queue.Empty:
                break
            if w is None:
                self.q.put(None)  # stop after this batch
                break
            if not w.cancelled:
                batch.append(w)
            else:
                self._dropped(w)
        self.last_size = len(batch)
        return batch

    def _dropped(self, w: _Work) -> None:
        self.dropped += 1
        log.info(json.dumps({"event": "dropped", "reason": "client gone", "total": self.dropped}))

    def _prepare(self, items: list[Any]) -> None:
        """Before items run: the test faults (an item that raises, a slow item), and a
        retried completion back to its prompt."""
        marker = self.faults.fail_item
        if marker and any(marker in _text_of(it) for it in items):
            raise RuntimeError(f"injected item fault ({marker!r})")
        slow = self.faults.slow_item
        for it in items:
            slowed = isinstance(getattr(it, "on_token", None), _Slow)
            if slow and slow in _text_of(it) and hasattr(it, "on_token") and not slowed:
                it.on_token = _Slow(it.on_token)
            if hasattr(it, "reset"):
                it.reset()  # a retried completion starts from its prompt again

    def _engine_run(self, items: list[Any]) -> list[Any]:
        self._prepare(items)
        return self.engine.run(items)

    def _run(self, batch: list[_Work]) -> None:
        live = [w for w in batch if not w.cancelled]
        if not live:
            return
        start = time.perf_counter()
        wait_ms = (start - min(w.enqueued for w in live)) * 1000
        try:
            results = self._engine_run([w.item for w in live])
            outcomes = [(w, r, None) for w, r in zip(live, results, strict=True)]
        except Exception as e:  # noqa: BLE001 - isolate the bad item(s) below
            outcomes = self._alone(live, e)
        self.batches += 1
        self.max_batch_seen = max(self.max_batch_seen, len(live))
        log.info(
            json.dumps(
                {
                    "event": "batch",
                    "kind": self.engine.kind,
                    "size": len(live),
                    # completions stopped early because their client went away
                    "cancelled": sum(bool(getattr(w.item, "cancelled", False)) for w in live),
                    "wait_ms": round(wait_ms, 2),
                    "run_ms": round((time.perf_counter() - start) * 1000, 2),
                }
            )
        )
        for w, result, error in outcomes:
            if error is not None:
                _deliver(w, _set_exc, error)
            else:
                _deliver(w, _set, result)

    def _alone(self, live: list[_Work], first_error: Exception) -> list[tuple]:
        """Run each item of a failed batch by itself: batch invariance gives each the
        bits it had in the batch, so only the items that fail alone fail."""
        if len(live) == 1:
            return [(live[0], None, self._failed(first_error))]
        log.warning(
            json.dumps({"event": "batch_failed", "size": len(live), "retry": "item by item"})
        )
        out = []
        for w in live:
            if w.cancelled:
                continue
            try:
                out.append((w, self._engine_run([w.item])[0], None))
            except Exception as e:  # noqa: BLE001 - this item's own error
                out.append((w, None, self._failed(e)))
        return out

    def _failed(self, e: Exception) -> ItemFailed:
        return ItemFailed(log_error("item_failed", e))


class _Slow:
    """The slow-item fault: the item's token callback sleeps 50 ms per token."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def __call__(self, event) -> None:
        time.sleep(0.05)
        if self.inner is not None:
            self.inner(event)


def _deliver(w: _Work, fn, value: Any) -> None:
    try:
        w.loop.call_soon_threadsafe(fn, w.future, value)
    except RuntimeError:  # the event loop is closed: nobody waits for this item any more
        pass


def _set(fut: asyncio.Future, value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _set_exc(fut: asyncio.Future, exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
