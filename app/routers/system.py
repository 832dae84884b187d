"""Operations: liveness, readiness, Prometheus metrics, and the model card."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.deps import ResourcesDep, require_api_key
from app.routers.common import errors
from app.schemas import Health, Ready

router = APIRouter(tags=["system"])


@router.get("/health", response_model=Health)
def health() -> Health:
    """The process is up (says nothing about the model: see /ready)."""
    return Health()


@router.get("/ready", response_model=Ready, responses=errors(503))
def ready(resources: ResourcesDep) -> Ready:
    """The model and the gallery are loaded; 503 otherwise."""
    g = resources.gallery
    sizes = g.sizes()
    return Ready(
        model=resources.pipeline.model_id,
        subjects=sizes["subjects"],
        faces=sizes["faces"],
        index_size=sizes["index_size"],
        index=g.index_kinds(),
        match=g.match,
    )


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(request: Request) -> Response:
    """Prometheus text format: requests and latencies by route and status, faces enrolled, index size."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/model", dependencies=[Depends(require_api_key)], responses=errors(503))
def model_card(resources: ResourcesDep) -> dict[str, Any]:
    """The loaded model's card (the contract: preprocessing, distance, calibrated thresholds, metrics, data)."""
    card = dataclasses.asdict(resources.pipeline.artifact.card)
    return {"model_id": resources.pipeline.model_id, "card": card}
