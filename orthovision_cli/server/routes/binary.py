"""`GET /Binary/{id}`: a submitted image while its Task runs; 410 once the Task has ended and
the image was deleted."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...fhir import bundles
from ..context import service
from ..http import FhirResponse


async def read_binary(request: Request) -> Response:
    store = service(request).store
    bid = request.path_params["id"]
    data = store.binaries.get(bid)
    if data is None:
        if bid in store.gone:
            raise HTTPException(410, f"Binary {bid} was deleted when its Task ended")
        raise HTTPException(404, f"no Binary {bid}")
    rec = next((r for r in store.tasks.values() if r.binary_id == bid), None)
    ctype = rec.content_type if rec else "application/octet-stream"
    return FhirResponse(bundles.binary(bid, ctype, data))


routes = [Route("/Binary/{id}", read_binary, methods=["GET"])]
