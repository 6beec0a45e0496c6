"""``POST /v1/embeddings``: float or base64 (exact float32 little-endian) vectors."""

from __future__ import annotations

import asyncio
import base64

from samebits.serve._engines import RequestError, digest
from samebits.serve._http import HTTPError, fast_json, items_of, parse, submit
from samebits.serve._schemas import EmbeddingRequest


async def embeddings(req):
    state = req.app.state
    engine = state.engine
    r = await parse(req, EmbeddingRequest)
    if engine.kind != "embeddings":
        raise HTTPError(
            400, f"{engine.name!r} is a completion model: use /v1/completions", param="model"
        )
    texts = items_of(r.input, "input", state.config.max_items)
    # tokenizing a 4 MiB body takes long: a thread, while the loop serves others
    items = await asyncio.to_thread(prepare_all, engine, texts)
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
                "fingerprint_id": state.fingerprint_id,
                "hashed": "float32 little-endian embedding bytes",
            },
        }
    )


def prepare_all(engine, texts: list[str]) -> list:
    """Each text's batch item; 400 naming the first text the model cannot take."""
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
