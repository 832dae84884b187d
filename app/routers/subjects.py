"""The enrolled subjects: list, read, delete (a subject, or one of its faces).

Plain `def` routes: FastAPI runs them in worker threads, so the store's fsyncs never block the event loop.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from app.deps import ResourcesDep, require_api_key
from app.errors import SubjectNotFound
from app.routers.common import errors
from app.schemas import SUBJECT_ID_PATTERN, Deleted, FacePublic, SubjectDetail, SubjectPublic, SubjectsPublic
from app.store import SubjectRow

router = APIRouter(prefix="/subjects", tags=["subjects"], dependencies=[Depends(require_api_key)])

# Ids as /enroll accepts them; anything else is a 400 before the store sees it (PostgreSQL refuses a NUL in text).
SubjectId = Annotated[str, Path(pattern=SUBJECT_ID_PATTERN, description="1–128 letters, digits or _ . - @")]


def _public(row: SubjectRow) -> SubjectPublic:
    return SubjectPublic(
        subject_id=row.subject_id,
        name=row.name,
        metadata=row.metadata,
        face_count=row.face_count,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


@router.get("", response_model=SubjectsPublic, responses=errors(503))
def list_subjects(
    resources: ResourcesDep,
    offset: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,  # a 64-bit integer in SQL (larger: a 400, not a 500)
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> SubjectsPublic:
    """Subjects in enrollment order, a page at a time; `count` is the total."""
    rows, total = resources.store.list_subjects(offset, limit)
    return SubjectsPublic(data=[_public(r) for r in rows], count=total, offset=offset, limit=limit)


@router.get("/{subject_id}", response_model=SubjectDetail, responses=errors(404, 503))
def get_subject(resources: ResourcesDep, subject_id: SubjectId) -> SubjectDetail:
    row = resources.store.get_subject(subject_id)
    if row is None:
        raise SubjectNotFound(subject_id)
    faces = [
        FacePublic(
            face_id=f.face_id,
            model=f.model_id,
            box=f.box,
            source=f.source,
            has_crop=f.has_crop,
            created_at=f.created_at,
        )
        for f in resources.store.faces_of(subject_id)
    ]
    return SubjectDetail(**_public(row).model_dump(), faces=faces)


@router.delete("/{subject_id}", response_model=Deleted, responses=errors(404, 503))
def delete_subject(resources: ResourcesDep, subject_id: SubjectId) -> Deleted:
    """Delete the subject: its embeddings leave the store and the index before this returns."""
    return Deleted(subject_id=subject_id, face_ids=resources.gallery.delete_subject(subject_id))


@router.delete("/{subject_id}/faces/{face_id}", response_model=Deleted, responses=errors(404, 503))
def delete_face(
    resources: ResourcesDep, subject_id: SubjectId, face_id: Annotated[int, Path(ge=1, le=2**63 - 1)]
) -> Deleted:
    """Delete one face of a subject (the subject stays, even with no face left)."""
    resources.gallery.delete_face(subject_id, face_id)
    return Deleted(subject_id=subject_id, face_ids=[face_id])
