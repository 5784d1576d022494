"""`GET /Device/{id}`: the model that classifies (the Task's performer device)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..context import service
from ..http import FhirResponse


async def read_device(request: Request) -> Response:
    svc = service(request)
    if request.path_params["id"] != svc.device_id:
        raise HTTPException(404, f"no Device {request.path_params['id']}")
    return FhirResponse(svc.device)


routes = [Route("/Device/{id}", read_device, methods=["GET"])]
