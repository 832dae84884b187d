"""FastAPI dependencies: settings, the loaded resources, API-key auth, and reading uploads within limits.

Tests override `get_settings` (or pass `create_app(settings)`); the lifespan resolves the settings through the
same override, so a test's settings reach both the routes and the resources.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Request, Security, UploadFile
from fastapi.security import APIKeyHeader

from app.errors import EmptyFile, FileTooLarge, Forbidden, NotReady, Unauthorized
from app.service import FaceService, Resources, Upload
from app.settings import Settings, get_settings

SettingsDep = Annotated[Settings, Depends(get_settings)]


def resolve_settings(app: FastAPI) -> Settings:
    """The settings the app's routes get: `get_settings` or its override."""
    return app.dependency_overrides.get(get_settings, get_settings)()


def get_resources(request: Request) -> Resources:
    resources = getattr(request.app.state, "resources", None)
    if resources is None:
        raise NotReady("the model and the gallery are not loaded")
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


def get_service(resources: ResourcesDep) -> FaceService:
    return resources.service


ServiceDep = Annotated[FaceService, Depends(get_service)]

_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="One of SIAMFACE_API_KEYS")


def require_api_key(settings: SettingsDep, key: Annotated[str | None, Security(_api_key)] = None) -> None:
    """401 without a key, 403 with a wrong one; keys compared in constant time and never logged."""
    if not settings.auth_required:
        return
    if not key:
        raise Unauthorized("an API key is required in the X-API-Key header")
    if not settings.key_accepted(key):
        raise Forbidden("the API key is not valid")


async def read_upload(file: UploadFile, limit: int) -> Upload:
    """An uploaded file's bytes, at most `limit` of them read; an empty or larger file becomes the Upload's error
    (an enrollment reports it per image, verify and identify raise it)."""
    # The client's file name is stored (`source`) and echoed: without NULs or unpaired surrogates, which neither
    # PostgreSQL nor a UTF-8 answer can carry.
    name = file.filename
    if name is not None:
        name = name.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    data = await file.read(limit + 1)
    if len(data) > limit:
        return Upload(name, error=FileTooLarge(f"{name or 'the file'} is over {limit} bytes"))
    if not data:
        return Upload(name, error=EmptyFile(f"{name or 'the file'} is empty"))
    return Upload(name, data)
