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

Several processes on one store (replicas on one PostgreSQL database; `siamface enroll` next to a server on one
SQLite file): each keeps its own memory and index, and `Gallery.sync` (run every few hundred milliseconds by a
`GalleryFollower` thread) applies the writes the others committed, read from the store's change log. A change
names a subject; sync re-reads that subject's faces from the store and makes memory and index match them, so
applying a change twice, or one this process made itself, changes nothing.
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
from app.store import NewFace, Store, StoredEmbedding, SubjectRow
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
    """`model_id`, when given, is the model this process embeds probes with: `sync` skips faces another model made
    (a replica not yet upgraded enrolling during a model change; the next start re-embeds or refuses them)."""

    def __init__(
        self, store: Store, dim: int, distance: str, match: str, index: IndexParams, model_id: str | None = None
    ) -> None:
        if match not in ("faces", "mean", "both"):
            raise ValueError(f"match must be 'faces', 'mean' or 'both', got {match!r}")
        self.store = store
        self.dim = dim
        self.distance = distances.get(distance)
        self.match = match
        self.index_params = index
        self.model_id = model_id
        # Lock order: _sync_lock, then _lock, then the store's own. _sync_lock keeps one sync (or load) at a
        # time without holding _lock, and so searches, while the change log is read.
        self._sync_lock = threading.RLock()
        self._lock = threading.RLock()
        self._last_change = 0  # the change log id up to which memory reflects the store
        self._subjects: dict[int, _Subject] = {}
        self._pk: dict[str, int] = {}
        self._face_owner: dict[int, int] = {}  # face id -> subject pk
        self._faces = VectorIndex(dim, distance, index) if match in ("faces", "both") else None
        self._means = VectorIndex(dim, distance, index) if match in ("mean", "both") else None

    # ------------------------------------------------------------------------------------------ loading
    def load(self) -> None:
        """Rebuild memory and indexes from the store."""
        with self._sync_lock, self._lock:
            # Read before the faces: a write committed while they are read is applied again by the next sync
            # (harmlessly: sync makes a subject match the store), never missed.
            self._last_change = self.store.last_change()
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

    # ---------------------------------------------------------------------------------- following the store
    @property
    def last_change(self) -> int:
        """The change log id up to which this gallery reflects the store."""
        return self._last_change

    def sync(self, batch: int = 1000) -> int:
        """Apply the writes committed to the store since the last `load` or `sync`, by this process or any other;
        returns how many changes were read. Resumes from the last change applied, so after a lost connection the
        next call catches up without a rebuild. Only a change log that went backwards (the store was replaced,
        e.g. restored from a backup) triggers a full `load`. Raises what the store raises (nothing is applied
        from a failed read, and the next call retries it)."""
        read = 0
        with self._sync_lock:
            while True:
                changes = self.store.changes_since(self._last_change, batch)
                if not changes:
                    if self.store.last_change() < self._last_change:
                        LOG.warning("the store's change log went back past %d: reloading", self._last_change)
                        self.load()
                    return read
                subjects = {c.subject_pk: c.subject_id for c in changes}
                with self._lock:
                    # Read the faces under the lock: a local write cannot then land between this read and its
                    # application (and be undone by an older picture of the subject).
                    self._refresh(subjects, self.store.subject_embeddings(list(subjects)))
                    self._last_change = changes[-1].change_id
                read += len(changes)
                if len(changes) < batch:
                    return read

    def _refresh(self, subjects: dict[int, str], stored: list[StoredEmbedding]) -> None:
        """Make these subjects (pk -> subject id) match their `stored` embeddings. Caller holds the lock."""
        found: dict[int, list[StoredEmbedding]] = {}
        for e in stored:
            if e.vector.size != self.dim or (self.model_id is not None and e.model_id != self.model_id):
                LOG.warning(
                    "face %d of %r (model %s, %d-d) does not fit this gallery (model %s, %d-d): not loaded",
                    e.face_id, e.subject_id, e.model_id, e.vector.size, self.model_id, self.dim,
                )  # fmt: skip
                continue
            found.setdefault(e.subject_pk, []).append(e)
        for pk, subject_id in subjects.items():
            self._replace_subject(pk, subject_id, found.get(pk, []))
        self._maybe_rebuild()

    def _replace_subject(self, pk: int, subject_id: str, faces: list[StoredEmbedding]) -> None:
        s = self._subjects.get(pk)
        old = s.face_ids if s is not None else []
        new = [e.face_id for e in faces]
        if old == new:
            return  # already current (most often: this process made the change)
        new_set, old_set = set(new), set(old)
        gone = [i for i in old if i not in new_set]
        added = [e for e in faces if e.face_id not in old_set]
        for i in gone:
            self._face_owner.pop(i, None)
        if self._faces is not None:
            self._faces.remove(gone)
            if added:
                self._faces.add(np.array([e.face_id for e in added], np.int64), np.stack([e.vector for e in added]))
        if not faces:  # deleted, or left without faces: as `load` would leave it
            self._subjects.pop(pk, None)
            if self._pk.get(subject_id) == pk:
                del self._pk[subject_id]
            if self._means is not None:
                self._means.remove([pk])
            return
        if s is None:
            s = self._subjects[pk] = _Subject(pk, subject_id)
        self._pk[subject_id] = pk
        s.face_ids = new
        s.vectors = np.stack([e.vector for e in faces]).astype(np.float32)
        self._face_owner.update(dict.fromkeys(new, pk))
        self._update_mean(s)

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
            # The index that answers for faces: the face index, or the subject-means index under "mean" ("both"
            # keeps a means index too, one vector per subject: /ready's `subjects` counts those).
            primary = self._faces if self._faces is not None else self._means
            assert primary is not None
            return {"subjects": subjects, "faces": faces, "index_size": primary.size}

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
        # With one face the mean is that face: "both" reports it as the face (not as a float rounding's winner).
        if self.match == "mean" or (self.match == "both" and len(s.face_ids) > 1):
            v = float(self.distance.pairwise(probe[None], self._mean(s)[None])[0, 0])
            if best is None or self._better(v, best.value):
                best = Comparison(s.subject_id, v, "mean", None)
        assert best is not None
        return best

    def compare(self, probe: np.ndarray, subject_id: str) -> Comparison:
        """The probe (D) against one enrolled subject. A subject without faces here is looked for in the store's
        change log first (it may have been enrolled through another replica a moment ago), so that a client's
        enroll-then-verify works whichever replica each request reaches."""
        probe = np.asarray(probe, np.float32).reshape(self.dim)
        for catch_up in (True, False):
            with self._lock:
                s = self._subjects.get(self._pk.get(subject_id, -1))
                if s is not None and s.face_ids:
                    return self._compare(probe, s)
            if catch_up:
                self.sync()  # outside _lock: sync takes _sync_lock first
        if self.store.get_subject(subject_id) is None:
            raise SubjectNotFound(subject_id)
        raise SubjectHasNoFaces(subject_id)

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


class GalleryFollower:
    """A daemon thread running `gallery.sync()` every `interval` seconds, so that writes made through other
    replicas (or `siamface enroll`) reach this process's index within about `interval` plus the sync's time.

    A failing sync (the database unreachable) is logged once per outage and retried at every tick; the gallery
    resumes from the last change it applied, so a reconnect needs no rebuild. `start` and `stop` are for one
    thread (the lifespan); `stop` waits for a sync in progress to finish.
    """

    def __init__(self, gallery: Gallery, interval: float = 0.2) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.gallery = gallery
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.healthy = True  # False while syncs fail

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the follower is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="gallery-follower", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.gallery.sync()
            except Exception:  # any failure (network, server restart): the thread must live to retry it
                if self.healthy:
                    LOG.exception("gallery sync failed; retrying every %.2f s", self.interval)
                self.healthy = False
                continue
            if not self.healthy:
                LOG.info("gallery sync recovered at change %d", self.gallery.last_change)
                self.healthy = True


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
