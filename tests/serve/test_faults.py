"""Load and faults on a real server process over loopback: overload (a small queue),
slow clients, disconnects mid-stream, a worker killed through the test hook, and an
item that always raises. No response is lost or crossed, and every 200 has the bits
of the same request sent alone. Then 64 concurrent chat requests (mixed lengths, n,
seeds, logprobs, streams) under continuous batching, a small queue and a worker
death: every one is answered, with the tokens, text and logprobs of the request alone."""

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.serve.conftest import Server, ThreadClients

PROMPTS = ["Hello", "The quick brown fox", "a", "Once upon a time", "samebits", "zq", "xyz"]


@pytest.fixture(scope="module")
def faulty(llama_dir):
    s = Server(
        "--model",
        str(llama_dir),
        "--max-batch-size",
        "8",
        "--max-wait-ms",
        "20",
        "--max-queue",
        "12",
        "--max-items",
        "2",
        env={"SAMEBITS_SERVE_TEST_FAULTS": "kill-worker-at-batch=6,fail-item=BOOM,restart-s=1"},
    )
    yield s
    s.stop()


BODIES = [
    {"prompt": p, "max_tokens": 3 + k % 6, **({"temperature": 1.0, "seed": k} if k % 2 else {})}
    for k, p in enumerate(PROMPTS * 2)
]


def request(i: int) -> tuple[str, dict]:
    """The i-th client's kind of call and its body (one of 14: few references to take)."""
    rng = random.Random(i)
    body = dict(rng.choice(BODIES))
    kind = rng.choices(["plain", "stream", "slow", "hangup", "boom"], [5, 2, 1, 1, 1])[0]
    if kind == "boom":
        body["prompt"] = ["BOOM " + body["prompt"]]
    return kind, body


REFUSED = []  # one entry per 503 answer, retried or kept


def call(c: httpx.Client, url: str, kind: str, body: dict) -> tuple[int, dict | None]:
    """(status, {"tokens", "text"} or None); a 503 is retried after Retry-After."""
    for _attempt in range(60):
        if kind in ("plain", "boom"):
            r = c.post(url, json=body)
            if r.status_code == 503:
                REFUSED.append(r.json()["error"]["code"])
                time.sleep(float(r.headers["Retry-After"]) / 4)
                continue
            if r.status_code != 200:
                return r.status_code, r.json()
            j = r.json()
            return 200, {"tokens": j["samebits"]["tokens"][0], "text": j["choices"][0]["text"]}
        with c.stream("POST", url, json={**body, "stream": True}) as r:
            if r.status_code == 503:
                r.read()
                REFUSED.append(json.loads(r.text)["error"]["code"])
                time.sleep(0.25)
                continue
            text, tokens = "", None
            for ln in r.iter_lines():
                if not ln.startswith("data: ") or ln == "data: [DONE]":
                    continue
                chunk = json.loads(ln[6:])
                if "error" in chunk:
                    return 503, chunk  # the worker died under this stream: counted
                if kind == "hangup":
                    return 0, None  # hang up after the first chunk
                if kind == "slow":
                    time.sleep(0.02)
                ch = chunk["choices"][0]
                text += ch["text"]
                if ch["finish_reason"]:
                    tokens = chunk["samebits"]["tokens"][0]
            return 200, {"tokens": tokens, "text": text}
    return 503, {"gave_up": True}  # 60 refusals in a row


def test_load_with_faults_loses_and_crosses_nothing(faulty):
    url = faulty.url + "/v1/completions"
    n = 80
    plan = [request(i) for i in range(n)]
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    client = httpx.Client(timeout=120, limits=limits)
    health: list[int] = []
    stop = threading.Event()

    def watch_health():
        while not stop.is_set():
            health.append(httpx.get(faulty.url + "/health", timeout=10).status_code)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch_health)
    watcher.start()
    t0 = time.monotonic()
    with ThreadClients(timeout=120) as clients, ThreadPoolExecutor(24) as pool:
        results = list(pool.map(lambda kb: call(clients.get(), url, *kb), plan))
    took = time.monotonic() - t0

    counts = {"200": 0, "500 boom": 0, "stream died": 0, "gave up": 0, "hangups": 0}
    counts["mismatches"] = 0
    refs: dict[str, dict] = {}
    c = client
    for (kind, body), (status, got) in zip(plan, results, strict=True):
        if kind == "boom":
            assert status == 500, (status, got)
            err = got["error"]
            assert err["code"] == "item_failed" and "error id" in err["message"]
            assert "BOOM" not in err["message"] and "Error" not in err["message"]
            counts["500 boom"] += 1
            continue
        if kind == "hangup":
            counts["hangups"] += 1
            continue
        if status == 503:  # a stream the worker died under, or a client that gave up
            counts["gave up" if got.get("gave_up") else "stream died"] += 1
            continue
        assert status == 200, (status, got)
        counts["200"] += 1
        key = json.dumps(body, sort_keys=True)
        if key not in refs:  # the same request, sent alone, after the load
            ref_status, refs[key] = call(c, url, "plain", body)
            assert ref_status == 200
        counts["mismatches"] += got != refs[key]
    client.close()
    stop.set()  # /health was watched through the load and the references
    watcher.join()
    log = faulty.read_log()
    sizes = [json.loads(ln)["size"] for ln in log.splitlines() if '"event": "batch"' in ln]
    refused = {code: REFUSED.count(code) for code in set(REFUSED)}
    print(counts, "503s", refused, "batches", len(sizes), "max", max(sizes), f"{took:.1f} s")
    assert counts["mismatches"] == 0
    assert counts["200"] >= n // 2
    assert max(sizes) > 1  # requests did share batches
    assert '"event": "worker_died"' in log and '"event": "worker_restarted"' in log
    assert '"event": "item_failed"' in log and "injected item fault" in log
    assert 503 in health  # /health said so while the worker was down
    deadline = time.monotonic() + 30
    while httpx.get(faulty.url + "/health").status_code != 200:  # and it is back
        assert time.monotonic() < deadline, "the worker never came back"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def chat_faulty(chat_llama_dir):
    """Continuous batching under faults: a small queue (503s) and a worker killed at
    its 5th admission (its running rows get 503s too)."""
    s = Server(
        "--model",
        str(chat_llama_dir),
        "--max-batch-size",
        "16",
        "--max-queue",
        "40",
        "--max-items",
        "8",
        "--prefix-block-tokens",
        "4",
        env={"SAMEBITS_SERVE_TEST_FAULTS": "kill-worker-at-batch=5,restart-s=1"},
    )
    yield s
    s.stop()


