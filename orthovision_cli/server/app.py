"""The reference Orthovision AI IG service as a Starlette ASGI app (optional extra `[server]`).

`create_app(classifier, config)` returns the app; `orthovision serve` runs it with uvicorn, tests
run it on an ephemeral port. Submissions are checked (OrthovisionAIBundle), answered at once with
the transaction response (Task `in-progress`), and classified by a bounded worker pool.

Each FHIR resource has its module under `routes/`; what they share (store, pool, configuration)
is one `context.Service` on the app's state.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Mount

from .. import __version__
from ..fhir import ig
from ..labels.model import LabelSource
from ..memory import release_free_heap
from ..vocab.tags import normalise_tag
from .config import ServerConfig, classifier_tags
from .context import Service
from .http import BearerAuth, HostGuard, crash, http_error
from .routes import binary, bundle, device, imaging_study, metadata, observation, stats, task
from .store import Store
from .workers import WorkerPool

TRIM_SECONDS = 2.0  # how often the service hands freed heap pages back

RESOURCES = (metadata, bundle, task, observation, binary, imaging_study, device, stats)


def create_app(
    classifier: LabelSource | Any, config: ServerConfig | None = None, *, base_path: str = ""
) -> Starlette:
    cfg = config or ServerConfig()
    tags = classifier_tags(classifier, cfg.tags)
    model_name = str(getattr(classifier, "name", None) or cfg.model_name)
    model_version = str(getattr(classifier, "version", None) or cfg.model_version)
    device_id = "model-" + "".join(ch if ch.isalnum() else "-" for ch in model_name)[:40]
    store = Store(retention=cfg.retention, device_id=device_id)
    svc = Service(
        cfg=cfg,
        store=store,
        pool=WorkerPool(classifier, store, workers=cfg.workers, queue_size=cfg.queue_size),
        device_id=device_id,
        device=ig.device(device_id, name=model_name, version=model_version),
        capability=ig.capability_statement(tags, software_version=__version__, auth=bool(cfg.token)),
        supported=frozenset(t for name in tags if (t := normalise_tag(name))),
        base_path=base_path,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async def sweeper() -> None:
            while True:
                await asyncio.sleep(max(0.05, min(30.0, cfg.retention / 4)))
                store.sweep()

        async def trimmer() -> None:
            # Pages freed after a burst of large bodies go back to the system within seconds.
            while release_free_heap():
                await asyncio.sleep(TRIM_SECONDS)

        sweep = asyncio.create_task(sweeper())
        trim = asyncio.create_task(trimmer())
        try:
            yield
        finally:
            sweep.cancel()
            trim.cancel()
            await run_in_threadpool(svc.pool.close)

    routes: list[BaseRoute] = [r for module in RESOURCES for r in module.routes]
    if base_path:
        routes = [Mount(base_path, routes=routes)]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, Exception: crash},
        lifespan=lifespan,
    )
    app.state.service = svc
    app.state.store = store
    app.state.pool = svc.pool
    app.state.device_id = device_id
    if cfg.token:
        app.add_middleware(BearerAuth, token=cfg.token)
    # Outermost (added last): a foreign Host or Origin is refused before the token is asked.
    app.add_middleware(HostGuard, allow_hosts=tuple(cfg.allow_hosts))
    return app
