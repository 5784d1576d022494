"""`GET /Observation` and `GET /Observation/{id}`: the labels of finished Tasks."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...fhir import ig
from ..context import service
from ..http import FhirResponse, page_size


async def read_observation(request: Request) -> Response:
    obs = service(request).store.observations.get(request.path_params["id"])
    if obs is None:
        raise HTTPException(404, f"no Observation {request.path_params['id']}")
    return FhirResponse(obs)


async def search_observations(request: Request) -> Response:
    svc = service(request)
    codes = {
        s.split("|")[-1] for v in request.query_params.getlist("code") for s in v.split(",") if s
    } or None
    found = svc.store.search_observations(codes, page_size(request))
    return FhirResponse(ig.searchset(found, svc.base_url(request)))


routes = [
    Route("/Observation", search_observations, methods=["GET"]),
    Route("/Observation/{id}", read_observation, methods=["GET"]),
]
