"""A 500 tells the client an error id and nothing of the exception; the traceback
goes to the server log under that id. The app is served in-process over ASGI."""

import logging

import pytest

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from samebits.serve import ServeConfig, create_app  # noqa: E402


class Broken:
    kind, name, max_tokens = "embeddings", "broken", 8

    def prepare(self, text):
        raise RuntimeError("/srv/secret/path leaked")

    def run(self, items):
        return items


def test_500_carries_an_error_id_and_no_internals(caplog):
    app = create_app(Broken(), ServeConfig(model="broken"))
    with caplog.at_level(logging.ERROR, logger="samebits.serve"):
        with TestClient(app, raise_server_exceptions=False) as c:
            r = c.post("/v1/embeddings", json={"input": "x"})
    assert r.status_code == 500
    err = r.json()["error"]
    assert "secret" not in r.text and "RuntimeError" not in r.text
    assert err["type"] == "server_error" and "error id" in err["message"]
    error_id = err["message"].split("error id ")[1].split(";")[0]
    assert error_id in caplog.text and "/srv/secret/path leaked" in caplog.text
