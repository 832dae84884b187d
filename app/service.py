"""The service's operations (enroll, verify, identify) and the resources they run on.

Every method here is synchronous and CPU-bound (decode, detect, align, embed, search); the routers run them in
worker threads. They raise domain errors (`app.errors`) and `model`'s typed errors, never HTTP ones.
Decisions are made on the distance in float64 by the card's calibration (`Calibration.matches`); scores are
the calibration's Platt mapping, so `match ⇔ score ≥ threshold` holds for what is reported.
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import anyio
import numpy as np

from app.errors import BadRequest, EnrollmentRejected, ServiceError, SubjectNotFound, reason_of, status_of
from app.gallery import Comparison, Gallery, reconcile_model
from app.index import IndexParams
from app.pipeline import FaceEmbedding, FacePipeline
from app.schemas import (
    Candidate,
    EnrolledImage,
    EnrollResponse,
    FaceBox,
    FaceIdentification,
    IdentifyResponse,
    Rejection,
    Threshold,
    VerifyResponse,
)
from app.settings import Settings
from app.store import NewFace, Store, open_store
from model.artifact import load as load_artifact
from model.calibration import CalibrationError
from model.faces import Face, FaceError
from model.preprocess import ImageDecodeError

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Upload:
    """An uploaded file as read from the request: its bytes, or the error reading it hit (too large, empty)."""

    filename: str | None
    data: bytes = b""
    error: ServiceError | None = None

    def bytes_or_raise(self) -> bytes:
        if self.error is not None:
            raise self.error
        return self.data


def face_box(face: Face) -> FaceBox:
    return FaceBox.model_validate(face.to_dict())


@dataclass(frozen=True)
class OperatingPoint:
    """Where a decision is made: a calibrated FAR, a caller's score threshold, or the card's default."""

    far: float | None
    score_threshold: float
    distance_threshold: float | None
    given_score: float | None  # the caller's threshold in score units, when that is how it was chosen

    def matches(self, pipeline: FacePipeline, value: float) -> bool:
        if self.given_score is not None:
            return bool(pipeline.calibration.score(np.array([value]))[0] >= self.given_score)
        return bool(pipeline.calibration.matches(np.array([value], np.float64), self.far)[0])

    def public(self) -> Threshold:
        return Threshold(score=self.score_threshold, distance=self.distance_threshold, far=self.far)


class FaceService:
    def __init__(self, settings: Settings, pipeline: FacePipeline, gallery: Gallery) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.gallery = gallery
        self.calibration = pipeline.calibration
        # /verify with a reference photo runs the reference's pipeline here while the request's worker thread
        # runs the probe's: OpenCV and ONNX Runtime release the GIL, so on 2 cores the two photos take about
        # the time of one. Bounded like the request workers, so load cannot grow it.
        self._side = ThreadPoolExecutor(max_workers=settings.embed_concurrency, thread_name_prefix="reference")

    def close(self) -> None:
        self._side.shutdown(wait=True)

    # -------------------------------------------------------------------------------------------- common
    def operating_point(self, far: float | None = None, threshold: float | None = None) -> OperatingPoint:
        if far is not None and threshold is not None:
            raise BadRequest("give either far or threshold, not both")
        cal = self.calibration
        if threshold is not None:
            if not 0.0 <= threshold <= 1.0:
                raise BadRequest(f"threshold is a score in [0, 1], got {threshold}")
            dist = None
            if 0.0 < threshold < 1.0:  # invert the Platt mapping: score = sigmoid(a·v + b)
                dist = (math.log(threshold / (1.0 - threshold)) - cal.platt_b) / cal.platt_a
            return OperatingPoint(None, float(threshold), dist, float(threshold))
        try:
            dist_t = cal.threshold_for(far)
        except (KeyError, CalibrationError) as e:
            available = ", ".join(sorted(cal.far_thresholds, key=float, reverse=True)) or "none"
            raise BadRequest(
                f"no calibrated threshold for far={far}; this model has: {available}", code="unknown_far"
            ) from e
        return OperatingPoint(far, cal.score_threshold(far), float(dist_t), None)

    def _score(self, value: float) -> float:
        return float(self.calibration.score(np.array([value], np.float64))[0])

    def _candidate(self, c: Comparison) -> Candidate:
        return Candidate(
            subject_id=c.subject_id, score=self._score(c.value), distance=c.value, basis=c.basis, face_id=c.face_id
        )

    # -------------------------------------------------------------------------------------------- enroll
    def enroll(
        self,
        subject_id: str,
        uploads: list[Upload],
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        largest: bool = False,
    ) -> EnrollResponse:
        """Embed each image (exactly one face each, or the largest with `largest`), store the usable ones.
        Raises EnrollmentRejected when none is usable (nothing is stored then, not even a new subject)."""
        results: list[EnrolledImage] = []
        accepted: list[tuple[int, FaceEmbedding]] = []
        for i, up in enumerate(uploads):
            try:
                fe = self.pipeline.one(up.bytes_or_raise(), allow_multiple="largest" if largest else False)
            except (ServiceError, ImageDecodeError, FaceError) as e:
                code, message = reason_of(e)
                rejection = Rejection(code=code, message=message)
                results.append(EnrolledImage(index=i, filename=up.filename, rejection=rejection))
                continue
            accepted.append((i, fe))
            results.append(EnrolledImage(index=i, filename=up.filename, face=face_box(fe.face)))
        if not accepted:
            reasons = [r.rejection.code for r in results if r.rejection is not None]
            details = [r.model_dump(exclude_none=True) for r in results]
            message = f"no usable face in the {len(uploads)} image(s): {', '.join(reasons)}"
            e = EnrollmentRejected(message, reasons, details)
            LOG.info("enrollment of %r rejected (%s, status %d)", subject_id, e.code, status_of(e.code))
            raise e
        keep = self.settings.keep_crops
        faces = [
            NewFace(
                embedding=fe.embedding,
                model_id=self.pipeline.model_id,
                box=tuple(fe.face.box),  # type: ignore[arg-type]
                crop=self.pipeline.crop_png(fe.crop) if keep else None,
                crop_spec=self.pipeline.crop_spec if keep else None,
                source=uploads[i].filename,
            )
            for i, fe in accepted
        ]
        row, ids, created = self.gallery.enroll(subject_id, faces, name=name, metadata=metadata)
        for (i, _), face_id in zip(accepted, ids, strict=True):
            results[i].face_id = face_id
        return EnrollResponse(
            subject_id=subject_id, created=created, enrolled=len(ids), faces=row.face_count, images=results
        )

    # -------------------------------------------------------------------------------------------- verify
    def verify(
        self, image: Upload, subject_id: str | None = None, reference: Upload | None = None, far: float | None = None
    ) -> VerifyResponse:
        if (subject_id is None) == (reference is None):
            raise BadRequest("give exactly one of subject_id (1:1 against an enrolled subject) or reference (an image)")
        point = self.operating_point(far=far)
        if subject_id is not None and self.gallery.store.get_subject(subject_id) is None:
            raise SubjectNotFound(subject_id)  # before any image work
        probe_bytes = image.bytes_or_raise()
        pending = None
        if reference is not None:
            pending = self._side.submit(self.pipeline.one, reference.bytes_or_raise(), allow_multiple="largest")
        try:
            probe = self.pipeline.one(probe_bytes, allow_multiple="largest")
        finally:
            if pending is not None:
                wait([pending])  # no work outlives its request, even when the probe failed
        ref_face = None
        if pending is not None:
            ref = pending.result()  # raises the reference's error (the probe's, if any, was raised first)
            value = float(self.pipeline.distance.pairwise(probe.embedding[None], ref.embedding[None])[0, 0])
            basis, face_id, ref_face = "reference", None, face_box(ref.face)
        else:
            assert subject_id is not None
            c = self.gallery.compare(probe.embedding, subject_id)
            value, basis, face_id = c.value, c.basis, c.face_id
        return VerifyResponse(
            match=point.matches(self.pipeline, value),
            score=self._score(value),
            threshold=point.score_threshold,
            distance=value,
            metric=self.pipeline.distance.name,
            higher_is_closer=self.pipeline.distance.higher_is_closer,
            operating_point=point.public(),
            subject_id=subject_id,
            basis=basis,  # type: ignore[arg-type]
            face_id=face_id,
            face=face_box(probe.face),
            reference_face=ref_face,
        )

    # ------------------------------------------------------------------------------------------ identify
    def identify(
        self,
        image: Upload,
        top_k: int = 5,
        far: float | None = None,
        threshold: float | None = None,
        all_faces: bool = False,
    ) -> IdentifyResponse:
        if not 1 <= top_k <= self.settings.max_top_k:
            raise BadRequest(f"top_k must be in [1, {self.settings.max_top_k}], got {top_k}")
        point = self.operating_point(far=far, threshold=threshold)
        data = image.bytes_or_raise()
        if all_faces:
            found = self.pipeline.all(data, self.settings.max_faces_per_image)
        else:
            found = [self.pipeline.one(data, allow_multiple="largest")]
        answers = []
        for fe in found:
            candidates = [self._candidate(c) for c in self.gallery.search(fe.embedding, top_k)]
            best = candidates[0] if candidates else None
            match = best.subject_id if best is not None and point.matches(self.pipeline, best.distance) else None
            answers.append(FaceIdentification(face=face_box(fe.face), match=match, candidates=candidates))
        first = answers[0]
        return IdentifyResponse(
            match=first.match,
            candidates=first.candidates,
            face=first.face,
            threshold=point.score_threshold,
            metric=self.pipeline.distance.name,
            operating_point=point.public(),
            faces=answers if all_faces else None,
        )


# ------------------------------------------------------------------------------------------- resources


@dataclass
class Resources:
    """What the lifespan loads once and the routes share."""

    settings: Settings
    pipeline: FacePipeline
    store: Store
    gallery: Gallery
    service: FaceService
    limiter: anyio.CapacityLimiter | None = None

    def close(self) -> None:
        self.service.close()
        self.store.close()


def load_resources(settings: Settings) -> Resources:
    """Artifact → pipeline; store → (re-embed if asked) → gallery with its index. Blocking; refuses a gallery of
    another model (see `app.gallery.reconcile_model`)."""
    artifact = load_artifact(settings.artifact, threads=settings.onnx_threads)
    pipeline = FacePipeline(artifact, max_pixels=settings.max_pixels)
    url = settings.database_url.get_secret_value() if settings.database_url is not None else None
    store = open_store(settings.data_dir, url)
    try:
        reconcile_model(store, pipeline.model_id, pipeline.crop_spec, pipeline.embed_png_crops, settings.reembed)
        params = IndexParams(
            kind=settings.index,
            hnsw_m=settings.hnsw_m,
            hnsw_ef_construction=settings.hnsw_ef_construction,
            hnsw_ef_search=settings.hnsw_ef_search,
            ivf_nlist=settings.ivf_nlist,
            ivf_nprobe=settings.ivf_nprobe,
        )
        gallery = Gallery(store, pipeline.dim, pipeline.distance.name, settings.match, params, pipeline.model_id)
        gallery.load()
    except BaseException:
        store.close()
        raise
    return Resources(settings, pipeline, store, gallery, FaceService(settings, pipeline, gallery))
