"""The OpenAI-compatible ASGI app: /health, /v1/models, /v1/embeddings, /v1/completions.

Every error uses OpenAI's schema ``{"error": {"message", "type", "param", "code"}}``.
"""

import asyncio
import base64
import hmac
import json
import logging
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

from samebits.serve._batcher import (
    Batcher,
    Faults,
    ItemFailed,
    QueueFull,
    WorkerDown,
    log_error,
)
from samebits.serve._engines import Completion, RequestError, describe, digest


@dataclass(frozen=True)
class ServeConfig:
    """``samebits serve`` settings; each CLI flag maps to one field."""

    model: str = "minilm"
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    max_idle_ms: float = 1.0
    api_key: str | None = None  # from --api-key-file or SAMEBITS_API_KEY (see cli.py)
    max_items: int = 2048  # inputs or prompts per request
    max_tokens: int = 1024  # completion tokens per prompt
    max_body_bytes: int = 4 * 1024 * 1024
    max_queue: int = 4096  # items waiting for the worker; more -> 503 + Retry-After
    drain_timeout_s: float = 30.0  # SIGTERM: how long in-flight requests may take


class HTTPError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        type_: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = (
            status,
            message,
            param,
            code,
            type_,
        )
        self.headers = headers


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


log = logging.getLogger("samebits.serve")


def busy_error(e: Exception) -> HTTPError:
    """The HTTPError for a batcher refusal or an item's failure (no internals: the
    traceback is in the server log, under the error id)."""
    if isinstance(e, QueueFull):
        return HTTPError(
            503,
            "the server's queue is full; retry after the Retry-After delay",
            code="queue_full",
            type_="server_error",
            headers={"Retry-After": "1"},
        )
    if isinstance(e, WorkerDown):
        return HTTPError(
            503,
            "the model worker is restarting or the server is stopping; retry shortly",
            code="worker_unavailable",
            type_="server_error",
            headers={"Retry-After": "1"},
        )
    assert isinstance(e, ItemFailed)
    return HTTPError(
        500,
        f"an item of this request failed (error id {e.error_id}; see the server log)",
        code="item_failed",
        type_="server_error",
    )


