"""`PostgresStore`: the gallery in a PostgreSQL database shared by several service replicas.

Selected by `SIAMFACE_DATABASE_URL=postgresql://user:password@host:port/dbname` (any libpq connection URL; add
`?options=-csearch_path%3Dmyschema` to keep the tables in a schema of your own). The database, and the schema
when one is named, must exist; the tables are created by the migrations below.

Schema migrations: a small numbered-migrations runner rather than Alembic. Alembic's migration scripts run on
SQLAlchemy, which the store does not otherwise use (it shares plain SQL with the SQLite backend), so it would add
SQLAlchemy, an `env.py` and an `alembic.ini` to the service for a schema of three tables. The runner keeps the
same model as Alembic's versioned scripts: `MIGRATIONS` is an append-only list of numbered SQL steps, the
applied ones are recorded in `schema_migrations`, and at start each replica applies the missing steps in order,
each in its own transaction, while holding a session-level advisory lock, so replicas starting at once apply
every step exactly once (the others wait, then find nothing to do). A database migrated by newer code (a step
this code does not know) is refused rather than served.

Change log order: every write appends a row to `changes` in its own transaction, and a follower reads the rows
with an id above the last it applied. Identity values are handed out when a row is inserted, not when its
transaction commits, so two concurrent writers could commit ids 8 and 7 in that order, and a follower reading in
between would skip 7 for good. Writers therefore take a transaction-level advisory lock right before inserting
their change row (the last statement of the transaction; the lock is released by the commit): ids are then
allocated in commit order, and a follower that sees id n also sees every id below it. Writers serialise only for
that last statement and the commit.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg

from app.store import SQLStore

LOG = logging.getLogger(__name__)

# Advisory lock keys are (class, object) pairs: the class says what is locked, the object is a hash of the schema
# the gallery lives in, so galleries in different schemas of one database never wait on each other.
_MIGRATION_LOCK = 0x5346_0001  # "SF", 1
_CHANGES_LOCK = 0x5346_0002


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


# Append-only: never edit a step that has shipped; add the next number instead.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "gallery",
        """
        CREATE TABLE subjects (
            pk bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            subject_id text NOT NULL UNIQUE,
            name text,
            metadata jsonb NOT NULL DEFAULT '{}',
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL
        );
        CREATE TABLE faces (
            face_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            subject_pk bigint NOT NULL REFERENCES subjects (pk) ON DELETE CASCADE,
            model_id text NOT NULL,
            dim integer NOT NULL CHECK (dim > 0),
            embedding bytea NOT NULL,  -- dim little-endian float32 values
            box jsonb,
            source text,
            crop bytea,  -- the aligned crop, PNG
            crop_spec text,
            created_at timestamptz NOT NULL,
            CHECK (octet_length(embedding) = 4 * dim)
        );
        CREATE INDEX faces_by_subject ON faces (subject_pk);
        CREATE INDEX faces_by_model ON faces (model_id);
        -- The change log. No foreign key: a row outlives the subject whose deletion it reports. The identity's
        -- default CACHE 1 matters: with a per-session cache, ids would not follow the advisory lock's order.
        CREATE TABLE changes (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            subject_pk bigint NOT NULL,
            subject_id text NOT NULL,
            kind text NOT NULL CHECK (kind IN ('enroll', 'delete_subject', 'delete_face')),
            created_at timestamptz NOT NULL
        );
        """,
    ),
)


def _schema_key(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT current_schema(), hashtext(current_schema())").fetchone()
    if row is None or row[0] is None:
        raise RuntimeError("no schema of the database URL's search_path exists: create it first")
    return int(row[1])


def migrate(conn: psycopg.Connection[Any], migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Bring the connection's schema up to date; returns the versions applied now (empty when it was current).

    `conn` must be in autocommit mode. Safe to call from several processes at once (see the module docstring);
    raises RuntimeError when the database holds a migration this code does not know.
    """
    key = _schema_key(conn)
    conn.execute("SELECT pg_advisory_lock(%s, %s)", (_MIGRATION_LOCK, key))
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = {int(v) for (v,) in conn.execute("SELECT version FROM schema_migrations")}
        unknown = sorted(applied - {m.version for m in migrations})
        if unknown:
            raise RuntimeError(
                f"the gallery database has schema migrations {unknown}, newer than this code "
                f"(which knows up to {max(m.version for m in migrations)})"
            )
        done = []
        for m in sorted(migrations, key=lambda m: m.version):
            if m.version in applied:
                continue
            with conn.transaction():  # the step and its record commit together, or neither does
                conn.execute(m.sql.encode())  # no parameters: several statements in one go
                conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (m.version, m.name))
            LOG.info("gallery database: applied migration %d (%s)", m.version, m.name)
            done.append(m.version)
        return done
    finally:
        if not conn.closed:
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", (_MIGRATION_LOCK, key))


