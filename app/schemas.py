"""Request and response bodies of the API (the OpenAPI schema at /docs), apart from the store's rows.

Responses never carry embeddings, crops or file paths. Scores are in [0, 1], higher = same person; distances
are in the card's distance units (`metric`; cosine is a similarity, so there higher is closer).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field

SUBJECT_ID_PATTERN = r"^[A-Za-z0-9_.@-]{1,128}$"
SUBJECT_ID_RE = re.compile(SUBJECT_ID_PATTERN)


class ErrorDetail(BaseModel):
    code: str = Field(examples=["no_face"])
    message: str
    details: Any | None = None


class ErrorResponse(BaseModel):
    """Every error of the service has this shape."""

    error: ErrorDetail


class FaceBox(BaseModel):
    """A detected face in the uploaded image's pixels (after its EXIF orientation)."""

    box: tuple[int, int, int, int] = Field(description="x, y, width, height")
    score: float = Field(description="The detector's confidence (its own scale)")
    landmarks: dict[str, tuple[float, float]] = Field(default_factory=dict)
    image_size: tuple[int, int] = Field(description="width, height")
    detector: str


class Rejection(BaseModel):
    code: str = Field(examples=["no_face", "multiple_faces", "face_too_small", "undecodable"])
    message: str


class EnrolledImage(BaseModel):
    """One uploaded image of an enrollment: its new face id, or why it was rejected."""

    index: int = Field(description="Position of the image in the request, from 0")
    filename: str | None = None
    face_id: int | None = None
    face: FaceBox | None = None
    rejection: Rejection | None = None


class EnrollResponse(BaseModel):
    subject_id: str
    created: bool = Field(description="Whether this request created the subject")
    enrolled: int = Field(description="Faces added by this request")
    faces: int = Field(description="The subject's faces now")
    images: list[EnrolledImage]


class Threshold(BaseModel):
    """The operating point a decision was made at."""

    score: float = Field(description="Threshold in score units: match ⇔ score ≥ this")
    distance: float | None = Field(description="The same threshold in the card's distance units")
    far: float | None = Field(description="The false-accept rate it was calibrated for; null: the default threshold")


class VerifyResponse(BaseModel):
    match: bool
    score: float = Field(ge=0.0, le=1.0, description="Higher = more likely the same person")
    threshold: float = Field(description="In score units: match ⇔ score ≥ threshold")
    distance: float = Field(description="In the card's distance units (`metric`)")
    metric: str
    higher_is_closer: bool
    operating_point: Threshold
    subject_id: str | None = None
    basis: Literal["face", "mean", "reference"] = Field(
        description="What the probe was compared with: the subject's closest face, its mean embedding, or the "
        "reference image"
    )
    face_id: int | None = Field(None, description="The subject's closest face, when basis is 'face'")
    face: FaceBox
    reference_face: FaceBox | None = None


class Candidate(BaseModel):
    subject_id: str
    score: float
    distance: float
    basis: Literal["face", "mean"]
    face_id: int | None = None


class FaceIdentification(BaseModel):
    face: FaceBox
    match: str | None = Field(description="The best subject if it reaches the threshold, else null (unknown)")
    candidates: list[Candidate]


class IdentifyResponse(BaseModel):
    match: str | None = Field(description="Best subject for the (largest) face, or null: unknown")
    candidates: list[Candidate] = Field(description="Best first")
    face: FaceBox
    threshold: float = Field(description="In score units")
    metric: str
    operating_point: Threshold
    faces: list[FaceIdentification] | None = Field(
        None, description="With all_faces=true: every usable face, largest first (the first is the one above)"
    )


class SubjectPublic(BaseModel):
    subject_id: str
    name: str | None
    metadata: dict[str, Any]
    face_count: int
    created_at: str
    updated_at: str


class SubjectsPublic(BaseModel):
    data: list[SubjectPublic]
    count: int = Field(description="All subjects, not only this page")
    offset: int
    limit: int


class FacePublic(BaseModel):
    face_id: int
    model: str = Field(description="The model that made its embedding")
    box: tuple[int, int, int, int] | None
    source: str | None = Field(description="The uploaded file name")
    has_crop: bool
    created_at: str


class SubjectDetail(SubjectPublic):
    faces: list[FacePublic]


class Deleted(BaseModel):
    subject_id: str
    face_ids: list[int] = Field(description="Faces removed from the store and the index")


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    status: Literal["ready"] = "ready"
    model: str
    subjects: int
    faces: int
    index_size: int
    index: dict[str, str]
    match: str
