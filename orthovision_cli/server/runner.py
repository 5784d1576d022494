"""Running an ASGI app with uvicorn: in the foreground (`orthovision serve`) or in a thread
on an ephemeral port (tests, benchmarks, `conformance --self`)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any


def _server(app: Any, **options: Any) -> Any:
    import uvicorn

    svc = getattr(getattr(app, "state", None), "service", None)
    cfg = getattr(svc, "cfg", None)
    if cfg is not None and hasattr(cfg, "header_timeout"):
        from .guard import guarded_protocol

        # Idle and slow clients are timed out and evicted instead of counted against a limit
        # that would answer everybody else 503.
        options.pop("limit_concurrency", None)
        options.setdefault("http", guarded_protocol(cfg.header_timeout, cfg.max_connections))
        options.setdefault("timeout_keep_alive", cfg.keepalive_timeout)
    config = uvicorn.Config(app, log_level=options.pop("log_level", "warning"), lifespan="on", **options)
    return uvicorn.Server(config)


@contextlib.contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0, **options: Any) -> Iterator[str]:
    """Serve `app` on host:port (0: any free port) until the block ends; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    server = _server(app, **options)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


def serve_forever(app: Any, host: str, port: int, **options: Any) -> None:
    _server(app, host=host, port=port, **options).run()