SYSTEMS = ["You are terse.", "You are a helpful assistant who explains things step by step."]
USERS = ["hi", "What is a fox?", "Write a long story about a brave fox and a lazy dog.", "2+2?"]


def chat_request(i: int) -> dict:
    """The i-th of the 64: mixed prompt lengths, max_tokens, n, seeds (a third have
    none), temperatures, logprobs and streaming."""
    rng = random.Random(5000 + i)
    body = {
        "messages": [
            {"role": "system", "content": rng.choice(SYSTEMS)},
            {"role": "user", "content": rng.choice(USERS) * rng.randint(1, 2)},
        ],
        "max_tokens": rng.choice([1, 3, 8, 20, 40]),
        "n": rng.choice([1, 1, 2, 4]),
        "temperature": rng.choice([0.0, 0.8, 1.0]),
        "stream": rng.random() < 0.3,
    }
    if rng.random() < 0.67:
        body["seed"] = rng.randint(0, 2**40)
    if rng.random() < 0.5:
        body.update(logprobs=True, top_logprobs=rng.choice([0, 2]))
    return body


def chat_call(c: httpx.Client, url: str, body: dict) -> tuple[dict | None, int]:
    """(the answer as {"seed", "tokens", "texts", "logprobs"}, 503s before it); None
    after 100 refusals in a row (lost)."""
    refused = 0
    for _attempt in range(100):
        if not body.get("stream"):
            r = c.post(url, json=body)
            if r.status_code == 503:
                refused += 1
                time.sleep(float(r.headers["Retry-After"]) / 4)
                continue
            assert r.status_code == 200, r.text
            j = r.json()
            return {
                "seed": j["samebits"]["seed"],
                "tokens": j["samebits"]["tokens"],
                "texts": [ch["message"]["content"] for ch in j["choices"]],
                "logprobs": [ch["logprobs"] for ch in j["choices"]],
            }, refused
        got = streamed_chat(c, url, body)
        if got is None:
            refused += 1
            time.sleep(0.25)
            continue
        return got, refused
    return None, refused


def streamed_chat(c: httpx.Client, url: str, body: dict) -> dict | None:
    """A streamed answer put together, or None for a 503 or an error chunk."""
    n = body["n"]
    out = {"seed": None, "tokens": [None] * n, "texts": [""] * n, "logprobs": [None] * n}
    with c.stream("POST", url, json=body) as r:
        if r.status_code == 503:
            r.read()
            return None
        for ln in r.iter_lines():
            if not ln.startswith("data: ") or ln == "data: [DONE]":
                continue
            chunk = json.loads(ln[6:])
            if "error" in chunk:
                return None  # the worker died under this stream
            for ch in chunk["choices"]:
                i = ch["index"]
                out["texts"][i] += ch["delta"].get("content", "")
                if ch["logprobs"] is not None:
                    lp = out["logprobs"][i] or {"content": []}
                    lp["content"] += ch["logprobs"]["content"]
                    out["logprobs"][i] = lp
                if ch["finish_reason"]:
                    out["tokens"][i] = chunk["samebits"]["tokens"][0]
                    out["seed"] = chunk["samebits"]["seed"]
    return out


def test_64_concurrent_chat_requests_equal_each_alone_and_none_is_lost(chat_faulty):
    url = chat_faulty.url + "/v1/chat/completions"
    plan = [chat_request(i) for i in range(64)]
    with ThreadClients(timeout=300) as clients, ThreadPoolExecutor(64) as pool:
        results = list(pool.map(lambda b: chat_call(clients.get(), url, b), plan))
    lost = [i for i, (got, _) in enumerate(results) if got is None]
    assert lost == []
    mismatched, compared = [], 0
    with httpx.Client(timeout=300) as c:
        for i, (body, (got, _)) in enumerate(zip(plan, results, strict=True)):
            # alone: the same request (an unseeded one with the seed it was given), not streamed
            ref, _ = chat_call(c, url, {**body, "seed": got["seed"], "stream": False})
            for k in ("tokens", "texts", "logprobs"):
                compared += len(got[k])
                if got[k] != ref[k]:  # JSON values: logprobs as float32 -> float64, exact
                    mismatched.append((i, k))
    log = chat_faulty.read_log()
    refused = sum(r for _, r in results)
    sizes = [json.loads(ln)["size"] for ln in log.splitlines() if '"event": "batch"' in ln]
    print(f"503s retried: {refused}, admissions: {len(sizes)}, largest: {max(sizes)}")
    assert mismatched == []
    assert compared >= 3 * sum(b["n"] for b in plan)  # every choice of every answer
    assert '"event": "worker_died"' in log and max(sizes) > 1
