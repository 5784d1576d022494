"""`GET /metadata`: the CapabilityStatement (the one route open without a token)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..context import service
from ..http import FhirResponse


async def metadata(request: Request) -> Response:
    return FhirResponse(service(request).capability)


routes = [Route("/metadata", metadata, methods=["GET"])]
