"""The server's limits, with a real process on loopback: the queue bound (503 +
Retry-After at once), the body limit counted while reading (chunked bodies too),
--max-items, --max-tokens, the API key from a file, disconnects cancelling work, and
streamed text equal to the non-streamed text with stop strings."""

import json
import random
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from samebits.serve._completion import held_back
from tests.serve.conftest import Server

KEY = "file-sekret"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def limited(llama_dir, tmp_path_factory):
    keyfile = tmp_path_factory.mktemp("key") / "key"
    keyfile.write_text(KEY + "\n")
    s = Server(
        "--model",
        str(llama_dir),
        "--api-key-file",
        str(keyfile),
        "--max-batch-size",
        "1",
        "--max-queue",
        "2",
        "--max-items",
        "2",
        "--max-tokens",
        "120",
        "--max-body-bytes",
        "4000",
        # the file wins; SLOW prompts take 50 ms a token (disconnects land mid-run)
        env={"SAMEBITS_API_KEY": "not-this-one", "SAMEBITS_SERVE_TEST_FAULTS": "slow-item=SLOW"},
    )
    yield s
    s.stop()


def post(s, body, **kw):
    return httpx.post(s.url + "/v1/completions", json=body, headers=AUTH, timeout=120, **kw)


def test_api_key_from_file_compared_whole(limited):
    assert post(limited, {"prompt": "a", "max_tokens": 1}).status_code == 200
    for bad in ("Bearer not-this-one", f"Bearer {KEY}x", f"Bearer {KEY[:-1]}", ""):
        r = httpx.post(
            limited.url + "/v1/completions",
            json={"prompt": "a", "max_tokens": 1},
            headers={"Authorization": bad},
        )
        assert r.status_code == 401, bad


@pytest.mark.parametrize(
    "body,fragment",
    [
        ({"prompt": ["a", "b", "c"]}, "at most 2"),
        ({"prompt": "a", "max_tokens": 121}, "limit 120"),
    ],
)
def test_item_and_token_limits_from_the_command_line(limited, body, fragment):
    r = post(limited, body)
    assert r.status_code == 400 and fragment in r.json()["error"]["message"]


def raw_chunked(s, chunks: int, size: int) -> tuple[int, int]:
    """POST a chunked body of ``chunks`` x ``size`` bytes by hand; (status, bytes sent
    before the server answered or closed)."""
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=30)
    head = (
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {KEY}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    sock.sendall(head.encode())
    sent = 0
    try:
        for _ in range(chunks):
            sock.sendall(f"{size:x}\r\n".encode() + b"a" * size + b"\r\n")
            sent += size
            time.sleep(0.002)
        sock.sendall(b"0\r\n\r\n")
    except OSError:  # the server answered 413 and closed while we were still sending
        pass
    reply = b""
    try:
        while b"\r\n\r\n" not in reply:
            got = sock.recv(65536)
            if not got:
                break
            reply += got
    except OSError:
        pass
    sock.close()
    return int(reply.split(b" ", 2)[1]), sent


def test_chunked_body_refused_while_reading(limited):
    status, _ = raw_chunked(limited, chunks=400, size=1000)  # 400 kB, no Content-Length
    assert status == 413
    declared = httpx.post(
        limited.url + "/v1/completions", content=b"a" * 5000, headers=AUTH, timeout=30
    )
    assert declared.status_code == 413 and "exceeds 4000" in declared.json()["error"]["message"]
    assert post(limited, {"prompt": "a", "max_tokens": 1}).status_code == 200


def test_full_queue_gets_503_with_retry_after_at_once(limited):
    reqs = [{"prompt": p, "max_tokens": 30} for p in "abcdefghijklmnop"]

    def send(r):
        t0 = time.monotonic()
        resp = post(limited, r)
        return r, resp, time.monotonic() - t0

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(send, reqs))
    refused = [(resp, dt) for _, resp, dt in results if resp.status_code == 503]
    ok = [(r, resp) for r, resp, _ in results if resp.status_code == 200]
    assert len(refused) + len(ok) == len(reqs)
    assert refused and ok
    for resp, dt in refused:
        err = resp.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["code"] == "queue_full"
        assert resp.headers["Retry-After"] == "1"
        assert dt < 5.0  # refused at once, while 60-token completions were still running
    for r, resp in ok:  # the answers that did come have the bits of the request alone
        alone = post(limited, r).json()
        assert resp.json()["samebits"]["tokens"] == alone["samebits"]["tokens"]


