"""The ASGI app: routes to the handlers, the app state they read, and the lifespan
that starts and stops the batcher.

Handlers are top-level functions of one request; what they share lives on
``request.app.state``: ``engine``, ``config``, ``batcher``, ``fingerprint_id`` and
``counter`` (requests in flight). ``build_state`` makes it, so a test can mount one
handler on its own app.
"""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager

from samebits.serve._batcher import Batcher, Faults
from samebits.serve._chat import chat_completions
from samebits.serve._completions import completions
from samebits.serve._config import ServeConfig
from samebits.serve._embeddings import embeddings
from samebits.serve._http import EXCEPTION_HANDLERS
from samebits.serve._status import health, models

log = logging.getLogger("samebits.serve")


def routes():
    from starlette.routing import Route

    return [
        Route("/health", health, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    ]


def make_batcher(engine, config: ServeConfig) -> Batcher:
    """Continuous batching for a completion model that allows it (with a prefix cache
    unless --prefix-cache-mb is 0); the dynamic static batcher otherwise."""
    kw = dict(max_queue=config.max_queue, faults=Faults.from_env())
    args = (engine, config.max_batch_size, config.max_wait_ms, config.max_idle_ms)
    if engine.kind != "completions" or config.batching != "continuous":
        return Batcher(*args, **kw)
    blocker = getattr(engine, "continuous_blocker", None)
    if blocker is not None:
        log.warning(json.dumps({"event": "static_batching", "reason": blocker}))
        return Batcher(*args, **kw)
    from samebits.serve._continuous import ContinuousBatcher
    from samebits.serve._prefix import PrefixCache

    prefix = None
    if config.prefix_cache_mb > 0:
        prefix = PrefixCache(int(config.prefix_cache_mb * 2**20), config.prefix_block_tokens)
    return ContinuousBatcher(*args, prefix=prefix, **kw)


class Count:
    """Requests in flight (a mutable cell the state and InFlight share)."""

    n = 0


def build_state(app, engine, config: ServeConfig) -> None:
    """Put what the handlers read on ``app.state``."""
    from samebits._mode import batch_invariant
    from samebits.record.fingerprint import fingerprint_id

    with batch_invariant():  # the worker's conditions: the mode's bit-affecting fields
        app.state.fingerprint_id = fingerprint_id()
    app.state.engine, app.state.config = engine, config
    app.state.batcher = make_batcher(engine, config)
    app.state.counter = Count()


@asynccontextmanager
async def lifespan(app):
    batcher = app.state.batcher
    batcher.start()
    yield
    # what is queued drains in the worker; serve() joins it off the event loop
    batcher.request_stop()


def create_app(engine, config: ServeConfig):
    """The app for ``engine``, counting requests in flight (see InFlight).

    Starlette without a framework on top: FastAPI's dependency and middleware layers
    cost the event loop ~0.1 ms per request, time the model's cores sit idle between
    batches."""
    from starlette.applications import Starlette

    app = Starlette(routes=routes(), exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    build_state(app, engine, config)
    return InFlight(app, app.state.counter)


class InFlight:
    """The ASGI app, counting /v1 requests from their arrival to their last byte."""

    def __init__(self, app, counter: Count) -> None:
        self.app, self.counter, self.state = app, counter, app.state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            return await self.app(scope, receive, send)
        self.counter.n += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.counter.n -= 1
