"""The gallery's source of truth: subjects, their faces' embeddings (with the model that made them) and,
optionally, each face's aligned crop (so that a new model can re-embed the gallery).

`Store` is the interface the service uses. Two backends implement it with the same SQL logic (`SQLStore`):
`SQLiteStore` (the embedded default, one file) and `PostgresStore` (`app.store_postgres`, a shared database for
several replicas). The FAISS index (`app.index`) is a cache rebuilt from the store at start, and kept current
afterwards by following the store's change log (`Store.changes_since`, see `app.gallery.Gallery.sync`).

Durability: every write is one transaction, committed before the method returns (SQLite in WAL mode with
`synchronous=FULL`; PostgreSQL with its default synchronous commit), so an enrollment the API acknowledged survives
a process crash and a power loss. Each write also appends one row to the `changes` table in the same transaction:
the change log other processes follow.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
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
    model_id: str = ""


@dataclass(frozen=True)
class StaleFace:
    """A face whose embedding another model made: what re-embedding needs."""

    face_id: int
    crop: bytes | None = field(repr=False)
    crop_spec: str | None


@dataclass(frozen=True)
class Change:
    """One committed write, as the change log records it. `change_id` grows in commit order (each backend says
    how it guarantees that), so a follower that has applied every change up to `n` needs exactly those `> n`.
    `kind` is "enroll", "delete_subject" or "delete_face"; `subject_pk` is the subject whose faces changed."""

    change_id: int
    subject_pk: int
    subject_id: str
    kind: str


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

    # ------------------------------------------------------------------------------------- change log
    def last_change(self) -> int:
        """The id of the latest committed change (0 when there is none)."""
        ...

    def changes_since(self, after: int, limit: int = 1000) -> list[Change]:
        """Committed changes with an id above `after`, oldest first, at most `limit`."""
        ...

    def subject_embeddings(self, subject_pks: Sequence[int]) -> list[StoredEmbedding]:
        """The current embeddings of these subjects (by pk), in face id order; a deleted subject has none."""
        ...


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _timestamp(value: str | dt.datetime) -> str:
    """A stored time as `_now()` writes it: SQLite keeps the string, PostgreSQL returns a datetime."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat(timespec="milliseconds")
    return value


def _json(value: Any) -> Any:
    """A stored JSON value: SQLite keeps the text, PostgreSQL's jsonb comes back decoded."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def _vector_bytes(v: np.ndarray) -> bytes:
    return np.ascontiguousarray(v, dtype="<f4").reshape(-1).tobytes()


def _embedding(face_id: int, pk: int, subject_id: str, dim: int, blob: bytes, model_id: str) -> StoredEmbedding:
    vec = np.frombuffer(blob, dtype="<f4").astype(np.float32)
    if vec.size != dim:
        raise RuntimeError(f"face {face_id}: stored embedding has {vec.size} values, its row says {dim}")
    return StoredEmbedding(int(face_id), int(pk), subject_id, vec, model_id)


class Connection(Protocol):
    """The part of a DB-API connection `SQLStore` uses: statements with `?` placeholders."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, params: Iterable[Sequence[Any]], /) -> Any: ...


