"""The gallery's source of truth: subjects, their faces' embeddings (with the model that made them) and,
optionally, each face's aligned crop (so that a new model can re-embed the gallery).

`Store` is the interface the service uses; `SQLiteStore` implements it (a second backend, PostgreSQL, is a
later issue). The FAISS index (`app.index`) is a cache rebuilt from the store at start.

Durability: every write is one transaction, committed before the method returns, with SQLite in WAL mode and
`synchronous=FULL` (a commit survives a process crash and a power loss). An enrollment the API acknowledged is
therefore on disk.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

LOG = logging.getLogger(__name__)

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class NewFace:
    """A face to store. embedding: D float32; crop: the aligned crop as PNG bytes (None unless kept);
    crop_spec: the canonical JSON of the AlignSpec the crop was made with; source: the uploaded file name."""

    embedding: np.ndarray
    model_id: str
    box: tuple[int, int, int, int] | None = None
    crop: bytes | None = None
    crop_spec: str | None = None
    source: str | None = None


@dataclass(frozen=True)
class SubjectRow:
    pk: int
    subject_id: str
    name: str | None
    metadata: dict[str, Any]
    created_at: str
    updated_at: str
    face_count: int


@dataclass(frozen=True)
class FaceRow:
    face_id: int
    subject_id: str
    model_id: str
    box: tuple[int, int, int, int] | None
    source: str | None
    has_crop: bool
    created_at: str


@dataclass(frozen=True)
class StoredEmbedding:
    face_id: int
    subject_pk: int
    subject_id: str
    vector: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class StaleFace:
    """A face whose embedding another model made: what re-embedding needs."""

    face_id: int
    crop: bytes | None = field(repr=False)
    crop_spec: str | None


class Store(Protocol):
    """What the service needs from a gallery backend. Every mutating method is atomic and durable on return."""

    def add_faces(
        self, subject_id: str, faces: Sequence[NewFace], name: str | None = None, metadata: dict[str, Any] | None = None
    ) -> tuple[SubjectRow, list[int], bool]:
        """Create the subject (or update its name / metadata when given) and add `faces`; returns the subject,
        the new face ids in order, and whether the subject was created. Face ids are never reused."""
        ...

    def get_subject(self, subject_id: str) -> SubjectRow | None: ...

    def list_subjects(self, offset: int, limit: int) -> tuple[list[SubjectRow], int]:
        """A page of subjects ordered by creation, and the total count."""
        ...

    def faces_of(self, subject_id: str) -> list[FaceRow]: ...

    def delete_subject(self, subject_id: str) -> list[int] | None:
        """Delete the subject and its faces; returns the deleted face ids, None if there was no such subject."""
        ...

    def delete_face(self, subject_id: str, face_id: int) -> bool: ...

    def iter_embeddings(self, batch: int = 4096) -> Iterator[list[StoredEmbedding]]:
        """Every stored embedding, in face id order, `batch` at a time."""
        ...

    def model_counts(self) -> dict[str, int]:
        """How many faces each model id embedded."""
        ...

    def iter_stale(self, model_id: str, batch: int = 256) -> Iterator[list[StaleFace]]:
        """Faces embedded by a model other than `model_id`."""
        ...

    def replace_embeddings(self, items: Sequence[tuple[int, np.ndarray]], model_id: str) -> None:
        """Overwrite the embeddings of these face ids, now made by `model_id` (one transaction)."""
        ...

    def counts(self) -> tuple[int, int]:
        """(subjects, faces)."""
        ...

    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS subjects (
    pk INTEGER PRIMARY KEY AUTOINCREMENT,
    subject_id TEXT NOT NULL UNIQUE,
    name TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS faces (
    face_id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject_pk INTEGER NOT NULL REFERENCES subjects(pk) ON DELETE CASCADE,
    model_id TEXT NOT NULL,
    dim INTEGER NOT NULL,
    embedding BLOB NOT NULL,
    box TEXT,
    source TEXT,
    crop BLOB,
    crop_spec TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS faces_by_subject ON faces(subject_pk);
CREATE INDEX IF NOT EXISTS faces_by_model ON faces(model_id);
"""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _vector_bytes(v: np.ndarray) -> bytes:
    return np.ascontiguousarray(v, dtype="<f4").reshape(-1).tobytes()