class _Conn:
    """A psycopg connection speaking `SQLStore`'s `?` placeholders (its SQL holds no other `?` and no `%`)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        return self.conn.execute(sql.replace("?", "%s"), params)

    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), params)


class PostgresStore(SQLStore):
    """`Store` on PostgreSQL (see the module docstring for migrations and the change log's order).

    One connection per process, shared by its threads under a lock, as with SQLite: statements take a
    millisecond or so next to tens of milliseconds of embedding work per image. Writes lock the subject row they
    change (`SELECT ... FOR UPDATE`), so concurrent writes to one subject from several replicas serialise. A
    connection found closed (the server restarted, the network dropped) is replaced at the next call. A write whose
    BEGIN finds the connection dead, and a read (`_read`), are retried once on a new connection; any other call that
    hits the failure raises `psycopg.OperationalError` (a 503 `store_unavailable` over HTTP).
    """

    _FOR_UPDATE = " FOR UPDATE"

    def __init__(self, url: str, connect_timeout: int = 10) -> None:
        self._url = url
        self._connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._db = self._connect()
        try:
            migrate(self._db)
            self._key = _schema_key(self._db)
        except BaseException:
            self._db.close()
            raise
        LOG.info("gallery store: PostgreSQL %s, schema %s", self._db.info.host, self._schema())

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self._url, autocommit=True, connect_timeout=self._connect_timeout)

    def _schema(self) -> str:
        row = self._db.execute("SELECT current_schema()").fetchone()
        return str(row[0]) if row else "?"

    def _connection(self) -> psycopg.Connection[Any]:
        """The live connection, reconnecting once the previous one was lost. Callers hold `_lock`."""
        if self._db.closed:
            LOG.warning("gallery database connection lost: reconnecting")
            self._db = self._connect()
        return self._db

    @contextmanager
    def _tx(self) -> Iterator[_Conn]:
        with self._lock, ExitStack() as stack:
            conn = self._connection()
            try:
                stack.enter_context(conn.transaction())
            except psycopg.OperationalError:
                if not conn.closed:
                    raise
                # The connection died while idle (the server restarted, an admin ended the session): found out at
                # BEGIN, before anything of this write was sent, so the transaction runs as new on a new one.
                conn = self._connection()
                stack.enter_context(conn.transaction())
            yield _Conn(conn)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return super()._read(sql, params)
        except psycopg.OperationalError:
            with self._lock:
                if not self._db.closed:
                    raise
            return super()._read(sql, params)  # a read is safe to repeat, once, on a new connection

    @contextmanager
    def _session(self) -> Iterator[_Conn]:
        with self._lock:
            yield _Conn(self._connection())

    def _before_change(self, db: Any) -> None:
        db.execute("SELECT pg_advisory_xact_lock(?, ?)", (_CHANGES_LOCK, self._key))

    def close(self) -> None:
        with self._lock:
            self._db.close()
