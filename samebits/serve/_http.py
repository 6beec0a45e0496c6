"""HTTP plumbing every handler shares: OpenAI-style errors, the API key, reading and
validating a body within the size limit, JSON responses, and awaiting work that a
client's disconnect cancels.

Every error uses OpenAI's schema ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import asyncio
import hmac
import json

from samebits.serve._batcher import ItemFailed, QueueFull, WorkerDown, log_error


class HTTPError(Exception):
    """An error answer: status, message, and OpenAI's type / param / code."""

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

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


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


# -- responses ------------------------------------------------------------------------


def fast_json(payload: dict, status: int = 200, headers: dict[str, str] | None = None):
    """orjson: json.dumps took ~0.25 ms per 384-float embedding on the event loop
    (orjson, numpy arrays included: ~0.01 ms). Infinities and NaN become null."""
    import orjson
    from starlette.responses import Response

    return Response(
        orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def error_response(e: HTTPError):
    return fast_json(e.body(), status=e.status, headers=e.headers)


async def on_http_error(_req, e: HTTPError):
    return error_response(e)


async def on_not_found(req, _e):
    return error_response(HTTPError(404, f"no route {req.method} {req.url.path}", code="not_found"))


async def on_bad_method(req, _e):
    return error_response(HTTPError(405, f"method {req.method} not allowed on {req.url.path}"))


async def on_client_gone(_req, _e):
    from starlette.responses import Response

    return Response(status_code=499)  # nginx's "client closed request": nobody reads it


async def on_internal(_req, e: Exception):
    error_id = log_error("internal_error", e)
    return error_response(
        HTTPError(
            500, f"internal error (error id {error_id}; see the server log)", type_="server_error"
        )
    )


EXCEPTION_HANDLERS = {
    HTTPError: on_http_error,
    ClientGone: on_client_gone,
    404: on_not_found,
    405: on_bad_method,
    Exception: on_internal,
}


# -- requests -------------------------------------------------------------------------


def authorize(req) -> None:
    """401 unless the request carries the server's key (when it has one)."""
    key = req.app.state.config.api_key
    if key is None:
        return
    got = req.headers.get("authorization", "").encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(got, f"Bearer {key}".encode()):
        raise HTTPError(
            401,
            "missing or incorrect API key (send 'Authorization: Bearer KEY')",
            code="invalid_api_key",
        )


async def read_body(req, limit: int) -> bytes:
    """The body, refused (413) as soon as it passes ``limit`` bytes: counted while
    reading, chunked bodies included, so never more than the limit (plus one chunk)
    is held in memory."""
    declared = req.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPError(413, f"request body of {declared} bytes exceeds {limit}")
    parts, size = [], 0
    async for chunk in req.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPError(
                413,
                f"request body exceeds {limit} bytes (--max-body-bytes); "
                "it was refused while being read",
            )
        parts.append(chunk)
    return b"".join(parts)


async def parse(req, model_cls):
    """Authorize, read and validate a request body into ``model_cls`` (a pydantic
    model); 404 if it names a model this server does not serve."""
    from pydantic import ValidationError

    authorize(req)
    state = req.app.state
    body = await read_body(req, state.config.max_body_bytes)
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
    if parsed.model is not None and parsed.model != state.engine.name:
        raise HTTPError(
            404,
            f"model {parsed.model!r} is not served here; this server serves {state.engine.name!r}",
            param="model",
            code="model_not_found",
        )
    return parsed


def items_of(value, field: str, max_items: int) -> list[str]:
    """A str-or-list field as a list: 400 if empty, too long, or holding an empty string."""
    texts = [value] if isinstance(value, str) else list(value)
    if not texts:
        raise HTTPError(400, f"{field} is empty", param=field)
    if len(texts) > max_items:
        raise HTTPError(400, f"{field} has {len(texts)} items; at most {max_items}", param=field)
    for i, t in enumerate(texts):
        if not t:
            raise HTTPError(400, f"{field}[{i}] is an empty string", param=field)
    return texts


# -- work -----------------------------------------------------------------------------


async def until_disconnect(req, aw):
    """Await ``aw``, or cancel it and raise ClientGone if the client disconnects first
    (the body is read by then: the next ASGI message can only be the disconnect)."""
    task = asyncio.ensure_future(aw)
    watcher = asyncio.ensure_future(wait_disconnect(req))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    raise ClientGone()


async def wait_disconnect(req) -> None:
    while (await req.receive())["type"] != "http.disconnect":
        pass


async def submit(req, items: list):
    """Run ``items`` through the batcher; their results, or the HTTPError of a refusal."""
    try:
        return await until_disconnect(req, req.app.state.batcher.submit_all(items))
    except (QueueFull, WorkerDown, ItemFailed) as e:
        raise busy_error(e) from e
