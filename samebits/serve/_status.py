"""``GET /health`` (no key needed) and ``GET /v1/models``."""

from __future__ import annotations

from samebits.serve._engines import describe
from samebits.serve._http import authorize, fast_json


async def health(req):
    state = req.app.state
    engine, batcher = state.engine, state.batcher
    if not batcher.healthy:
        return fast_json(
            {"status": "worker_down", "model": engine.name, "in_flight": state.counter.n},
            status=503,
            headers={"Retry-After": "1"},
        )
    body = {
        "status": "ok",
        "queued": batcher.waiting,
        "model": engine.name,
        "kind": engine.kind,
        "fingerprint_id": state.fingerprint_id,
        # /v1 requests received and not yet answered (a test waits on it before
        # SIGTERM, instead of sleeping)
        "in_flight": state.counter.n,
    }
    if engine.kind == "completions":
        from samebits.serve._continuous import ContinuousBatcher

        continuous = isinstance(batcher, ContinuousBatcher)
        body["batching"] = "continuous" if continuous else "static"
        body["running"] = len(batcher.works) if continuous else 0
        prefix = batcher.prefix if continuous else None
        if prefix is not None:
            body["prefix_cache"] = {
                "blocks": len(prefix.blocks),
                "bytes": prefix.nbytes,
                "max_bytes": prefix.max_bytes,
                "hit_tokens": prefix.hit_tokens,
            }
    return fast_json(body)


async def models(req):
    authorize(req)
    return fast_json({"object": "list", "data": [describe(req.app.state.engine)]})
