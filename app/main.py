"""The FastAPI application factory. Importing this module has no side effects: nothing is read, loaded or
opened until `create_app()` is called and its lifespan starts.

    uvicorn --factory app.main:create_app       # or: siamface serve
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from starlette.types import Scope

from app import __doc__ as package_doc
from app.deps import resolve_settings
from app.errors import install_error_handlers
from app.gallery import GalleryFollower
from app.metrics import Metrics, MetricsMiddleware
from app.middleware import BodyLimit
from app.routers import console, enroll, identify, subjects, system, verify
from app.schemas import ErrorResponse
from app.service import load_resources
from app.settings import Settings, get_settings

LOG = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the model and the gallery (off the event loop), follow the store's changes while serving (writes made
    by other replicas or the CLI), then stop following and close the store."""
    settings = resolve_settings(app)
    settings.check_serving()
    app.state.settings = settings
    resources = await anyio.to_thread.run_sync(load_resources, settings)
    resources.limiter = anyio.CapacityLimiter(settings.embed_concurrency)
    app.state.resources = resources
    LOG.info(
        "serving %s: %s gallery %s, match %s, index %s, auth %s",
        resources.pipeline.model_id,
        settings.store_backend,
        resources.gallery.sizes(),
        settings.match,
        resources.gallery.index_kinds(),
        "on" if settings.auth_required else "OFF (development)",
    )
    follower = GalleryFollower(resources.gallery, settings.sync_interval)
    follower.start()
    try:
        yield
    finally:
        follower.stop()
        app.state.resources = None
        resources.close()


def _body_limit(scope: Scope) -> int | None:
    settings = getattr(scope["app"].state, "settings", None)
    return settings.max_request_bytes if settings is not None else None


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new app. `settings` overrides `get_settings` for this app (tests, embedding); by default they come
    from the environment (SIAMFACE_*) when the app starts."""
    app = FastAPI(
        title="siamface",
        summary="Self-hosted face verification and identification",
        description=package_doc or "",
        version="0.1.0",
        lifespan=lifespan,
        responses={
            400: {"model": ErrorResponse, "description": "Malformed request"},
            401: {"model": ErrorResponse, "description": "No API key"},
            403: {"model": ErrorResponse, "description": "Wrong API key"},
        },
    )
    if settings is not None:
        app.dependency_overrides[get_settings] = lambda: settings
    app.state.settings = None
    app.state.resources = None
    metrics = Metrics()
    app.state.metrics = metrics
    metrics.watch_gallery(lambda: app.state.resources.gallery.sizes() if app.state.resources else None)
    install_error_handlers(app)
    for router in (enroll.router, verify.router, identify.router, subjects.router, system.router, console.router):
        app.include_router(router)
    app.add_middleware(BodyLimit, limit=_body_limit)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: times everything, 413s included
    return app
