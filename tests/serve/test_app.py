"""The app's layout (samebits/serve/_app.py): each handler is a top-level function
that can be mounted and tested alone, and every ServeConfig field has one CLI flag."""

import dataclasses

import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from samebits.serve import ServeConfig
from samebits.serve._app import build_state, lifespan, make_batcher, routes
from samebits.serve._chat import chat_completions
from samebits.serve._continuous import ContinuousBatcher
from samebits.serve._http import EXCEPTION_HANDLERS


def one_route_app(engine, path, handler, **config):
    app = Starlette(
        routes=[Route(path, handler, methods=["POST"])],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    build_state(app, engine, ServeConfig(**config))
    return app


def test_the_chat_handler_alone(llm):
    app = one_route_app(llm, "/chat", chat_completions, prefix_block_tokens=4)
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "seed": 9}
    with TestClient(app) as c:
        a = c.post("/chat", json={**body, "n": 2, "logprobs": True}).json()
        b = c.post("/chat", json=body).json()
        bad = c.post("/chat", json={**body, "top_logprobs": 1})
    assert a["object"] == "chat.completion" and len(a["choices"]) == 2
    assert (
        a["samebits"]["seeds"][0] == 9 and a["samebits"]["tokens"][0] == b["samebits"]["tokens"][0]
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "top_logprobs"


def test_every_endpoint_is_routed():
    paths = {(r.path, tuple(sorted(r.methods - {"HEAD"}))) for r in routes()}
    assert paths == {
        ("/health", ("GET",)),
        ("/v1/models", ("GET",)),
        ("/v1/embeddings", ("POST",)),
        ("/v1/completions", ("POST",)),
        ("/v1/chat/completions", ("POST",)),
    }


def test_batching_follows_the_config(llm):
    cont = make_batcher(llm, ServeConfig(prefix_cache_mb=1))
    assert isinstance(cont, ContinuousBatcher) and cont.prefix.max_bytes == 2**20
    assert make_batcher(llm, ServeConfig(prefix_cache_mb=0)).prefix is None
    assert not isinstance(make_batcher(llm, ServeConfig(batching="static")), ContinuousBatcher)


def test_every_config_field_has_one_flag_and_back(monkeypatch):
    from samebits.cli import build_parser, serve_config

    monkeypatch.delenv("SAMEBITS_API_KEY", raising=False)
    fields = {f.name for f in dataclasses.fields(ServeConfig)}
    parser = build_parser()
    serve = next(
        a for a in parser._subparsers._group_actions[0].choices.values() if a.prog.endswith("serve")
    )
    dests = {a.dest for a in serve._actions} - {"help", "func"}
    assert dests == fields | {"api_key_file"}  # the key may also come from a file
    args = parser.parse_args(
        [
            "serve",
            "--batching",
            "static",
            "--prefix-cache-mb",
            "3",
            "--prefix-block-tokens",
            "8",
            "--dtype",
            "bfloat16",
            "--max-batch-size",
            "4",
            "--api-key",
            "k",
        ]
    )
    cfg = serve_config(args)
    assert (cfg.batching, cfg.prefix_cache_mb, cfg.prefix_block_tokens, cfg.dtype) == (
        "static",
        3.0,
        8,
        "bfloat16",
    )
    assert cfg.max_batch_size == 4 and cfg.api_key == "k"
    assert serve_config(parser.parse_args(["serve"])) == ServeConfig()


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--prefix-cache-mb", "-1"], "--prefix-cache-mb must be >= 0"),
        (["--prefix-block-tokens", "0"], "--prefix-block-tokens >= 1"),
    ],
)
def test_bad_prefix_cache_flags_are_refused(args, msg, capsys):
    from samebits.cli import main

    assert main(["serve", *args]) == 2
    assert msg in capsys.readouterr().err