async def until_disconnect(req, aw):
    """Await ``aw``, or cancel it and raise ClientGone if the client disconnects first
    (the body is read by then: the next ASGI message can only be the disconnect)."""
    task = asyncio.ensure_future(aw)

    async def watch() -> None:
        while (await req.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    raise ClientGone()


def create_app(engine, config: ServeConfig):
    import orjson
    import torch
    from pydantic import (
        BaseModel,
        ConfigDict,
        Field,
        StrictBool,
        StrictFloat,
        StrictInt,
        StrictStr,
        ValidationError,
    )
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    from samebits._mode import batch_invariant
    from samebits.record.fingerprint import fingerprint_id

    with batch_invariant():  # the worker's conditions: the mode's bit-affecting fields
        fid = fingerprint_id()
    counter = _Count()
    batcher = Batcher(
        engine,
        config.max_batch_size,
        config.max_wait_ms,
        config.max_idle_ms,
        max_queue=config.max_queue,
        faults=Faults.from_env(),
    )

    class EmbeddingRequest(BaseModel):
        model_config = ConfigDict(extra="ignore")
        input: StrictStr | list[StrictStr]
        model: StrictStr | None = None
        encoding_format: Literal["float", "base64"] = "float"

    class CompletionRequest(BaseModel):
        model_config = ConfigDict(extra="ignore")
        prompt: StrictStr | list[StrictStr]
        model: StrictStr | None = None
        max_tokens: StrictInt = Field(16, ge=1)
        temperature: StrictFloat | StrictInt = Field(0.0, ge=0.0, le=2.0)
        top_p: StrictFloat | StrictInt = Field(1.0, gt=0.0, le=1.0)
        seed: StrictInt | None = None
        stop: StrictStr | list[StrictStr] | None = None
        stream: StrictBool = False
        n: StrictInt = Field(1, ge=1, le=1)

    @asynccontextmanager
    async def lifespan(_app):
        batcher.start()
        yield
        # what is queued drains in the worker; serve() joins it off the event loop
        batcher.request_stop()

    def fast_json(payload: dict) -> Response:
        # orjson: json.dumps took ~0.25 ms per 384-float embedding on the event loop
        # (orjson, numpy arrays included: ~0.01 ms)
        return Response(
            orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY),
            media_type="application/json",
        )

    def error(e: HTTPError) -> JSONResponse:
        return JSONResponse(
            {"error": {"message": e.message, "type": e.type, "param": e.param, "code": e.code}},
            status_code=e.status,
            headers=e.headers,
        )

    async def _http_error(_req, e: HTTPError):
        return error(e)

    async def _not_found(req, _e):
        return error(HTTPError(404, f"no route {req.method} {req.url.path}", code="not_found"))

    async def _bad_method(req, _e):
        return error(HTTPError(405, f"method {req.method} not allowed on {req.url.path}"))

    async def _gone(_req, _e):
        return Response(status_code=499)  # nginx's "client closed request": nobody reads it

    async def _internal(_req, e: Exception):
        error_id = log_error("internal_error", e)
        return error(
            HTTPError(
                500,
                f"internal error (error id {error_id}; see the server log)",
                type_="server_error",
            )
        )

    expected = None if config.api_key is None else f"Bearer {config.api_key}".encode()

    def authorize(req: Request) -> None:
        if expected is None:
            return
        got = req.headers.get("authorization", "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(got, expected):
            raise HTTPError(
                401,
                "missing or incorrect API key (send 'Authorization: Bearer KEY')",
                code="invalid_api_key",
            )

    async def parse(req: Request, model_cls):
        authorize(req)
        declared = req.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > config.max_body_bytes:
            raise HTTPError(
                413, f"request body of {declared} bytes exceeds {config.max_body_bytes}"
            )
        # counted while reading, chunked bodies included: never more than the limit
        # (plus one chunk) is held in memory
        parts, size = [], 0
        async for chunk in req.stream():
            size += len(chunk)
            if size > config.max_body_bytes:
                raise HTTPError(
                    413,
                    f"request body exceeds {config.max_body_bytes} bytes "
                    f"(--max-body-bytes); it was refused while being read",
                )
            parts.append(chunk)
        body = b"".join(parts)
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise HTTPError(400, f"request body is not valid JSON: {e}") from e
        if not isinstance(data, dict):
            raise HTTPError(400, "request body must be a JSON object")
        try:
            parsed = model_cls.model_validate(data)
        except ValidationError as e:
            first = e.errors()[0]
            param = ".".join(str(p) for p in first["loc"]) or None
            raise HTTPError(422, f"{param}: {first['msg']}", param=param) from e
        if parsed.model is not None and parsed.model != engine.name:
            raise HTTPError(
                404,
                f"model {parsed.model!r} is not served here; this server serves {engine.name!r}",
                param="model",
                code="model_not_found",
            )
        return parsed

    def items_of(value, field: str) -> list[str]:
        texts = [value] if isinstance(value, str) else list(value)
        if not texts:
            raise HTTPError(400, f"{field} is empty", param=field)
        if len(texts) > config.max_items:
            raise HTTPError(
                400, f"{field} has {len(texts)} items; at most {config.max_items}", param=field
            )
        for i, t in enumerate(texts):
            if not t:
                raise HTTPError(400, f"{field}[{i}] is an empty string", param=field)
        return texts

    async def health(_req: Request):
        if not batcher.healthy:
            return JSONResponse(
                {"status": "worker_down", "model": engine.name, "in_flight": counter.n},
                status_code=503,
                headers={"Retry-After": "1"},
            )
        return fast_json(
            {
                "status": "ok",
                "queued": batcher.waiting,
                "model": engine.name,
                "kind": engine.kind,
                "fingerprint_id": fid,
                # /v1 requests received and not yet answered (a test waits on it
                # before SIGTERM, instead of sleeping)
                "in_flight": counter.n,
            }
        )

    async def models(req: Request):
        authorize(req)
        return fast_json({"object": "list", "data": [describe(engine)]})

    async def embeddings(req: Request):
        r = await parse(req, EmbeddingRequest)
        if engine.kind != "embeddings":
            raise HTTPError(
                400, f"{engine.name!r} is a completion model: use /v1/completions", param="model"
            )
        texts = items_of(r.input, "input")

        def prepare_all():
            try:
                if hasattr(engine, "prepare_many"):  # names the text at fault itself
                    return engine.prepare_many(texts)
                items = []
                for i, t in enumerate(texts):
                    try:
                        items.append(engine.prepare(t))
                    except RequestError as e:
                        raise RequestError(f"input[{i}]: {e}") from e
                return items
            except RequestError as e:
                raise HTTPError(400, str(e), param="input") from e

        # tokenizing a 4 MiB body takes long: a thread, while the loop serves others
        items = await asyncio.to_thread(prepare_all)
        ntok = sum(len(t.ids) for t in items)
        vecs = await submit(req, items)
        data = []
        for i, v in enumerate(vecs):
            # float: float32 -> float64 is exact, and orjson writes each float64 in
            # its shortest round-trip form, so a client reading it as float32 gets
            # the same bits (tests/serve check both formats against the raw bytes)
            emb = (
                base64.b64encode(v.numpy().astype("<f4").tobytes()).decode()
                if r.encoding_format == "base64"
                else v.numpy().astype("float64")
            )
            data.append({"object": "embedding", "index": i, "embedding": emb})
        return fast_json(
            {
                "object": "list",
                "data": data,
                "model": engine.name,
                "usage": {"prompt_tokens": ntok, "total_tokens": ntok},
                "samebits": {
                    "sha256": [digest(v) for v in vecs],
                    "fingerprint_id": fid,
                    "hashed": "float32 little-endian embedding bytes",
                },
            }
        )

    def completions_for(r) -> list[Completion]:
        if engine.kind != "completions":
            raise HTTPError(
                400, f"{engine.name!r} is an embedding model: use /v1/embeddings", param="model"
            )
        if r.max_tokens > config.max_tokens:
            raise HTTPError(
                400,
                f"max_tokens={r.max_tokens} exceeds this server's limit {config.max_tokens}",
                param="max_tokens",
            )
        prompts = items_of(r.prompt, "prompt")
        stop = [r.stop] if isinstance(r.stop, str) else list(r.stop or [])
        out = []
        for i, p in enumerate(prompts):
            try:
                ids = engine.encode(p)
            except RequestError as e:
                raise HTTPError(400, f"prompt[{i}]: {e}", param="prompt") from e
            if len(ids) + r.max_tokens > engine.max_context:
                raise HTTPError(
                    400,
                    f"prompt[{i}] has {len(ids)} tokens; with max_tokens={r.max_tokens} that "
                    f"exceeds the context of {engine.max_context}",
                    param="prompt",
                )
            out.append(
                Completion(
                    ids, r.max_tokens, float(r.temperature), float(r.top_p), r.seed, stop, prompt=p
                )
            )
        return out

    async def submit(req: Request, items: list):
        try:
            return await until_disconnect(req, batcher.submit_all(items))
        except (QueueFull, WorkerDown, ItemFailed) as e:
            raise busy_error(e) from e

    def token_digest(c: Completion) -> str:
        return digest(torch.tensor(c.tokens, dtype=torch.int64))

    async def completions(req: Request):
        r = await parse(req, CompletionRequest)
        items = await asyncio.to_thread(completions_for, r)  # tokenizes: off the loop
        cid, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if not r.stream:
            done = await submit(req, items)
            choices = [
                {"text": c.text, "index": i, "logprobs": None, "finish_reason": c.finish_reason}
                for i, c in enumerate(done)
            ]
            usage_p = sum(len(c.prompt_ids) for c in done)
            usage_c = sum(len(c.tokens) for c in done)
            return fast_json(
                {
                    "id": cid,
                    "object": "text_completion",
                    "created": created,
                    "model": engine.name,
                    "choices": choices,
                    "usage": {
                        "prompt_tokens": usage_p,
                        "completion_tokens": usage_c,
                        "total_tokens": usage_p + usage_c,
                    },
                    "samebits": {
                        "sha256": [token_digest(c) for c in done],
                        "tokens": [c.tokens for c in done],
                        "fingerprint_id": fid,
                        "hashed": "int64 little-endian completion token ids",
                    },
                }
            )

        loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue()
        for i, c in enumerate(items):
            c.on_token = lambda _tok, delta, i=i: loop.call_soon_threadsafe(
                q.put_nowait, (i, delta, None)
            )
        try:
            works = batcher.enqueue(items)  # refused here: a 503 before any byte is sent
        except (QueueFull, WorkerDown) as e:
            raise busy_error(e) from e
        gone = object()

        async def run_one(i: int) -> None:
            try:
                done = await works[i].future
            except (WorkerDown, ItemFailed) as e:
                q.put_nowait((i, None, e))  # ends this choice's stream with an error chunk
                return
            q.put_nowait((i, None, done))  # queued after its deltas: same thread, FIFO

        async def watch() -> None:
            while (await req.receive())["type"] != "http.disconnect":
                pass
            q.put_nowait((0, None, gone))

        def chunk(payload: dict) -> str:
            return f"data: {json.dumps(payload)}\n\n"

        async def stream():
            tasks = [asyncio.ensure_future(run_one(i)) for i in range(len(items))]
            watcher = asyncio.ensure_future(watch())
            sent = [0] * len(items)  # characters of each choice's text streamed
            base = {"id": cid, "object": "text_completion", "created": created}
            base["model"] = engine.name
            try:
                remaining = len(items)
                while remaining:
                    i, delta, done = await q.get()
                    if done is gone:
                        return  # the client went away: finally cancels its work
                    if done is None:
                        if delta:
                            sent[i] += len(delta)
                            choice = {"text": delta, "index": i, "logprobs": None}
                            yield chunk({**base, "choices": [{**choice, "finish_reason": None}]})
                        continue
                    remaining -= 1
                    if isinstance(done, Exception):
                        e = busy_error(done)
                        err = {"message": e.message, "type": e.type, "param": None}
                        yield chunk({"error": {**err, "code": e.code}})
                        continue
                    choice = {
                        "text": done.text[sent[i] :],  # the tail held back (see held_back)
                        "index": i,
                        "logprobs": None,
                        "finish_reason": done.finish_reason,
                    }
                    extra = {
                        "samebits": {
                            "sha256": [token_digest(done)],
                            "tokens": [done.tokens],
                            "fingerprint_id": fid,
                        }
                    }
                    yield chunk({**base, "choices": [choice], **extra})
                yield "data: [DONE]\n\n"
            finally:
                watcher.cancel()
                batcher.cancel(works)  # no-op for the finished ones
                for t in tasks:
                    t.cancel()

        return StreamingResponse(stream(), media_type="text/event-stream")

    # Starlette without a framework on top: FastAPI's dependency and middleware layers
    # cost the event loop ~0.1 ms per request, time the model's cores sit idle between
    # batches (requests are parsed and validated here, with pydantic, as before)
    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
        ],
        exception_handlers={
            HTTPError: _http_error,
            ClientGone: _gone,
            404: _not_found,
            405: _bad_method,
            Exception: _internal,
        },
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    return InFlight(app, counter)


class _Count:
    n = 0


class InFlight:
    """The ASGI app, counting /v1 requests from their arrival to their last byte."""

    def __init__(self, app, counter: _Count) -> None:
        self.app, self.counter, self.state = app, counter, app.state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            return await self.app(scope, receive, send)
        self.counter.n += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.counter.n -= 1