def wait_for_log(s, fragment: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = s.read_log()
        if fragment in log:
            return log
        time.sleep(0.05)
    raise AssertionError(f"{fragment!r} never appeared in the server log")


def test_disconnect_mid_stream_stops_the_completion(limited):
    with httpx.Client(timeout=60) as c:
        with c.stream(
            "POST",
            limited.url + "/v1/completions",
            json={"prompt": "SLOW", "max_tokens": 120, "stream": True},
            headers=AUTH,
        ) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    break  # one chunk, then hang up
    log = wait_for_log(limited, '"cancelled": 1')
    assert '"event": "batch"' in log


def test_disconnect_while_queued_drops_the_item(limited):
    with ThreadPoolExecutor(2) as pool:
        busy = pool.submit(post, limited, {"prompt": "SLOW busy", "max_tokens": 60})
        time.sleep(0.3)
        # the worker (batches of 1) is on it for ~3 s; the next one queues
        with pytest.raises(httpx.TimeoutException):
            httpx.post(
                limited.url + "/v1/completions",
                json={"prompt": "gone", "max_tokens": 5},
                headers=AUTH,
                timeout=0.3,
            )
        assert busy.result().status_code == 200
    wait_for_log(limited, '"event": "dropped"')


@pytest.mark.parametrize(
    "text,stops,keep",
    [
        ("hello wor", ["world"], 3),
        ("hello", ["lo!"], 2),
        ("hello", ["xyz"], 0),
        ("ab", ["b", "bc"], 1),
        ("abc\ufffd", [], 1),
        ("", ["abc"], 0),
    ],
)
def test_held_back(text, stops, keep):
    assert held_back(text, stops) == keep


def streamed(c, url, req) -> tuple[str, list[int], str]:
    text, tokens, reason = "", None, None
    with c.stream("POST", url, json={**req, "stream": True}, headers=c.auth_headers) as r:
        for ln in r.iter_lines():
            if not ln.startswith("data: ") or ln == "data: [DONE]":
                continue
            ch = json.loads(ln[6:])["choices"][0]
            text += ch["text"]
            if ch["finish_reason"]:
                tokens, reason = json.loads(ln[6:])["samebits"]["tokens"][0], ch["finish_reason"]
    return text, tokens, reason


def test_stream_equals_non_stream_with_stop_strings(llama_server):
    """Stop strings cut from each prompt's own completion (so they do fire), at every
    length from 1 to 4 characters, plus strings that never occur: streamed text,
    tokens and finish reason equal the non-streamed ones."""
    url = llama_server.url + "/v1/completions"
    rng = random.Random(17)
    with httpx.Client(timeout=120) as c:
        c.auth_headers = {"Authorization": "Bearer sekret"}
        cases = []
        for p in ["Hello", "The quick brown fox", "Once upon", "zz"]:
            base = {"prompt": p, "max_tokens": 10, "temperature": 1.0, "seed": rng.randint(0, 9)}
            full = c.post(url, json=base, headers=c.auth_headers).json()["choices"][0]["text"]
            for _ in range(3):
                k, at = rng.randint(1, 4), rng.randint(0, max(0, len(full) - 1))
                stops = [full[at : at + k] or "q"]
                if rng.random() < 0.5:
                    stops.append("~never~")
                cases.append({**base, "stop": stops})
            cases.append({**base, "stop": "~never~"})
        fired = 0
        for req in cases:
            ref = c.post(url, json=req, headers=c.auth_headers).json()
            text, tokens, reason = streamed(c, url, req)
            assert text == ref["choices"][0]["text"], req
            assert tokens == ref["samebits"]["tokens"][0], req
            assert reason == ref["choices"][0]["finish_reason"], req
            fired += reason == "stop"
    assert fired >= 6  # the stop strings did cut most completions
