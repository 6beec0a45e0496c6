"""Serving throughput with dynamic batching vs one request at a time:
`python benchmarks/bench_serve.py [--workloads demo,short,medium,long]`.

Starts real `samebits serve` processes (bundled MiniLM): one with dynamic batching
(max batch 32, wait 5 ms) and one with --max-batch-size 1. Clients send one-text
embedding requests from client threads, each on a keep-alive connection (see load()).
Rounds are interleaved; the table shows medians. Workloads: the demo texts (2-40
tokens), short queries, medium texts (20-60 words) and long ones (100-180 words; not
run by default: a round of them takes minutes).
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
from _harness import header, table  # noqa: E402

from samebits._demo import demo_texts  # noqa: E402
from tests.serve.conftest import Server  # noqa: E402

REQUESTS = 240


SHORT = [
    "weather today",
    "capital of France",
    "tea or coffee",
    "deterministic inference",
    "batch size",
    "python list sort",
    "cheap flights",
    "reproducible builds",
    "GPU kernels",
    "unit tests",
]


def sentences(lo: int, hi: int, n: int, seed: int) -> list[str]:
    """n made-up sentences of lo..hi words (deterministic)."""
    rnd = random.Random(seed)
    words = (
        "the model server batch token latency cache kernel thread request answer vector "
        "system data user query result reproducible deterministic inference engine"
    ).split()
    return [
        " ".join(rnd.choice(words) for _ in range(rnd.randint(lo, hi))).capitalize() + "."
        for _ in range(n)
    ]


WORKLOADS = {
    "demo": ("mixed-length texts (the demo set, 2-40 tokens)", demo_texts),
    "short": ("short queries (2-4 words)", lambda: SHORT),
    "medium": ("medium texts (20-60 words, 25-75 tokens)", lambda: sentences(20, 60, 40, 1)),
    "long": ("long texts (100-180 words, 125-220 tokens)", lambda: sentences(100, 180, 20, 2)),
}


def load(url: str, clients: int, texts: list[str]) -> tuple[float, list[float]]:
    """REQUESTS one-text requests from `clients` threads, each on its own keep-alive
    connection. The load generator shares this machine's two cores with the server,
    so it is kept light: the standard library's http.client (httpx cost about a
    millisecond of CPU per request here, which the server then did not get)."""
    lat: list[float] = []
    parts = urlsplit(url)
    todo = iter(range(REQUESTS))
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        while True:
            with lock:
                i = next(todo, None)
            if i is None:
                break
            body = json.dumps({"input": texts[i % len(texts)]})
            t = time.perf_counter()
            conn.request("POST", "/v1/embeddings", body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            if r.status != 200:
                raise RuntimeError(f"HTTP {r.status}: {data[:200]!r}")
            lat.append(time.perf_counter() - t)
        conn.close()

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(client) for _ in range(clients)]:
            f.result()
    return REQUESTS / (time.perf_counter() - start), lat


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="demo,short,medium", help=",".join(WORKLOADS))
    args = ap.parse_args()
    names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in names if w not in WORKLOADS]
    if unknown:
        ap.error(f"unknown workload(s) {unknown}; choose from {', '.join(WORKLOADS)}")
    print(header("bench_serve: dynamic batching vs one request at a time (MiniLM embeddings)"))
    batched = Server("--max-batch-size", "32", "--max-wait-ms", "5")
    single = Server("--max-batch-size", "1", "--max-wait-ms", "0")
    try:
        configs = [("one at a time: max-batch-size 1, 1 client", single.url, 1)]
        configs += [(f"batched, {c} clients", batched.url, c) for c in (1, 4, 16)]
        configs += [("max-batch-size 1, 16 clients", single.url, 16)]
        for workload in names:
            title, make = WORKLOADS[workload]
            texts = make()
            for _, url, c in configs:  # warm up
                load(url, c, texts)
            tput = {name: [] for name, _, _ in configs}
            lats = {name: [] for name, _, _ in configs}
            for _ in range(3):  # rounds interleave the configurations
                for name, url, c in configs:
                    t, lat = load(url, c, texts)
                    tput[name].append(t)
                    lats[name] += lat
            base = statistics.median(tput[configs[0][0]])
            rows = []
            for name, _, c in configs:
                t = statistics.median(tput[name])
                p50, p99 = pct(lats[name], 0.5), pct(lats[name], 0.99)
                rows.append([name, str(c), f"{t / base:.2f}x", f"{p50:.1f}", f"{p99:.1f}"])
            print(f"\n## {title}")
            print(
                table(
                    rows,
                    ["configuration", "clients", "throughput vs one at a time", "p50 ms", "p99 ms"],
                )
            )
    finally:
        batched.stop()
        single.stop()


if __name__ == "__main__":
    main()