class SQLStore:
    """The `Store` logic both backends share, written once in the SQL both speak: `?` placeholders (the PostgreSQL
    backend translates them), `INSERT ... RETURNING`, `ON CONFLICT ... DO NOTHING`. So ids, ordering and return
    values (None / False for what does not exist) are the same on either backend.

    A backend provides `_tx()` (a write transaction: committed when the block exits normally, rolled back when it
    raises) and `_session()` (autocommitted reads), each yielding a `Connection` for one thread at a time, and
    may lock rows (`_FOR_UPDATE`) and order the change log (`_before_change`) where writers run concurrently.
    """

    # Appended to a SELECT of the subject row a write modifies: PostgreSQL writers in other processes must wait
    # for each other on that row. SQLite's `BEGIN IMMEDIATE` already makes every write exclusive.
    _FOR_UPDATE = ""

    def _tx(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _session(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _before_change(self, db: Connection) -> None:
        """Called inside a write transaction just before its change row is inserted (see `_record`)."""

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._session() as db:
            return db.execute(sql, params).fetchall()

    def _record(self, db: Connection, kind: str, pk: int, subject_id: str, now: str) -> None:
        """Append the write to the change log, in its transaction: the last statement before the commit, so that
        whatever ordering `_before_change` takes is held as briefly as possible."""
        self._before_change(db)
        db.execute(
            "INSERT INTO changes (subject_pk, subject_id, kind, created_at) VALUES (?, ?, ?, ?)",
            (pk, subject_id, kind, now),
        )

    @staticmethod
    def _subject(row: Sequence[Any]) -> SubjectRow:
        pk, subject_id, name, metadata, created, updated, count = row
        return SubjectRow(
            int(pk), subject_id, name, _json(metadata), _timestamp(created), _timestamp(updated), int(count)
        )

    _SUBJECT_SELECT = (
        "SELECT s.pk, s.subject_id, s.name, s.metadata, s.created_at, s.updated_at, "
        "(SELECT COUNT(*) FROM faces f WHERE f.subject_pk = s.pk) FROM subjects s"
    )
    _EMBEDDING_SELECT = (
        "SELECT f.face_id, f.subject_pk, s.subject_id, f.dim, f.embedding, f.model_id FROM faces f "
        "JOIN subjects s ON s.pk = f.subject_pk"
    )

    def _locked_pk(self, db: Connection, subject_id: str) -> int | None:
        """The subject's pk, its row locked until the transaction ends (None when there is no such subject)."""
        row = db.execute("SELECT pk FROM subjects WHERE subject_id = ?" + self._FOR_UPDATE, (subject_id,)).fetchone()
        return None if row is None else int(row[0])

    def _lock_or_create_subject(
        self, db: Connection, subject_id: str, name: str | None, metadata: dict[str, Any] | None, now: str
    ) -> tuple[int, bool]:
        """The subject's pk (its row locked for this transaction), creating it if absent; and whether it was."""
        while True:
            pk = self._locked_pk(db, subject_id)
            if pk is not None:
                if name is not None:
                    db.execute("UPDATE subjects SET name = ? WHERE pk = ?", (name, pk))
                if metadata is not None:
                    meta = json.dumps(metadata, sort_keys=True)
                    db.execute("UPDATE subjects SET metadata = ? WHERE pk = ?", (meta, pk))
                db.execute("UPDATE subjects SET updated_at = ? WHERE pk = ?", (now, pk))
                return pk, False
            row = db.execute(
                "INSERT INTO subjects (subject_id, name, metadata, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (subject_id) DO NOTHING RETURNING pk",
                (subject_id, name, json.dumps(metadata or {}, sort_keys=True), now, now),
            ).fetchone()
            if row is not None:
                return int(row[0]), True
            # Another process created the subject between the two statements (PostgreSQL; SQLite cannot get
            # here): the next pass finds its committed row and locks it.

    # --------------------------------------------------------------------------------------------- Store
    def add_faces(
        self, subject_id: str, faces: Sequence[NewFace], name: str | None = None, metadata: dict[str, Any] | None = None
    ) -> tuple[SubjectRow, list[int], bool]:
        now = _now()
        ids = []
        with self._tx() as db:
            pk, created = self._lock_or_create_subject(db, subject_id, name, metadata, now)
            for f in faces:
                row = db.execute(
                    "INSERT INTO faces (subject_pk, model_id, dim, embedding, box, source, crop, crop_spec, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING face_id",
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
                ).fetchone()
                ids.append(int(row[0]))
            subject = self._subject(db.execute(self._SUBJECT_SELECT + " WHERE s.pk = ?", (pk,)).fetchone())
            self._record(db, "enroll", pk, subject_id, now)
        return subject, ids, created

    def get_subject(self, subject_id: str) -> SubjectRow | None:
        rows = self._read(self._SUBJECT_SELECT + " WHERE s.subject_id = ?", (subject_id,))
        return self._subject(rows[0]) if rows else None

    def list_subjects(self, offset: int, limit: int) -> tuple[list[SubjectRow], int]:
        with self._session() as db:
            total = db.execute("SELECT COUNT(*) FROM subjects").fetchone()[0]
            sql = self._SUBJECT_SELECT + " ORDER BY s.pk LIMIT ? OFFSET ?"
            rows = db.execute(sql, (limit, offset)).fetchall()
        return [self._subject(r) for r in rows], int(total)

    def faces_of(self, subject_id: str) -> list[FaceRow]:
        rows = self._read(
            "SELECT f.face_id, s.subject_id, f.model_id, f.box, f.source, f.crop IS NOT NULL, f.created_at "
            "FROM faces f JOIN subjects s ON s.pk = f.subject_pk WHERE s.subject_id = ? ORDER BY f.face_id",
            (subject_id,),
        )
        return [
            FaceRow(int(fid), sid, model, tuple(_json(box)) if box else None, source, bool(crop), _timestamp(created))
            for fid, sid, model, box, source, crop, created in rows
        ]

    def delete_subject(self, subject_id: str) -> list[int] | None:
        with self._tx() as db:
            pk = self._locked_pk(db, subject_id)
            if pk is None:
                return None
            rows = db.execute("SELECT face_id FROM faces WHERE subject_pk = ? ORDER BY face_id", (pk,)).fetchall()
            ids = [int(r[0]) for r in rows]
            db.execute("DELETE FROM faces WHERE subject_pk = ?", (pk,))
            db.execute("DELETE FROM subjects WHERE pk = ?", (pk,))
            self._record(db, "delete_subject", pk, subject_id, _now())
        return ids

    def delete_face(self, subject_id: str, face_id: int) -> bool:
        with self._tx() as db:
            pk, now = self._locked_pk(db, subject_id), _now()
            if pk is None:
                return False
            cur = db.execute("DELETE FROM faces WHERE face_id = ? AND subject_pk = ?", (face_id, pk))
            if cur.rowcount <= 0:
                return False
            db.execute("UPDATE subjects SET updated_at = ? WHERE pk = ?", (now, pk))
            self._record(db, "delete_face", pk, subject_id, now)
        return True

    def iter_embeddings(self, batch: int = 4096) -> Iterator[list[StoredEmbedding]]:
        last = -1
        while True:
            rows = self._read(self._EMBEDDING_SELECT + " WHERE f.face_id > ? ORDER BY f.face_id LIMIT ?", (last, batch))
            if not rows:
                return
            yield [_embedding(*r) for r in rows]
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
            yield [StaleFace(int(fid), None if crop is None else bytes(crop), spec) for fid, crop, spec in rows]
            last = rows[-1][0]

    def replace_embeddings(self, items: Sequence[tuple[int, np.ndarray]], model_id: str) -> None:
        # No change row: re-embedding happens at start, before serving, and a replica still running the old model
        # must keep its old vectors rather than load ones from a model it cannot compare probes with.
        with self._tx() as db:
            db.executemany(
                "UPDATE faces SET embedding = ?, dim = ?, model_id = ? WHERE face_id = ?",
                [(_vector_bytes(v), int(np.asarray(v).size), model_id, int(fid)) for fid, v in items],
            )

    def counts(self) -> tuple[int, int]:
        with self._session() as db:
            subjects = db.execute("SELECT COUNT(*) FROM subjects").fetchone()[0]
            faces = db.execute("SELECT COUNT(*) FROM faces").fetchone()[0]
        return int(subjects), int(faces)

    def last_change(self) -> int:
        return int(self._read("SELECT COALESCE(MAX(id), 0) FROM changes")[0][0])

    def changes_since(self, after: int, limit: int = 1000) -> list[Change]:
        rows = self._read(
            "SELECT id, subject_pk, subject_id, kind FROM changes WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
        )
        return [Change(int(i), int(pk), sid, kind) for i, pk, sid, kind in rows]

    def subject_embeddings(self, subject_pks: Sequence[int]) -> list[StoredEmbedding]:
        out: list[StoredEmbedding] = []
        pks = [int(p) for p in dict.fromkeys(subject_pks)]
        for start in range(0, len(pks), 500):  # well under SQLite's limit on bound parameters
            chunk = pks[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            rows = self._read(self._EMBEDDING_SELECT + f" WHERE f.subject_pk IN ({marks}) ORDER BY f.face_id", chunk)
            out.extend(_embedding(*r) for r in rows)
        out.sort(key=lambda e: e.face_id)
        return out


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
CREATE TABLE IF NOT EXISTS changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject_pk INTEGER NOT NULL,
    subject_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""
# The changes table came after schema 1 without a version bump: it is purely additive (created here when a
# gallery lacks it), and code that predates it still reads and writes such a gallery correctly.


class SQLiteStore(SQLStore):
    """`Store` on one SQLite file (WAL, synchronous=FULL, foreign keys on).

    One connection shared by the service's threads under a lock: every statement is sub-millisecond next to
    the embedding work, and a single writer is what SQLite wants anyway. Writes are exclusive (`BEGIN
    IMMEDIATE`), across processes too, so change ids are allocated in commit order.
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

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # a failed COMMIT leaves the transaction open
                    self._db.execute("ROLLBACK")
                raise

    @contextmanager
    def _session(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._db

    def close(self) -> None:
        with self._lock:
            self._db.close()


def open_store(data_dir: Path, database_url: str | None = None) -> Store:
    """The configured backend: PostgreSQL at `database_url` when given (`SIAMFACE_DATABASE_URL`), else SQLite in
    `data_dir`."""
    if database_url:
        from app.store_postgres import PostgresStore  # psycopg only where PostgreSQL is used

        return PostgresStore(database_url)
    return SQLiteStore(Path(data_dir) / "gallery.sqlite3")
