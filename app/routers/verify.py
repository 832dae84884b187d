"""POST /verify: is this the same person (as an enrolled subject, or as a reference photo)?"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, UploadFile

from app.deps import ResourcesDep, SettingsDep, read_upload, require_api_key
from app.routers.common import errors, off_loop
from app.schemas import SUBJECT_ID_PATTERN, VerifyResponse

router = APIRouter(tags=["verify"], dependencies=[Depends(require_api_key)])


@router.post("/verify", response_model=VerifyResponse, responses=errors(404, 409, 413, 415, 422, 503))
async def verify(
    resources: ResourcesDep,
    settings: SettingsDep,
    image: Annotated[UploadFile, File(description="The photo to check (its largest face is used)")],
    subject_id: Annotated[
        str | None, Form(pattern=SUBJECT_ID_PATTERN, description="Compare with this enrolled subject")
    ] = None,
    reference: Annotated[UploadFile | None, File(description="…or with the largest face of this photo")] = None,
    far: Annotated[
        float | None,
        Form(gt=0, lt=1, description="Use the card's threshold for this false-accept rate (e.g. 0.001)"),
    ] = None,
) -> VerifyResponse:
    """1:1 verification. Exactly one of `subject_id` and `reference`. `match` is decided on the distance at the
    card's calibrated threshold (default, or the one for `far`); `score` and `threshold` are the same decision
    in [0, 1] units (match ⇔ score ≥ threshold)."""
    probe = await read_upload(image, settings.max_upload_bytes)
    ref = await read_upload(reference, settings.max_upload_bytes) if reference is not None else None
    return await off_loop(resources, resources.service.verify, probe, subject_id, ref, far)
