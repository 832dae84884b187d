"""POST /enroll: create a subject or add faces to it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Response, UploadFile

from app.deps import ResourcesDep, SettingsDep, read_upload, require_api_key
from app.errors import BadRequest
from app.routers.common import errors, off_loop
from app.schemas import SUBJECT_ID_PATTERN, EnrollResponse

router = APIRouter(tags=["enroll"], dependencies=[Depends(require_api_key)])


def _strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value, object keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def check_text(field: str, *values: str) -> None:
    """Refuse NUL characters and unpaired surrogates (JSON's \\u0000, \\ud800): PostgreSQL's text and jsonb cannot
    hold them, and no answer could carry them back as UTF-8. The same 400 whatever the backend."""
    for v in values:
        if "\x00" in v or (not v.isascii() and v.encode("utf-8", "surrogatepass").decode("utf-8", "replace") != v):
            raise BadRequest(f"{field} holds a NUL character or invalid Unicode")


def parse_metadata(text: str | None, limit: int) -> dict[str, Any] | None:
    if text is None or text == "":
        return None
    if len(text.encode("utf-8", "surrogatepass")) > limit:
        raise BadRequest(f"metadata is over {limit} bytes")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadRequest(f"metadata is not valid JSON: {e.msg} at {e.pos}") from e
    if not isinstance(value, dict):
        raise BadRequest(f"metadata must be a JSON object, got {type(value).__name__}")
    check_text("metadata", *_strings(value))
    return value


@router.post(
    "/enroll",
    response_model=EnrollResponse,
    status_code=201,
    responses={
        200: {"model": EnrollResponse, "description": "Faces added to an existing subject"},
        **errors(413, 415, 422, 503),
    },
)
async def enroll(
    resources: ResourcesDep,
    settings: SettingsDep,
    response: Response,
    subject_id: Annotated[
        str, Form(pattern=SUBJECT_ID_PATTERN, description="1–128 letters, digits or _ . - @", examples=["alice"])
    ],
    images: Annotated[list[UploadFile], File(description="One or more photos, each of one face")],
    name: Annotated[str | None, Form(max_length=256, description="Display name (kept, never matched on)")] = None,
    metadata: Annotated[str | None, Form(description="A JSON object stored with the subject")] = None,
    largest: Annotated[
        bool, Form(description="Use the largest face of a photo with several, instead of rejecting it")
    ] = False,
) -> EnrollResponse:
    """Enroll faces for `subject_id` (created if new). Each image must hold exactly one usable face (or, with
    `largest`, the largest is used); the answer gives each image's `face_id` or its rejection. When no image is
    usable nothing is stored and the request fails (with the shared reason's status when all agree, else 422)."""
    if len(images) > settings.max_images_per_request:
        raise BadRequest(f"at most {settings.max_images_per_request} images per request, got {len(images)}")
    meta = parse_metadata(metadata, settings.max_metadata_bytes)
    if name is not None:
        check_text("name", name)
    uploads = [await read_upload(f, settings.max_upload_bytes) for f in images]
    result = await off_loop(resources, resources.service.enroll, subject_id, uploads, name, meta, largest)
    response.status_code = 201 if result.created else 200
    return result
