"""Domain errors, and the one place that maps every error to an HTTP response.

Services raise the errors below (or `model`'s own typed errors: image decoding, faces, calibration); none of
them knows about HTTP. `install_error_handlers` turns each into `{"error": {"code", "message"[, "details"]}}` with
its status, so every response of the service has that shape, validation and unknown routes included. Anything
unexpected becomes a 500 with a generic message (the traceback goes to the log, never to the client).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from model.faces import FaceError
from model.preprocess import ImageDecodeError, ImageTooLargeError

LOG = logging.getLogger(__name__)


class ServiceError(Exception):
    """Base of the service's domain errors. `code` is machine-readable; the message is for people."""

    code = "service_error"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.details = details


class BadRequest(ServiceError):
    """The request is malformed (a field out of range, contradictory fields)."""

    code = "bad_request"

    def __init__(self, message: str, code: str | None = None, details: Any = None) -> None:
        super().__init__(message, details)
        if code:
            self.code = code


class EmptyFile(BadRequest):
    code = "empty_file"


class FileTooLarge(ServiceError):
    """An uploaded file has more bytes than allowed."""

    code = "file_too_large"


class RequestTooLarge(ServiceError):
    code = "request_too_large"


class Unauthorized(ServiceError):
    code = "unauthorized"


class Forbidden(ServiceError):
    code = "forbidden"


class SubjectNotFound(ServiceError):
    code = "subject_not_found"

    def __init__(self, subject_id: str) -> None:
        super().__init__(f"no enrolled subject {subject_id!r}")
        self.subject_id = subject_id


class FaceNotFound(ServiceError):
    code = "face_not_found"

    def __init__(self, subject_id: str, face_id: int) -> None:
        super().__init__(f"subject {subject_id!r} has no face {face_id}")


class SubjectHasNoFaces(ServiceError):
    code = "subject_has_no_faces"

    def __init__(self, subject_id: str) -> None:
        super().__init__(f"subject {subject_id!r} has no enrolled face left to compare with")


class EnrollmentRejected(ServiceError):
    """No image of an enrollment was usable; `details` lists each image's rejection. `status_code_of` picks the
    status of the shared reason when all images failed for the same one, else 422."""

    code = "no_usable_image"

    def __init__(self, message: str, reasons: list[str], details: Any) -> None:
        super().__init__(message, details)
        self.reasons = reasons
        if len(set(reasons)) == 1:
            self.code = reasons[0]


class NotReady(ServiceError):
    code = "not_ready"


class GalleryError(ServiceError):
    """The gallery cannot be opened as it is (start-up only: never reaches a client)."""

    code = "gallery_error"


class ModelMismatch(GalleryError):
    """The gallery holds embeddings of another model and re-embedding was not asked for (or is impossible)."""

    code = "model_mismatch"


# ------------------------------------------------------------------------------------------- HTTP mapping

# Reason codes (of ours and of `model`'s typed errors) -> status. Per-image rejections in /enroll use the same
# codes, so an all-rejected enrollment answers with the status its reason would have on /verify.
STATUS_BY_CODE: dict[str, int] = {
    "bad_request": 400,
    "invalid_request": 400,
    "empty_file": 400,
    "unknown_far": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "subject_not_found": 404,
    "face_not_found": 404,
    "not_found": 404,
    "method_not_allowed": 405,
    "subject_has_no_faces": 409,
    "file_too_large": 413,
    "request_too_large": 413,
    ImageTooLargeError.code: 413,
    ImageDecodeError.code: 415,
    "no_usable_image": 422,
    "no_face": 422,
    "multiple_faces": 422,
    "face_too_small": 422,
    "face_error": 422,
    "not_ready": 503,
    "store_unavailable": 503,
}


def status_of(code: str) -> int:
    """The HTTP status of a reason code; any face-related code (`model.faces` may add some) is a 422."""
    if code in STATUS_BY_CODE:
        return STATUS_BY_CODE[code]
    return 422 if code.startswith(("face", "no_face")) else 400


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        err["details"] = details
    return {"error": err}


def reason_of(exc: Exception) -> tuple[str, str]:
    """(code, message) for any error a client's input can cause; used for per-image rejections too."""
    if isinstance(exc, ServiceError | ImageDecodeError | FaceError):
        return exc.code, str(exc)
    raise TypeError(f"not a client error: {type(exc).__name__}") from exc


def error_response(code: str, message: str, details: Any = None, status: int | None = None) -> JSONResponse:
    status = status or status_of(code)
    headers = {"WWW-Authenticate": "ApiKey"} if status == 401 else None
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 413: "request_too_large", 415: "unsupported_media_type"}  # fmt: skip


def _store_outage(exc: Exception) -> bool:
    """A lost or refused PostgreSQL connection (psycopg is only imported where PostgreSQL is used)."""
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(exc, psycopg.OperationalError)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error response the same shape."""

    async def domain(_: Request, exc: Exception) -> JSONResponse:
        code, message = reason_of(exc)
        return error_response(code, message, getattr(exc, "details", None))

    async def validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path", "form"))
            problems.append(f"{where or 'request'}: {e.get('msg', 'invalid')}")
        return error_response("invalid_request", "; ".join(problems) or "malformed request", status=400)

    async def http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        # Starlette's own messages (e.g. "There was an error parsing the body") carry no client data.
        return error_response(code, str(exc.detail), status=exc.status_code)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        if _store_outage(exc):  # transient: the client may retry (the store reconnects at its next call)
            LOG.warning("gallery database unavailable on %s %s: %s", request.method, request.url.path, exc)
            return error_response("store_unavailable", "the gallery database is unavailable: retry", status=503)
        LOG.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response("internal_error", "internal error", status=500)

    for cls in (ServiceError, ImageDecodeError, FaceError):
        app.add_exception_handler(cls, domain)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http)
    app.add_exception_handler(Exception, unexpected)
