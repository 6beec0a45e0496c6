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


class Picky(Recorder):
    """Raises for any batch holding a negative item."""

    def run(self, items):
        super().run(items)
        if any(i < 0 for i in items):
            raise ValueError("secret detail of a negative item")
        return [i * 10 for i in items]


def test_a_bad_item_fails_only_itself(caplog):
    from samebits.serve._batcher import ItemFailed

    engine = Picky()
    b = Batcher(engine, max_batch_size=8, max_wait_ms=300, max_idle_ms=300)
    b.start()

    async def go():
        return await asyncio.gather(*(b.submit(i) for i in [1, -2, 3]), return_exceptions=True)

    try:
        with caplog.at_level("ERROR", logger="samebits.serve"):
            results = asyncio.run(go())
    finally:
        b.stop()
    assert results[0] == 10 and results[2] == 30
    assert isinstance(results[1], ItemFailed) and "secret" not in str(results[1])
    assert engine.batches[0] == [1, -2, 3]  # they did share a batch, then ran alone
    assert sorted(map(tuple, engine.batches[1:])) == [(-2,), (1,), (3,)]
    assert "secret detail" in caplog.text and results[1].error_id in caplog.text


def test_a_full_queue_refuses_at_once_and_cancelled_items_never_run():
    from samebits.serve._batcher import QueueFull

    engine = Recorder()
    b = Batcher(engine, max_batch_size=1, max_wait_ms=0, max_queue=2)

    async def go():
        # the worker is not started: nothing leaves the queue
        b.healthy = True
        first = asyncio.ensure_future(b.submit_all([1, 2]))
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await b.submit(3)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first

    asyncio.run(go())
    b.start()
    b.stop()
    assert engine.batches == [] and b.dropped == 2


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--max-queue", "0"], "--max-queue must be >= 1"),
        (["--max-body-bytes", "0"], "--max-body-bytes must be >= 1"),
        (["--max-items", "10", "--max-queue", "5"], "could never be queued"),
        (["--drain-timeout-s", "-1"], "--drain-timeout-s"),
        (["--api-key-file", "/no/such/key"], "cannot read --api-key-file"),
    ],
)
def test_bad_limits_are_refused(args, msg, capsys):
    from samebits.cli import main

    assert main(["serve", *args]) == 2
    assert msg in capsys.readouterr().err