class SQLiteStore:
    """`Store` on one SQLite file (WAL, synchronous=FULL, foreign keys on).

    One connection shared by the service's threads under a lock: every statement is sub-millisecond next to
    the embedding work, and a single writer is what SQLite wants anyway.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._tx() as db:  # executescript would commit on its own: one statement at a time instead
            for statement in filter(str.strip, _SCHEMA.split(";")):
                db.execute(statement)
            row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        if row is not None and int(row[0]) > SCHEMA_VERSION:
            self._db.close()
            raise RuntimeError(f"{self.path} has gallery schema {row[0]}, newer than this code ({SCHEMA_VERSION})")
        LOG.info("gallery store %s opened", self.path)

    # ------------------------------------------------------------------------------------------ plumbing
    class _Tx:
        def __init__(self, store: SQLiteStore) -> None:
            self.store = store

        def __enter__(self) -> sqlite3.Connection:
            self.store._lock.acquire()
            try:
                self.store._db.execute("BEGIN IMMEDIATE")
            except BaseException:
                self.store._lock.release()
                raise
            return self.store._db

        def __exit__(self, exc_type: object, *_: object) -> None:
            try:
                self.store._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
            finally:
                self.store._lock.release()

    def _tx(self) -> SQLiteStore._Tx:
        return SQLiteStore._Tx(self)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    @staticmethod
    def _subject(row: Sequence[Any]) -> SubjectRow:
        pk, subject_id, name, metadata, created, updated, count = row
        return SubjectRow(pk, subject_id, name, json.loads(metadata), created, updated, int(count))

    _SUBJECT_SELECT = (
        "SELECT s.pk, s.subject_id, s.name, s.metadata, s.created_at, s.updated_at, "
        "(SELECT COUNT(*) FROM faces f WHERE f.subject_pk = s.pk) FROM subjects s"
    )

    # --------------------------------------------------------------------------------------------- Store
    def add_faces(
        self, subject_id: str, faces: Sequence[NewFace], name: str | None = None, metadata: dict[str, Any] | None = None
    ) -> tuple[SubjectRow, list[int], bool]:
        now = _now()
        ids = []
        with self._tx() as db:
            row = db.execute("SELECT pk FROM subjects WHERE subject_id = ?", (subject_id,)).fetchone()
            created = row is None
            if row is None:
                meta = json.dumps(metadata or {}, sort_keys=True)
                cur = db.execute(
                    "INSERT INTO subjects (subject_id, name, metadata, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                    (subject_id, name, meta, now, now),
                )
                pk = int(cur.lastrowid or 0)
            else:
                pk = int(row[0])
                if name is not None:
                    db.execute("UPDATE subjects SET name = ? WHERE pk = ?", (name, pk))
                if metadata is not None:
                    meta = json.dumps(metadata, sort_keys=True)
                    db.execute("UPDATE subjects SET metadata = ? WHERE pk = ?", (meta, pk))
                db.execute("UPDATE subjects SET updated_at = ? WHERE pk = ?", (now, pk))
            for f in faces:
                cur = db.execute(
                    "INSERT INTO faces (subject_pk, model_id, dim, embedding, box, source, crop, crop_spec, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        pk,
                        f.model_id,
                        int(np.asarray(f.embedding).size),
                        _vector_bytes(f.embedding),
                        json.dumps(list(f.box)) if f.box is not None else None,
                        f.source,
                        f.crop,
                        f.crop_spec,
                        now,
                    ),
                )
                ids.append(int(cur.lastrowid or 0))
            subject = self._subject(db.execute(self._SUBJECT_SELECT + " WHERE s.pk = ?", (pk,)).fetchone())
        return subject, ids, created

    def get_subject(self, subject_id: str) -> SubjectRow | None:
        rows = self._read(self._SUBJECT_SELECT + " WHERE s.subject_id = ?", (subject_id,))
        return self._subject(rows[0]) if rows else None

    def list_subjects(self, offset: int, limit: int) -> tuple[list[SubjectRow], int]:
        with self._lock:
            total = self._db.execute("SELECT COUNT(*) FROM subjects").fetchone()[0]
            sql = self._SUBJECT_SELECT + " ORDER BY s.pk LIMIT ? OFFSET ?"
            rows = self._db.execute(sql, (limit, offset)).fetchall()
        return [self._subject(r) for r in rows], int(total)

    def faces_of(self, subject_id: str) -> list[FaceRow]:
        rows = self._read(
            "SELECT f.face_id, s.subject_id, f.model_id, f.box, f.source, f.crop IS NOT NULL, f.created_at "
            "FROM faces f JOIN subjects s ON s.pk = f.subject_pk WHERE s.subject_id = ? ORDER BY f.face_id",
            (subject_id,),
        )
        return [
            FaceRow(fid, sid, model, tuple(json.loads(box)) if box else None, source, bool(crop), created)
            for fid, sid, model, box, source, crop, created in rows
        ]

    def delete_subject(self, subject_id: str) -> list[int] | None:
        with self._tx() as db:
            row = db.execute("SELECT pk FROM subjects WHERE subject_id = ?", (subject_id,)).fetchone()
            if row is None:
                return None
            ids = [r[0] for r in db.execute("SELECT face_id FROM faces WHERE subject_pk = ?", (row[0],))]
            db.execute("DELETE FROM faces WHERE subject_pk = ?", (row[0],))
            db.execute("DELETE FROM subjects WHERE pk = ?", (row[0],))
        return ids

    def delete_face(self, subject_id: str, face_id: int) -> bool:
        with self._tx() as db:
            cur = db.execute(
                "DELETE FROM faces WHERE face_id = ? AND subject_pk = (SELECT pk FROM subjects WHERE subject_id = ?)",
                (face_id, subject_id),
            )
            if cur.rowcount:
                db.execute("UPDATE subjects SET updated_at = ? WHERE subject_id = ?", (_now(), subject_id))
            return cur.rowcount > 0

    def iter_embeddings(self, batch: int = 4096) -> Iterator[list[StoredEmbedding]]:
        last = -1
        while True:
            rows = self._read(
                "SELECT f.face_id, f.subject_pk, s.subject_id, f.dim, f.embedding FROM faces f "
                "JOIN subjects s ON s.pk = f.subject_pk WHERE f.face_id > ? ORDER BY f.face_id LIMIT ?",
                (last, batch),
            )
            if not rows:
                return
            out = []
            for fid, pk, sid, dim, blob in rows:
                vec = np.frombuffer(blob, dtype="<f4").astype(np.float32)
                if vec.size != dim:
                    raise RuntimeError(f"face {fid}: stored embedding has {vec.size} values, its row says {dim}")
                out.append(StoredEmbedding(int(fid), int(pk), sid, vec))
            yield out
            last = rows[-1][0]

    def model_counts(self) -> dict[str, int]:
        return {m: int(n) for m, n in self._read("SELECT model_id, COUNT(*) FROM faces GROUP BY model_id")}

    def iter_stale(self, model_id: str, batch: int = 256) -> Iterator[list[StaleFace]]:
        last = -1
        while True:
            rows = self._read(
                "SELECT face_id, crop, crop_spec FROM faces WHERE model_id != ? AND face_id > ? "
                "ORDER BY face_id LIMIT ?",
                (model_id, last, batch),
            )
            if not rows:
                return
            yield [StaleFace(int(fid), crop, spec) for fid, crop, spec in rows]
            last = rows[-1][0]

    def replace_embeddings(self, items: Sequence[tuple[int, np.ndarray]], model_id: str) -> None:
        with self._tx() as db:
            db.executemany(
                "UPDATE faces SET embedding = ?, dim = ?, model_id = ? WHERE face_id = ?",
                [(_vector_bytes(v), int(np.asarray(v).size), model_id, int(fid)) for fid, v in items],
            )

    def counts(self) -> tuple[int, int]:
        with self._lock:
            subjects = self._db.execute("SELECT COUNT(*) FROM subjects").fetchone()[0]
            faces = self._db.execute("SELECT COUNT(*) FROM faces").fetchone()[0]
        return int(subjects), int(faces)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def open_store(kind: str, data_dir: Path) -> Store:
    """The configured backend. Only "sqlite" for now (`SIAMFACE_STORE`); PostgreSQL slots in here."""
    if kind == "sqlite":
        return SQLiteStore(Path(data_dir) / "gallery.sqlite3")
    raise ValueError(f"unknown gallery store {kind!r}")
