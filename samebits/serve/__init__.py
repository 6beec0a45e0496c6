"""``samebits serve``: an OpenAI-compatible server whose answers never depend on batching."""

from samebits.serve._app import create_app
from samebits.serve._config import ServeConfig

__all__ = ["ServeConfig", "create_app", "serve"]


def serve(config: ServeConfig) -> None:
    """Load the model and run the server until SIGINT/SIGTERM (in-flight requests drain)."""
    import logging
    import sys

    import uvicorn

    from samebits.serve._engines import load_engine

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("samebits.serve")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    engine = load_engine(config.model, config.dtype)
    app = create_app(engine, config)
    log.info(
        '{"event": "listening", "host": "%s", "port": %d, "model": "%s", "kind": "%s"}',
        config.host,
        config.port,
        engine.name,
        engine.kind,
    )
    cfg = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=config.drain_timeout_s,
    )
    _Server(cfg).run()
    # here, off the event loop: the lifespan told the worker to stop after the queue
    batcher = app.state.batcher
    batcher.stop(timeout=max(1.0, config.drain_timeout_s))
    log.info('{"event": "stopped", "batches": %d}', batcher.batches)


def _server_class():
    import contextlib

    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            with super().capture_signals():
                yield
                # requests drained: exit 0 rather than re-raising SIGTERM/SIGINT
                self._captured_signals.clear()

    return Server


def _Server(cfg):  # noqa: N802 - reads as a class at the call site
    return _server_class()(cfg)
