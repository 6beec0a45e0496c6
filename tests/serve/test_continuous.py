"""Continuous batching in process (samebits/serve/_continuous.py): rows join and leave
the running batch at every step, finished rows stop being computed, a short request
is not held back by a long one, and every answer has the bits of the request alone
(tokens, text and logprobs), in float32 and bfloat16."""

import asyncio
import random
import threading

from samebits.serve._completion import Completion
from samebits.serve._continuous import ContinuousBatcher
from samebits.serve._prefix import PrefixCache
from tests.serve.conftest import alone, run_continuous, same_choice

PROMPTS = [
    "Hello",
    "a",
    "The quick brown fox jumps over the lazy dog",
    "Once upon a time, in a land far away, there lived",
    "zq",
    "samebits serves the same bits",
]


def mixed_plan(engine, n_requests: int, seed: int):
    """Requests with mixed prompt lengths, max_tokens, temperatures, top_p, seeds,
    logprobs and choices per request, arriving at staggered times."""
    rng = random.Random(seed)
    plan = []
    for _ in range(n_requests):
        prompt = rng.choice(PROMPTS)
        items = [
            Completion(
                engine.encode(prompt),
                max_tokens=rng.randint(1, 24),
                temperature=rng.choice([0.0, 0.7, 1.3]),
                top_p=rng.choice([1.0, 0.8]),
                seed=rng.randint(0, 2**40),
                logprobs=rng.choice([None, 0, 3]),
                prompt=prompt,
            )
            for _ in range(rng.choice([1, 1, 2, 4]))
        ]
        plan.append((rng.choice([0.0, 0.0, 0.005, 0.02]), items))
    return plan


def test_every_answer_equals_the_request_alone(llm):
    plan = mixed_plan(llm, 24, seed=1)
    refs = [[alone(llm, c) for c in items] for _, items in plan]
    results, b = run_continuous(llm, plan, max_batch=6)
    mismatched = sum(
        not same_choice(got, ref)
        for got_items, ref_items in zip(results, refs, strict=True)
        for got, ref in zip(got_items, ref_items, strict=True)
    )
    assert mismatched == 0
    assert b.max_batch_seen > 1 and b.batches > 1  # rows did share steps, and joined later
    assert sum(len(c.token_logprobs) for r in results for c in r) > 50  # logprobs were compared


class RowCounter:
    """A forward pre-hook recording each decode step's rows (prefills: 'prefill')."""

    def __init__(self, model) -> None:
        self.steps: list = []
        self.handle = model.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, _module, _args, kwargs):
        ids = kwargs["input_ids"]
        self.steps.append(ids.size(0) if ids.size(1) == 1 else "prefill")


def test_finished_rows_leave_the_batch_at_once(llm):
    """One request of two choices, max_tokens 3 and 12, greedy: the decode steps hold
    both rows until the short one ends, then the long one alone; static batching
    would have fed the finished row padding for 9 more steps."""
    ids = llm.encode("Hello")
    short, long = (Completion(list(ids), m) for m in (3, 12))
    counter = RowCounter(llm.model)
    try:
        (got,), _ = run_continuous(llm, [(0.0, [short, long])])
    finally:
        counter.handle.remove()
    assert [c.finish_reason for c in got] == ["length", "length"]
    assert counter.steps == ["prefill"] + [2] * 2 + [1] * 9
    counter = RowCounter(llm.model)
    try:
        static = llm.run([Completion(list(ids), 3), Completion(list(ids), 12)])
    finally:
        counter.handle.remove()
    assert [c.tokens for c in static] == [c.tokens for c in got]
    assert counter.steps == ["prefill"] + [2] * 11  # the static batch kept both rows


def test_a_short_request_is_not_held_back_by_a_long_one(llm):
    """A short request that arrives while a long one decodes finishes while the long
    one is still running (static batching would make it wait for the whole batch)."""
    long = Completion(llm.encode("Once upon a time"), max_tokens=200)
    short = Completion(llm.encode("Hello"), max_tokens=3)
    started = threading.Event()
    long.on_token = lambda _ev: started.set()

    async def go():
        b = ContinuousBatcher(llm, 8, 1.0, 1.0)
        b.start()
        try:
            lf = asyncio.ensure_future(b.submit(long))
            await asyncio.to_thread(started.wait, 60)
            s = await b.submit(short)
            long_done_then = lf.done()
            return s, long_done_then, await lf
        finally:
            await asyncio.to_thread(b.stop)

    s, long_done_then, l_ = asyncio.run(go())
    assert not long_done_then
    assert l_.finish_reason == "length" and len(l_.tokens) == 200
    assert same_choice(s, alone(llm, Completion(llm.encode("Hello"), max_tokens=3)))


def test_prefix_cache_on_or_off_gives_the_same_answers(llm):
    """The same load with a prefix cache (blocks of 4 tokens) and without: every answer
    equal, and the cache was used."""
    plan = mixed_plan(llm, 16, seed=2)
    fresh = [(d, [_copy(c) for c in items]) for d, items in plan]
    prefix = PrefixCache(1 << 22, 4)
    with_cache, _ = run_continuous(llm, plan, prefix=prefix)
    without, _ = run_continuous(llm, fresh)
    assert all(
        same_choice(a, b)
        for ra, rb in zip(with_cache, without, strict=True)
        for a, b in zip(ra, rb, strict=True)
    )
    assert prefix.hit_tokens > 0


def _copy(c: Completion) -> Completion:
    return Completion(
        list(c.prompt_ids),
        c.max_tokens,
        c.temperature,
        c.top_p,
        c.seed,
        list(c.stop),
        logprobs=c.logprobs,
        prompt=c.prompt,
    )


def test_a_failing_step_runs_each_row_alone(llm, monkeypatch):
    """A decode step that raises: each running row is run again alone, from its
    prompt, and gets the answer it would have had."""
    import samebits.serve._continuous as cont

    calls = {"n": 0}
    real = cont.decode_step

    def flaky(engine, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("injected step failure")
        return real(engine, batch)

    monkeypatch.setattr(cont, "decode_step", flaky)
    items = [Completion(llm.encode(p), 8, 1.0, seed=i, logprobs=1) for i, p in enumerate(PROMPTS)]
    refs = [alone(llm, c) for c in items]
    (got,), _ = run_continuous(llm, [(0.0, items)])
    assert calls["n"] >= 3
    assert all(same_choice(g, r) for g, r in zip(got, refs, strict=True))
