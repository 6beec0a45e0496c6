"""A real server process under concurrent load: every response's bytes equal the
same request sent alone; bad requests get OpenAI-style errors and the server lives on."""

import base64
import random
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from tests.serve.conftest import ThreadClients

AUTH = {"Authorization": "Bearer sekret"}
TEXTS = [
    "hello",
    "a much longer sentence with many words in it to force padding in a batch",
    "mid size text here",
    "x",
    "Deterministic serving on CPU.",
    "another one",
    "the end of the list",
]
PROMPTS = ["Hello", "The quick brown fox", "a", "Once upon a time, in a", "samebits"]


def emb_request(i: int) -> dict:
    rng = random.Random(i)
    k = rng.randint(1, 4)
    return {
        "model": "minilm",
        "input": rng.sample(TEXTS, k) if k > 1 else rng.choice(TEXTS),
        "encoding_format": rng.choice(["float", "base64"]),
    }


def cmp_request(i: int) -> dict:
    rng = random.Random(1000 + i)
    req = {"prompt": rng.choice(PROMPTS), "max_tokens": rng.randint(1, 8)}
    if rng.random() < 0.5:
        req.update(
            temperature=rng.choice([0.7, 1.0, 1.3]),
            top_p=rng.choice([0.9, 1.0]),
            seed=rng.randint(0, 3),
        )
    return req


def emb_bytes(resp: dict) -> list[bytes]:
    out = []
    for d in resp["data"]:
        e = d["embedding"]
        out.append(
            base64.b64decode(e) if isinstance(e, str) else np.asarray(e, dtype="<f4").tobytes()
        )
    return out


def test_health_and_models(minilm_server):
    h = httpx.get(minilm_server.url + "/health").json()
    assert h["status"] == "ok" and h["kind"] == "embeddings" and len(h["fingerprint_id"]) == 16
    m = httpx.get(minilm_server.url + "/v1/models").json()
    assert m["object"] == "list" and m["data"][0]["id"] == "minilm"


def test_base64_is_exact_float32_of_the_float_encoding(minilm_server):
    url = minilm_server.url + "/v1/embeddings"
    f = httpx.post(url, json={"input": TEXTS[:3]}).json()
    b = httpx.post(url, json={"input": TEXTS[:3], "encoding_format": "base64"}).json()
    assert emb_bytes(f) == emb_bytes(b)
    assert f["samebits"]["sha256"] == b["samebits"]["sha256"]
    import hashlib

    assert [hashlib.sha256(x).hexdigest() for x in emb_bytes(b)] == b["samebits"]["sha256"]


def test_500_concurrent_embedding_requests_match_alone(minilm_server):
    url = minilm_server.url + "/v1/embeddings"
    with httpx.Client(timeout=120) as c:
        alone = {
            t: emb_bytes(c.post(url, json={"input": t, "encoding_format": "base64"}).json())[0]
            for t in TEXTS
        }
        reqs = [emb_request(i) for i in range(500)]

    with ThreadClients(timeout=120) as clients:

        def send(r):
            return r, clients.get().post(url, json=r)

        with ThreadPoolExecutor(48) as pool:
            results = list(pool.map(send, reqs))
    mismatched = 0
    for req, resp in results:
        assert resp.status_code == 200, resp.text
        texts = [req["input"]] if isinstance(req["input"], str) else req["input"]
        mismatched += sum(a != alone[t] for a, t in zip(emb_bytes(resp.json()), texts, strict=True))
    assert mismatched == 0


