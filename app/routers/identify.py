"""POST /identify: who is this, among the enrolled subjects?"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, UploadFile

from app.deps import ResourcesDep, SettingsDep, read_upload, require_api_key
from app.routers.common import errors, off_loop
from app.schemas import IdentifyResponse

router = APIRouter(tags=["identify"], dependencies=[Depends(require_api_key)])


@router.post("/identify", response_model=IdentifyResponse, responses=errors(413, 415, 422, 503))
async def identify(
    resources: ResourcesDep,
    settings: SettingsDep,
    image: Annotated[UploadFile, File(description="The photo (its largest face, or every face with all_faces)")],
    top_k: Annotated[int, Form(ge=1, description="How many candidates to return")] = 5,
    far: Annotated[float | None, Form(gt=0, lt=1, description="Threshold for this false-accept rate")] = None,
    threshold: Annotated[float | None, Form(ge=0, le=1, description="…or this score threshold")] = None,
    all_faces: Annotated[bool, Form(description="Answer for every usable face of the photo")] = False,
) -> IdentifyResponse:
    """1:N identification: the `top_k` closest subjects, best first, and `match`, the best one when it reaches
    the threshold (the card's default, the one for `far`, or `threshold` in score units), else null (unknown)."""
    probe = await read_upload(image, settings.max_upload_bytes)
    return await off_loop(resources, resources.service.identify, probe, top_k, far, threshold, all_faces)
