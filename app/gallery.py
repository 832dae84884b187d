"""The enrolled faces in memory: the store's embeddings by subject, and the FAISS index (or two) over them.

The store is the truth; `Gallery.load` rebuilds everything here from it. Mutations write the store first
(committed, durable), then update memory, both under the gallery's lock, so a search never sees a face the
store does not have, and a delete is gone from the store and the index together when it returns.

How a subject with several faces is compared with a probe (`Settings.match`):
  - "faces": the subject's closest enrolled face (index over every face);
  - "mean": the subject's mean embedding (mean of the L2-normalised faces for cosine; index over subjects);
  - "both": the closer of the two (both indexes; candidates from either, re-scored exactly).
Candidates found by the index are re-scored exactly from the vectors kept here, so /identify and /verify
report the same value for the same probe and subject, whatever the index kind.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from app.errors import FaceNotFound, ModelMismatch, SubjectHasNoFaces, SubjectNotFound
from app.index import IndexParams, VectorIndex
from app.store import NewFace, Store, SubjectRow
from model import distances

LOG = logging.getLogger(__name__)

Basis = Literal["face", "mean"]


@dataclass
class _Subject:
    pk: int
    subject_id: str
    face_ids: list[int] = field(default_factory=list)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32), repr=False)


@dataclass(frozen=True)
class Comparison:
    """A probe against one subject. value: in the card's distance units (see `model.distances`); basis: whether
    it came from one of the subject's faces (`face_id`) or from its mean embedding."""

    subject_id: str
    value: float
    basis: Basis
    face_id: int | None


