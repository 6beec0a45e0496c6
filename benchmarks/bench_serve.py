"""Serving throughput: `python benchmarks/bench_serve.py [--part embeddings,completions]
[--workloads demo,short,medium,long]`.

Embeddings: real `samebits serve` processes (bundled MiniLM), one with dynamic
batching (max batch 32, wait 5 ms) and one with --max-batch-size 1. Clients send
one-text embedding requests from client threads, each on a keep-alive connection (see
load()). Rounds are interleaved; the table shows medians. Workloads: the demo texts
(2-40 tokens), short queries, medium texts (20-60 words) and long ones (100-180 words;
not run by default: a round of them takes minutes).

Completions: static batching (--batching static: a batch decodes until its longest
request ends; the server before continuous batching) against continuous batching,
in one run on this machine, at 16 and 64 concurrent clients sending completions
with mixed max_tokens (see completions()).
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


PARTS = ("embeddings", "completions")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", default="embeddings,completions", help=",".join(PARTS))
    ap.add_argument("--workloads", default="demo,short,medium", help=",".join(WORKLOADS))
    ap.add_argument("--requests", type=int, default=192, help="completion requests per measurement")
    args = ap.parse_args()
    parts = [p.strip() for p in args.part.split(",") if p.strip()]
    if any(p not in PARTS for p in parts):
        ap.error(f"--part {args.part!r}: choose from {', '.join(PARTS)}")
    names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in names if w not in WORKLOADS]
    if unknown:
        ap.error(f"unknown workload(s) {unknown}; choose from {', '.join(WORKLOADS)}")
    if "embeddings" in parts:
        embeddings(names)
    if "completions" in parts:
        completions(args.requests)


def embeddings(names: list[str]) -> None:
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


# -- completions: static vs continuous batching ------------------------------------------

# a random Llama bigger than the tests' (hidden 256, 4 layers), character-level vocabulary
BENCH_LLAMA = dict(
    hidden_size=256,
    intermediate_size=688,
    num_hidden_layers=4,
    num_attention_heads=8,
    num_key_value_heads=4,
    max_position_embeddings=512,
)
MAX_TOKENS = [8, 16, 32, 128]  # mixed: most requests short, a quarter long
CMP_PROMPTS = [
    "Hello",
    "The quick brown fox jumps over the lazy dog",
    "a",
    "Once upon a time, in a land far away, there lived a fox who",
    "Deterministic?",
]


def cmp_body(i: int) -> dict:
    """Request i: a prompt, a max_tokens from MAX_TOKENS, sampled at T = 1 with seed i
    (the same tokens from either server: the bench checks it)."""
    return {
        "prompt": CMP_PROMPTS[i % len(CMP_PROMPTS)],
        "max_tokens": MAX_TOKENS[(i * 7) % 4],
        "temperature": 1.0,
        "seed": i,
    }


def cmp_load(url: str, clients: int, requests: int) -> tuple[float, float, list[float], dict]:
    """``requests`` completions from ``clients`` threads (closed loop, keep-alive
    http.client connections): (requests/s, completion tokens/s, latencies, tokens by i)."""
    parts = urlsplit(url)
    todo, lock = iter(range(requests)), threading.Lock()
    lat: list[float] = []
    tokens: dict[int, list[int]] = {}

    def client() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
        while True:
            with lock:
                i = next(todo, None)
            if i is None:
                break
            t = time.perf_counter()
            conn.request(
                "POST",
                "/v1/completions",
                json.dumps(cmp_body(i)),
                {"Content-Type": "application/json"},
            )
            r = conn.getresponse()
            data = r.read()
            if r.status != 200:
                raise RuntimeError(f"HTTP {r.status}: {data[:200]!r}")
            lat.append(time.perf_counter() - t)
            tokens[i] = json.loads(data)["samebits"]["tokens"][0]
        conn.close()

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(client) for _ in range(clients)]:
            f.result()
    took = time.perf_counter() - start
    return requests / took, sum(map(len, tokens.values())) / took, lat, tokens


def cpu_flags() -> str:
    """Which of avx2 / avx512f / avx512_bf16 /proc/cpuinfo lists."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln.split(":", 1)[1].split() for ln in f if ln.startswith("flags")), [])
    except OSError:
        flags = []
    return ", ".join(
        f"{x} {'yes' if x in flags else 'no'}" for x in ("avx2", "avx512f", "avx512_bf16")
    )


def completions(requests: int) -> None:
    import tempfile

    import torch

    from tests.serve.conftest import make_tiny_llama

    print(header("bench_serve: static vs continuous batching (random Llama, completions)"))
    print(f"cpu flags: {cpu_flags()}; torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as d:
        make_tiny_llama(d, **BENCH_LLAMA)
        common = ["--model", d, "--max-batch-size", "64", "--max-queue", "4096"]
        servers = {
            "static": Server(*common, "--batching", "static"),
            "continuous": Server(*common, "--batching", "continuous"),
        }
        try:
            rows, first = [], {}
            for clients in (16, 64):
                for name, srv in servers.items():
                    cmp_load(srv.url, clients, clients)  # warm up
                    rps, tps, lat, toks = cmp_load(srv.url, clients, requests)
                    if first.setdefault(clients, toks) != toks:
                        raise RuntimeError("static and continuous batching gave different tokens")
                    rows.append(
                        [
                            name,
                            str(clients),
                            f"{rps:.2f}",
                            f"{tps:.0f}",
                            f"{pct(lat, 0.5):.0f}",
                            f"{pct(lat, 0.99):.0f}",
                        ]
                    )
        finally:
            for srv in servers.values():
                srv.stop()
    print(
        f"\n## {requests} requests per row, max_tokens mixed {MAX_TOKENS}, T = 1, seeded; "
        "both servers gave the same tokens"
    )
    print(table(rows, ["batching", "clients", "requests/s", "tokens/s", "p50 ms", "p99 ms"]))


if __name__ == "__main__":
    main()
