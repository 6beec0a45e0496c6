"""Load and faults on a real server process over loopback: overload (a small queue),
slow clients, disconnects mid-stream, a worker killed through the test hook, and an
item that always raises. No response is lost or crossed, and every 200 has the bits
of the same request sent alone."""

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
