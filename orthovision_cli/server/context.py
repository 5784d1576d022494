"""What the routes of one running service share: its configuration, store, worker pool, model
Device and CapabilityStatement. `create_app` builds one; each route reads it from the request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from ..vocab.tags import Tag
from .config import ServerConfig
from .store import Store
from .workers import WorkerPool


@dataclass
class Service:
    cfg: ServerConfig
    store: Store
    pool: WorkerPool
    device_id: str
    device: dict[str, Any]
    capability: dict[str, Any]
    supported: frozenset[Tag]
    base_path: str = ""

    def base_url(self, request: Request) -> str:
        return str(request.base_url).rstrip("/") + self.base_path


def service(request: Request) -> Service:
    svc = request.app.state.service
    assert isinstance(svc, Service)
    return svc