def complete(c, url, req):
    r = c.post(url, json=req, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()


def test_500_concurrent_completions_greedy_and_seeded_match_alone(llama_server):
    url = llama_server.url + "/v1/completions"
    reqs = [cmp_request(i) for i in range(500)]
    with httpx.Client(timeout=300) as c:
        uniq = {repr(sorted(r.items())): r for r in reqs}
        alone = {k: complete(c, url, r) for k, r in uniq.items()}
    with ThreadClients(timeout=300) as clients, ThreadPoolExecutor(48) as pool:
        results = list(pool.map(lambda r: (r, complete(clients.get(), url, r)), reqs))
    mismatched = 0
    sampled = 0
    for req, resp in results:
        ref = alone[repr(sorted(req.items()))]
        sampled += "seed" in req
        same = (
            resp["samebits"]["tokens"] == ref["samebits"]["tokens"]
            and resp["samebits"]["sha256"] == ref["samebits"]["sha256"]
            and resp["choices"][0]["text"] == ref["choices"][0]["text"]
        )
        mismatched += not same
    assert mismatched == 0 and sampled > 100


def test_seeded_sampling_depends_on_the_seed(llama_server):
    url = llama_server.url + "/v1/completions"
    with httpx.Client(timeout=120) as c:
        outs = {
            s: complete(
                c, url, {"prompt": "Hello", "max_tokens": 12, "temperature": 1.5, "seed": s}
            )
            for s in range(4)
        }
        again = complete(
            c, url, {"prompt": "Hello", "max_tokens": 12, "temperature": 1.5, "seed": 2}
        )
    assert again["samebits"]["tokens"] == outs[2]["samebits"]["tokens"]
    assert len({tuple(o["samebits"]["tokens"][0]) for o in outs.values()}) > 1


def test_stream_matches_non_stream(llama_server):
    url = llama_server.url + "/v1/completions"
    req = {"prompt": ["The quick brown fox", "a"], "max_tokens": 6, "temperature": 0.9, "seed": 5}
    with httpx.Client(timeout=120) as c:
        ref = complete(c, url, req)
        text = {0: "", 1: ""}
        final = {}
        with c.stream("POST", url, json={**req, "stream": True}, headers=AUTH) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            lines = [ln for ln in r.iter_lines() if ln.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    import json

    for ln in lines[:-1]:
        chunk = json.loads(ln[6:])
        ch = chunk["choices"][0]
        text[ch["index"]] += ch["text"]
        if ch["finish_reason"]:
            final[ch["index"]] = chunk["samebits"]["tokens"][0]
    assert [text[0], text[1]] == [ch["text"] for ch in ref["choices"]]
    assert [final[0], final[1]] == ref["samebits"]["tokens"]


def test_openai_client(minilm_server, llama_server):
    openai = pytest.importorskip("openai")
    emb = openai.OpenAI(base_url=minilm_server.url + "/v1", api_key="unused")
    r = emb.embeddings.create(model="minilm", input=["hello", "world"])
    assert len(r.data) == 2 and len(r.data[0].embedding) == 384
    alone = emb.embeddings.create(model="minilm", input="world")
    assert (
        np.asarray(alone.data[0].embedding, "<f4").tobytes()
        == np.asarray(r.data[1].embedding, "<f4").tobytes()
    )
    llm = openai.OpenAI(base_url=llama_server.url + "/v1", api_key="sekret")
    name = httpx.get(llama_server.url + "/v1/models", headers=AUTH).json()["data"][0]["id"]
    c = llm.completions.create(model=name, prompt="Hello", max_tokens=5, temperature=0.8, seed=1)
    assert c.choices[0].finish_reason in ("length", "stop") and isinstance(c.choices[0].text, str)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=llama_server.url + "/v1", api_key="wrong").completions.create(
            model=name, prompt="x", max_tokens=1
        )


@pytest.mark.parametrize(
    "body,status,fragment",
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (b'{"input": 5}', 422, "input"),
        (b'{"input": ["ok", 3]}', 422, "input"),
        (b"{}", 422, "input"),
        (b'{"input": ""}', 400, "empty string"),
        (b'{"input": []}', 400, "is empty"),
        (b'{"input": "x", "encoding_format": "hex"}', 422, "encoding_format"),
        (b'{"input": "x", "model": "gpt-4"}', 404, "not served here"),
        (b'{"input": ["x"]' + b', "pad": "' + b"a" * (5 * 1024 * 1024) + b'"}', 413, "exceeds"),
        (('{"input": ' + str(["x"] * 2049).replace("'", '"') + "}").encode(), 400, "at most 2048"),
        (('{"input": "' + "word " * 400 + '"}').encode(), 400, "tokens"),
    ],
)
def test_bad_embedding_requests(minilm_server, body, status, fragment):
    r = httpx.post(
        minilm_server.url + "/v1/embeddings",
        content=body,
        timeout=60,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert fragment in err["message"] and set(err) == {"message", "type", "param", "code"}
    assert httpx.get(minilm_server.url + "/health").status_code == 200


@pytest.mark.parametrize(
    "body,headers,status,fragment",
    [
        ({"prompt": "x"}, {}, 401, "API key"),
        ({"prompt": "x"}, {"Authorization": "Bearer nope"}, 401, "API key"),
        ({"prompt": "x", "max_tokens": 5000}, AUTH, 400, "max_tokens=5000"),
        ({"prompt": "x", "max_tokens": "5"}, AUTH, 422, "max_tokens"),
        ({"prompt": "x", "temperature": -1}, AUTH, 422, "temperature"),
        ({"prompt": "x" * 300}, AUTH, 400, "context"),
        ({"max_tokens": 3}, AUTH, 422, "prompt"),
        ({"prompt": "x", "n": 0}, AUTH, 422, "n"),
        ({"prompt": "x", "n": 3000}, AUTH, 422, "n"),
        ({"prompt": "x", "stop": ["ok", ""]}, AUTH, 400, "stop[1] is an empty string"),
        ({"prompt": "x", "logprobs": 21}, AUTH, 422, "logprobs"),
        ({"prompt": "x", "seed": 2**64}, AUTH, 422, "seed"),
    ],
)
def test_bad_completion_requests(llama_server, body, headers, status, fragment):
    r = httpx.post(llama_server.url + "/v1/completions", json=body, headers=headers, timeout=60)
    assert r.status_code == status, r.text
    assert fragment in r.json()["error"]["message"]
    assert httpx.get(llama_server.url + "/health").status_code == 200


def test_embeddings_on_a_completion_server_is_refused(llama_server):
    r = httpx.post(llama_server.url + "/v1/embeddings", json={"input": "x"}, headers=AUTH)
    assert r.status_code == 400 and "completion model" in r.json()["error"]["message"]


def test_sigterm_drains_requests_in_flight(llama_dir):
    """SIGTERM: new connections are refused at once while the requests in flight
    (SLOW prompts: 50 ms a token, through the test hook) run to completion; exit 0."""
    import signal
    import subprocess

    from tests.serve.conftest import Server

    s = Server(
        "--model",
        str(llama_dir),
        "--max-wait-ms",
        "300",
        "--max-idle-ms",
        "300",
        env={"SAMEBITS_SERVE_TEST_FAULTS": "slow-item=SLOW"},
    )
    with ThreadPoolExecutor(4) as pool:
        futs = [
            pool.submit(
                httpx.post,
                s.url + "/v1/completions",
                json={"prompt": f"SLOW {p}", "max_tokens": 12},
                timeout=120,
            )
            for p in PROMPTS[:4]
        ]
        wait_in_flight(s, 4)  # the server has all four requests: queued or running
        s.proc.send_signal(signal.SIGTERM)
        refused = False
        for _ in range(100):  # the listener closes; the process lives on, draining
            try:
                httpx.get(s.url + "/health", timeout=1)
            except httpx.TransportError:
                refused = s.proc.poll() is None and not all(f.done() for f in futs)
                break
            time.sleep(0.02)
        statuses = [f.result().status_code for f in futs]
        try:
            s.proc.wait(60)
        except subprocess.TimeoutExpired:
            s.proc.kill()
        code, err = s.stop()
    assert refused  # new connections refused while the four were still in flight
    assert statuses == [200, 200, 200, 200]
    assert code == 0
    assert '"event": "batch"' in err and '"event": "stopped"' in err


def wait_in_flight(s, n: int, timeout: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(s.url + "/health", timeout=5).json()["in_flight"] >= n:
            return
        time.sleep(0.02)
    raise AssertionError(f"the server never had {n} requests in flight")


def test_a_huge_input_is_tokenized_off_the_event_loop(minilm_server):
    """A 2 MB input (refused afterwards: too many tokens) takes a second or more to tokenize;
    meanwhile /health keeps answering, as the tokenizer runs in a thread and releases
    the GIL."""
    import threading
    import time

    big = {"input": "word " * 400_000}
    lat: list[float] = []
    done = threading.Event()

    def poll():
        while not done.is_set():
            t0 = time.monotonic()
            httpx.get(minilm_server.url + "/health", timeout=60)
            lat.append(time.monotonic() - t0)
            time.sleep(0.01)

    th = threading.Thread(target=poll)
    th.start()
    t0 = time.monotonic()
    r = httpx.post(minilm_server.url + "/v1/embeddings", json=big, timeout=120)
    took = time.monotonic() - t0
    done.set()
    th.join()
    assert r.status_code == 400 and "tokens" in r.json()["error"]["message"]
    assert took > 0.5 and len(lat) > 5
    assert max(lat) < took / 2, (max(lat), took)