class Gallery:
    def __init__(self, store: Store, dim: int, distance: str, match: str, index: IndexParams) -> None:
        if match not in ("faces", "mean", "both"):
            raise ValueError(f"match must be 'faces', 'mean' or 'both', got {match!r}")
        self.store = store
        self.dim = dim
        self.distance = distances.get(distance)
        self.match = match
        self.index_params = index
        self._lock = threading.RLock()
        self._subjects: dict[int, _Subject] = {}
        self._pk: dict[str, int] = {}
        self._face_owner: dict[int, int] = {}  # face id -> subject pk
        self._faces = VectorIndex(dim, distance, index) if match in ("faces", "both") else None
        self._means = VectorIndex(dim, distance, index) if match in ("mean", "both") else None

    # ------------------------------------------------------------------------------------------ loading
    def load(self) -> None:
        """Rebuild memory and indexes from the store."""
        with self._lock:
            self._subjects.clear()
            self._pk.clear()
            self._face_owner.clear()
            rows: dict[int, list[np.ndarray]] = {}
            for batch in self.store.iter_embeddings():
                for e in batch:
                    if e.vector.size != self.dim:
                        raise ModelMismatch(f"face {e.face_id} has a {e.vector.size}-d embedding, the model {self.dim}")
                    s = self._subjects.get(e.subject_pk)
                    if s is None:
                        s = self._subjects[e.subject_pk] = _Subject(e.subject_pk, e.subject_id)
                        self._pk[e.subject_id] = e.subject_pk
                        rows[e.subject_pk] = []
                    s.face_ids.append(e.face_id)
                    self._face_owner[e.face_id] = e.subject_pk
                    rows[e.subject_pk].append(e.vector)
            for pk, vectors in rows.items():
                self._subjects[pk].vectors = np.stack(vectors).astype(np.float32)
            self._rebuild_indexes()
            LOG.info("gallery loaded: %d subjects with faces, %d faces", len(self._subjects), self.face_count)

    def _rebuild_indexes(self) -> None:
        if self._faces is not None:
            ids = [i for s in self._subjects.values() for i in s.face_ids]
            vecs = [s.vectors for s in self._subjects.values() if len(s.face_ids)]
            self._faces.build(np.array(ids, np.int64), np.vstack(vecs) if vecs else np.zeros((0, self.dim)))
        if self._means is not None:
            live = [s for s in self._subjects.values() if len(s.face_ids)]
            means = np.stack([self._mean(s) for s in live]) if live else np.zeros((0, self.dim))
            self._means.build(np.array([s.pk for s in live], np.int64), means)

    def _maybe_rebuild(self) -> None:
        if any(ix is not None and ix.needs_rebuild for ix in (self._faces, self._means)):
            self._rebuild_indexes()

    # ---------------------------------------------------------------------------------------- mutations
    def enroll(
        self, subject_id: str, faces: Sequence[NewFace], name: str | None, metadata: dict[str, Any] | None
    ) -> tuple[SubjectRow, list[int], bool]:
        """Store the faces (durably), then add them to memory and the index. Returns the subject, the face ids
        and whether the subject was created."""
        vectors = np.stack([np.asarray(f.embedding, np.float32).reshape(self.dim) for f in faces]) if faces else None
        with self._lock:
            row, ids, created = self.store.add_faces(subject_id, faces, name=name, metadata=metadata)
            if vectors is not None:
                s = self._subjects.get(row.pk)
                if s is None:
                    s = self._subjects[row.pk] = _Subject(row.pk, subject_id, [], np.zeros((0, self.dim), np.float32))
                    self._pk[subject_id] = row.pk
                s.face_ids.extend(ids)
                self._face_owner.update(dict.fromkeys(ids, row.pk))
                s.vectors = np.vstack([s.vectors.reshape(-1, self.dim), vectors])
                if self._faces is not None:
                    self._faces.add(np.array(ids, np.int64), vectors)
                self._update_mean(s)
                self._maybe_rebuild()
        return row, ids, created

    def delete_subject(self, subject_id: str) -> list[int]:
        with self._lock:
            ids = self.store.delete_subject(subject_id)
            if ids is None:
                raise SubjectNotFound(subject_id)
            pk = self._pk.pop(subject_id, None)
            s = self._subjects.pop(pk, None) if pk is not None else None
            if s is not None:
                for i in s.face_ids:
                    self._face_owner.pop(i, None)
                if self._faces is not None:
                    self._faces.remove(s.face_ids)
                if self._means is not None:
                    self._means.remove([s.pk])
            self._maybe_rebuild()
            return ids

    def delete_face(self, subject_id: str, face_id: int) -> None:
        with self._lock:
            if not self.store.delete_face(subject_id, face_id):
                if self.store.get_subject(subject_id) is None:
                    raise SubjectNotFound(subject_id)
                raise FaceNotFound(subject_id, face_id)
            s = self._subjects.get(self._pk.get(subject_id, -1))
            if s is not None and face_id in s.face_ids:
                keep = [i != face_id for i in s.face_ids]
                s.face_ids = [i for i in s.face_ids if i != face_id]
                s.vectors = s.vectors[np.array(keep, bool)]
                self._face_owner.pop(face_id, None)
                if self._faces is not None:
                    self._faces.remove([face_id])
                self._update_mean(s)
                self._maybe_rebuild()

    def _mean(self, s: _Subject) -> np.ndarray:
        v = distances.normalize(s.vectors) if self.distance.name == "cosine" else s.vectors
        return v.mean(axis=0).astype(np.float32)

    def _update_mean(self, s: _Subject) -> None:
        if self._means is None:
            return
        self._means.remove([s.pk])
        if s.face_ids:
            self._means.add(np.array([s.pk], np.int64), self._mean(s)[None])

    # -------------------------------------------------------------------------------------------- reads
    @property
    def face_count(self) -> int:
        return sum(len(s.face_ids) for s in self._subjects.values())

    def sizes(self) -> dict[str, int]:
        with self._lock:
            subjects, faces = self.store.counts()
            index = sum(ix.size for ix in (self._faces, self._means) if ix is not None)
            return {"subjects": subjects, "faces": faces, "index_size": index}

    def index_kinds(self) -> dict[str, str]:
        return {name: ix.kind for name, ix in (("faces", self._faces), ("means", self._means)) if ix is not None}

    def _better(self, a: float, b: float) -> bool:
        return a > b if self.distance.higher_is_closer else a < b

    def _compare(self, probe: np.ndarray, s: _Subject) -> Comparison:
        values = self.distance.pairwise(probe[None], s.vectors)[0]
        best: Comparison | None = None
        if self.match in ("faces", "both"):
            i = int(self.distance.nearest(values))
            best = Comparison(s.subject_id, float(values[i]), "face", s.face_ids[i])
        if self.match in ("mean", "both"):
            v = float(self.distance.pairwise(probe[None], self._mean(s)[None])[0, 0])
            if best is None or self._better(v, best.value):
                best = Comparison(s.subject_id, v, "mean", None)
        assert best is not None
        return best

    def compare(self, probe: np.ndarray, subject_id: str) -> Comparison:
        """The probe (D) against one enrolled subject."""
        probe = np.asarray(probe, np.float32).reshape(self.dim)
        with self._lock:
            s = self._subjects.get(self._pk.get(subject_id, -1))
            if s is None or not s.face_ids:
                if self.store.get_subject(subject_id) is None:
                    raise SubjectNotFound(subject_id)
                raise SubjectHasNoFaces(subject_id)
            return self._compare(probe, s)

    def search(self, probe: np.ndarray, k: int) -> list[Comparison]:
        """The `k` subjects closest to the probe (D), best first (fewer when the gallery is smaller)."""
        probe = np.asarray(probe, np.float32).reshape(self.dim)
        with self._lock:
            pks: dict[int, None] = {}
            if self._means is not None:
                _, ids = self._means.search(probe[None], k)
                pks.update(dict.fromkeys(int(i) for i in ids[0] if i >= 0))
            if self._faces is not None:
                pks.update(dict.fromkeys(self._subjects_near(probe, k)))
            found = [self._compare(probe, self._subjects[pk]) for pk in pks if pk in self._subjects]
        sign = -1.0 if self.distance.higher_is_closer else 1.0
        found.sort(key=lambda c: (sign * c.value, c.subject_id))
        return found[:k]

    def _subjects_near(self, probe: np.ndarray, k: int) -> list[int]:
        """Subject pks owning the faces nearest the probe: at least k distinct ones when the gallery has them.
        Fetches 4k faces, then 4× more until k distinct subjects are found or every face was seen."""
        assert self._faces is not None
        total = self._faces.size
        fetch = min(total, 4 * k)
        while True:
            _, ids = self._faces.search(probe[None], fetch)
            face_ids = [int(i) for i in ids[0] if i >= 0]
            pks = list(dict.fromkeys(self._face_owner[i] for i in face_ids if i in self._face_owner))
            if len(pks) >= k or fetch >= total:
                return pks
            fetch = min(total, fetch * 4)


