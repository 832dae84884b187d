"""What several routers share: the error responses they document, running work off the event loop."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import anyio

from app.schemas import ErrorResponse
from app.service import Resources

T = TypeVar("T")


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses (all with the one error shape)."""
    text = {
        404: "Unknown subject or face",
        409: "The subject has no face left",
        413: "Image too large (bytes or pixels) or request too large",
        415: "Not an image this service reads",
        422: "No usable face (no_face, multiple_faces, face_too_small)",
        503: "Model or gallery not loaded",
    }
    return {s: {"model": ErrorResponse, "description": text.get(s, "Error")} for s in statuses}


async def off_loop(resources: Resources, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run CPU work (decode, detect, embed, search) in a worker thread, at most `embed_concurrency` at once."""
    return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs), limiter=resources.limiter)
