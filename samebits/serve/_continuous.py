"""Continuous batching for completions: requests join and leave the running decode
batch at every step.

The worker loops: take what is queued (up to ``max_batch_size`` running rows; when
nothing runs, wait for a batch as the static batcher does), prefill it and sample
each new row's first token, then run one decode step for every running row, and
hand back the rows that finished. A finished row leaves the batch at once, so it is
no longer computed, no batch decodes to its longest ``max_tokens``, and a short
request never waits for a long one. Every row's bits are those of the request sent
alone: each forward runs under the mode, over a cache laid out as in _decode_batch.

Faults keep the static batcher's rules: a prefill or a step that raises runs each of
its rows again alone (from its prompt; only the rows that fail alone fail), a worker
that dies fails its rows with WorkerDown and is restarted, and a row whose client
went away is dropped at the next step.
"""

from __future__ import annotations

import json
import queue
import time
import traceback
from typing import Any

from samebits._mode import batch_invariant
from samebits.serve._batcher import (
    Batcher,
    WorkerDown,
    _deliver,
    _InjectedDeath,
    _set,
    _set_exc,
    _Work,
    log,
)
from samebits.serve._decode_batch import DecodeBatch, decode_step, keep, merge, prefill


class ContinuousBatcher(Batcher):
    """A Batcher whose completions join and leave one running decode batch per step.
    ``prefix`` is the PrefixCache prompts start from (None: none)."""

    def __init__(self, engine, *args: Any, prefix=None, **kwargs: Any) -> None:
        super().__init__(engine, *args, **kwargs)
        self.prefix = prefix
        self.running: DecodeBatch | None = None
        self.works: list[_Work] = []  # the running rows' work, in row order
        self.steps = 0  # decode steps run

    def _loop(self) -> None:
        group: list[_Work] | None = []
        stop_seen = False
        try:
            with batch_invariant():  # per thread: this worker runs every model call
                while True:
                    group, stop_seen = self._next_group(stop_seen)
                    if group is None:
                        self._ended = True
                        return
                    if group:
                        self._taken += 1
                        if self._taken == self.faults.kill_worker_at_batch:
                            raise _InjectedDeath(f"injected worker death at batch {self._taken}")
                        self._admit(group)
                    group = []
                    if self.running is not None:
                        self._step()
        except BaseException as e:  # noqa: BLE001 - the supervisor restarts the worker
            trace = "".join(traceback.format_exception(e))
            log.error(json.dumps({"event": "worker_error", "error": trace}))
            for w in (group or []) + self.works:
                _deliver(w, _set_exc, WorkerDown())
            self.running, self.works = None, []

    def _next_group(self, stop_seen: bool) -> tuple[list[_Work] | None, bool]:
        """The requests to admit now, and whether the stop sentinel was taken. With
        nothing running: wait for a batch (None: stop). While rows run: whatever is
        queued, at once, up to the room left."""
        if self.running is None:
            return (None, True) if stop_seen else (self._collect(), False)
        group: list[_Work] = []
        while not stop_seen and len(self.works) + len(group) < self.max_batch:
            try:
                w = self._take(0)
            except queue.Empty:
                break
            if w is None:
                stop_seen = True  # finish the running rows, then end
            elif w.cancelled:
                self._dropped(w)
            else:
                group.append(w)
        return group, stop_seen

    def _admit(self, group: list[_Work]) -> None:
        """Prefill the group's rows, sample their first tokens, and add them to the
        running batch."""
        live = [w for w in group if not w.cancelled]
        if not live:
            return
        start = time.perf_counter()
        before = self.prefix.hit_tokens if self.prefix is not None else 0
        try:
            self._prepare([w.item for w in live])
            batch, logits = prefill(self.engine, [w.item for w in live], self.prefix)
            self.engine.pick(batch.rows, logits)
        except Exception as e:  # noqa: BLE001 - run the rows alone, as _run does
            self._finish_alone(live, e)
            return
        self.running = merge(self.running, batch)
        self.works += live
        self.batches += 1
        self.max_batch_seen = max(self.max_batch_seen, len(self.works))
        reused = (self.prefix.hit_tokens if self.prefix is not None else 0) - before
        log.info(
            json.dumps(
                {
                    "event": "batch",
                    "kind": "completions",
                    "size": len(live),
                    "running": len(self.works),
                    "prefix_tokens": reused,
                    "wait_ms": round((start - min(w.enqueued for w in live)) * 1000, 2),
                    "run_ms": round((time.perf_counter() - start) * 1000, 2),
                }
            )
        )
        self._retire()

    def _step(self) -> None:
        """One decode step for every running row; then the finished rows leave."""
        self._retire()
        if self.running is None:
            return
        try:
            logits = decode_step(self.engine, self.running)
            self.engine.pick(self.running.rows, logits)
        except Exception as e:  # noqa: BLE001 - run the rows alone, as _run does
            works, self.running, self.works = self.works, None, []
            self._finish_alone(works, e)
            return
        self.steps += 1
        self._retire()

    def _retire(self) -> None:
        """Hand back the rows that finished (or whose client went away); the batch
        keeps the others, cut to the longest of them."""
        if self.running is None:
            return
        rows, done, stay = self.running.rows, [], []
        for i, c in enumerate(rows):
            if c.cancelled and c.finish_reason is None:
                c.finish_reason = "cancelled"  # its client went away: stop decoding it
            (done if c.finish_reason is not None else stay).append(i)
        if not done:
            return
        for i in done:
            _deliver(self.works[i], _set, rows[i])
        self.works = [self.works[i] for i in stay]
        self.running = keep(self.running, stay)
        log.info(
            json.dumps(
                {
                    "event": "retired",
                    "size": len(done),
                    "cancelled": sum(rows[i].finish_reason == "cancelled" for i in done),
                    "running": len(stay),
                }
            )
        )

    def _finish_alone(self, works: list[_Work], e: Exception) -> None:
        """Rows whose prefill or step raised: each run again alone (see Batcher._alone)."""
        for w, result, error in self._alone([w for w in works if not w.cancelled], e):
            if error is not None:
                _deliver(w, _set_exc, error)
            else:
                _deliver(w, _set, result)