def reconcile_model(store: Store, model_id: str, crop_spec: str, embed_pngs: Any, reembed: bool) -> int:
    """Make sure every stored embedding was made by `model_id`; returns how many faces were re-embedded.

    A gallery made (partly) by another model is refused (`ModelMismatch`) unless `reembed` is set, in which case
    each stale face is re-embedded from its stored aligned crop with `embed_pngs(list of PNG bytes) -> N×D`.
    That needs every stale face to have a crop (`keep_crops` when it was enrolled) aligned the way this model's
    card aligns (`crop_spec`); otherwise it is refused too, before anything is changed. Each batch is one
    transaction: a crash half-way leaves faces of both models, and the next start (still with `reembed`)
    finishes the job.
    """
    counts = store.model_counts()
    stale = {m: n for m, n in counts.items() if m != model_id}
    if not stale:
        return 0
    described = ", ".join(f"{n} by {m}" for m, n in sorted(stale.items()))
    if not reembed:
        raise ModelMismatch(
            f"the gallery holds faces embedded by another model ({described}); the model is {model_id}. "
            "Set SIAMFACE_REEMBED=true to re-embed them from their stored crops, or point SIAMFACE_DATA_DIR elsewhere"
        )
    for batch in store.iter_stale(model_id):  # check everything first: refuse before changing anything
        bad = [f.face_id for f in batch if f.crop is None or f.crop_spec != crop_spec]
        if bad:
            raise ModelMismatch(
                f"cannot re-embed faces {bad[:10]}{'...' if len(bad) > 10 else ''}: no stored crop, or a crop aligned "
                "differently from this model's card (enroll them again, or keep the old model)"
            )
    done = 0
    while True:
        batch = next(iter(store.iter_stale(model_id)), None)
        if not batch:
            break
        vectors = np.asarray(embed_pngs([f.crop for f in batch]), np.float32)
        store.replace_embeddings([(f.face_id, v) for f, v in zip(batch, vectors, strict=True)], model_id)
        done += len(batch)
    LOG.info("re-embedded %d faces (%s) with %s", done, described, model_id)
    return done
