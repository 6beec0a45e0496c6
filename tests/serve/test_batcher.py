"""The batcher's closing rules, with an engine that records its batches."""

import asyncio
import threading

import pytest

from samebits.serve._batcher import Batcher


class Recorder:
    kind = "embeddings"

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.lock = threading.Lock()

    def run(self, items):
        with self.lock:
            self.batches.append(list(items))
        return [i * 10 for i in items]


async def send(batcher: Batcher, plan: list[tuple[int, float]]) -> list[int]:
    """Submit item i after sleeping s seconds, for each (i, s); all results."""
    tasks = []
    for i, pause in plan:
        await asyncio.sleep(pause)
        tasks.append(asyncio.ensure_future(batcher.submit(i)))
    return list(await asyncio.gather(*tasks))


def run_plan(plan, **kw) -> list[list[int]]:
    engine = Recorder()
    b = Batcher(engine, **kw)
    b.start()
    try:
        results = asyncio.run(send(b, plan))
    finally:
        b.stop()
    assert results == [i * 10 for i, _ in plan]  # each item got its own result
    return engine.batches


def test_a_pause_longer_than_max_idle_closes_the_batch():
    plan = [(1, 0), (2, 0.01), (3, 0.6)]
    batches = run_plan(plan, max_batch_size=32, max_wait_ms=2000, max_idle_ms=200)
    assert batches == [[1, 2], [3]]


def test_a_batch_short_of_the_previous_size_waits_past_max_idle():
    """Two groups of clients out of step merge again: a batch with fewer items than
    the batch before it ignores max_idle and waits (up to max_wait) for more."""
    plan = [(1, 0), (2, 0), (3, 0), (4, 0.6), (5, 0.3)]
    batches = run_plan(plan, max_batch_size=32, max_wait_ms=1500, max_idle_ms=200)
    assert batches == [[1, 2, 3], [4, 5]]  # 5 came 300 ms after 4: past max_idle


def test_without_an_idle_rule_the_batch_waits_up_to_max_wait():
    plan = [(1, 0), (2, 0.01), (3, 0.6)]
    batches = run_plan(plan, max_batch_size=32, max_wait_ms=2000, max_idle_ms=2000)
    assert batches == [[1, 2, 3]]


def test_max_wait_and_max_batch_size_bound_a_batch():
    plan = [(i, 0.15) for i in range(6)]  # steady arrivals, each within max_idle
    batches = run_plan(plan, max_batch_size=32, max_wait_ms=400, max_idle_ms=1000)
    assert [x for b in batches for x in b] == list(range(6))
    assert len(batches) >= 2  # 6 arrivals span 0.75 s > max_wait
    batches = run_plan(
        [(i, 0) for i in range(7)], max_batch_size=3, max_wait_ms=500, max_idle_ms=500
    )
    assert [len(b) for b in batches] == [3, 3, 1]


@pytest.mark.parametrize("flag", ["--max-idle-ms", "--max-wait-ms"])
def test_negative_times_are_refused(flag, capsys):
    from samebits.cli import main

    assert main(["serve", flag, "-1"]) == 2
    assert "--max-idle-ms" in capsys.readouterr().err
