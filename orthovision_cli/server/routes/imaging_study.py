"""`GET /ImagingStudy/{id}`: the study a submission named (its modality), subject masked."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...fhir import bundles
from ..context import service
from ..http import FhirResponse


async def read_study(request: Request) -> Response:
    store = service(request).store
    sid = request.path_params["id"]
    if sid in store.studies:
        return FhirResponse(bundles.imaging_study(sid, store.studies[sid]))
    if sid in store.gone:
        raise HTTPException(410, f"ImagingStudy {sid} was deleted when its Task ended")
    raise HTTPException(404, f"no ImagingStudy {sid}")


routes = [Route("/ImagingStudy/{id}", read_study, methods=["GET"])]
