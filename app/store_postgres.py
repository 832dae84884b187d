"""`PostgresStore`: the gallery in a PostgreSQL database shared by several service replicas.

Selected by `SIAMFACE_DATABASE_URL=postgresql://user:password@host:port/dbname` (any libpq connection URL; add
`?options=-csearch_path%3Dmyschema` to keep the tables in a schema of your own). The database, and the schema
when one is named, must exist; the tables are created by the schema migrations.

Schema migrations: Alembic, with its scripts inside the package (`app/migrations/`: `env.py`, one raw-SQL revision
per file in `versions/`, numbered 0001, 0002, ...; its README says how to add one). `migrate()` runs at start on a
SQLAlchemy connection of its own, made by psycopg from the same libpq URL (so the URL's options, search_path
included, apply: `alembic_version` lives in the gallery's schema), and hands it to `env.py`; the configuration is
built in code, no alembic.ini is read. It holds a session-level advisory lock (keyed by the schema) around the
upgrade, so replicas starting at once apply every revision exactly once: the others wait, then find nothing to
do. Each revision runs in its own transaction with its `alembic_version` update (PostgreSQL's DDL is
transactional), so a failing one leaves nothing behind. A database at a revision this code does not know (migrated
by newer code) is refused with RuntimeError rather than served. A schema made by the numbered-migrations runner
that preceded Alembic (a `schema_migrations` table recording step 1, whose tables are revision 0001's) is adopted:
stamped 0001 and its `schema_migrations` dropped, in one transaction, its tables and rows untouched. The store's
own queries stay on its psycopg connection (plain SQL shared with the SQLite backend); SQLAlchemy serves the
migrations only.

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
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from sqlalchemy.pool import NullPool

from app.store import SQLStore

LOG = logging.getLogger(__name__)

# Advisory lock keys are (class, object) pairs: the class says what is locked, the object is a hash of the schema
# the gallery lives in, so galleries in different schemas of one database never wait on each other.
_MIGRATION_LOCK = 0x5346_0001  # "SF", 1
_CHANGES_LOCK = 0x5346_0002

# The Alembic scripts (env.py, versions/), shipped inside the package.
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# The revision whose schema is that of the numbered-migrations runner's step 1, which Alembic replaced.
_ADOPTED = "0001"
# Alembic's `context` and `op` are module-level proxies: one command at a time per process. Taken after the
# advisory lock, so it serialises only migrations of different schemas, never the replicas' wait on the database.
_ALEMBIC = threading.Lock()


def _schema_key(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT current_schema(), hashtext(current_schema())").fetchone()
    if row is None or row[0] is None:
        raise RuntimeError("no schema of the database URL's search_path exists: create it first")
    return int(row[1])


def _alembic_config(connection: sa.Connection, script_location: str | Path) -> AlembicConfig:
    """Alembic's configuration, in code (no alembic.ini): the script folder and the connection for env.py."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(script_location).replace("%", "%%"))  # configparser syntax
    cfg.attributes["connection"] = connection
    return cfg


def _heads(connection: sa.Connection) -> set[str]:
    """The revisions `alembic_version` names (none when the table is absent); leaves no transaction open."""
    with connection.begin():
        if connection.execute(sa.text("SELECT to_regclass('alembic_version')")).scalar() is None:
            return set()
        return set(connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())


def _adopt_numbered_schema(connection: sa.Connection, cfg: AlembicConfig, script: ScriptDirectory) -> None:
    """A schema made by the numbered-migrations runner that preceded Alembic (its `schema_migrations` records
    step 1, the tables of revision 0001) is stamped 0001 and loses `schema_migrations`, in one transaction: its
    tables and rows are kept as they are. An empty `schema_migrations` (step 1 failed) is dropped, and the schema
    migrated as new; a step the runner never had is refused."""
    with connection.begin():
        if connection.execute(sa.text("SELECT to_regclass('schema_migrations')")).scalar() is None:
            return
        steps = set(connection.execute(sa.text("SELECT version FROM schema_migrations")).scalars())
        if steps - {1}:
            raise RuntimeError(
                f"the gallery database has schema migrations {sorted(steps)} (schema_migrations), newer than this "
                f"code (which knows step 1 of those, then Alembic revisions up to {script.get_current_head()})"
            )
        connection.execute(sa.text("DROP TABLE schema_migrations"))
        if steps:
            command.stamp(cfg, _ADOPTED)  # in this transaction (env.py runs inside the caller's)
            LOG.info("gallery database: adopted the numbered migrations' schema as revision %s", _ADOPTED)


def migrate(url: str, script_location: str | Path = MIGRATIONS_DIR, connect_timeout: int = 10) -> list[str]:
    """Bring the schema of the database URL up to date; returns the revisions applied now, oldest first (empty
    when it was current).

    `url` is the store's libpq URL (its options, search_path included, apply). `script_location` is the Alembic
    script folder (the shipped one, or a test's). Safe to call from several processes or threads at once (see the
    module docstring); raises RuntimeError when the database holds a revision this code does not know.
    """
    # The store's own URL through libpq, not re-parsed by SQLAlchemy: every libpq form (several hosts, a socket
    # folder, options=-csearch_path...) means the same here. NullPool: the connection closes at the end.
    engine = sa.create_engine(
        "postgresql+psycopg://",
        creator=lambda: psycopg.connect(url, connect_timeout=connect_timeout),
        poolclass=NullPool,
    )
    try:
        with engine.connect() as connection:
            return _migrate(connection, script_location)
    finally:
        engine.dispose()


def _migrate(connection: sa.Connection, script_location: str | Path) -> list[str]:
    """`migrate` on an open connection: the advisory lock around `_upgrade`."""
    with connection.begin():
        schema, key = connection.execute(sa.text("SELECT current_schema(), hashtext(current_schema())")).one()
        if schema is None:
            raise RuntimeError("no schema of the database URL's search_path exists: create it first")
        # Session-level: held across the transactions below, until the unlock (or the end of the session).
        connection.execute(sa.text("SELECT pg_advisory_lock(:cls, :key)"), {"cls": _MIGRATION_LOCK, "key": key})
    try:
        with _ALEMBIC:
            return _upgrade(connection, script_location)
    finally:
        try:
            if not connection.closed and not connection.invalidated:
                connection.rollback()  # whatever a failure left open
                connection.execute(sa.text("SELECT pg_advisory_unlock(:c, :k)"), {"c": _MIGRATION_LOCK, "k": key})
                connection.commit()
        except sa.exc.DBAPIError as e:  # the session, and the lock with it, ends when the connection closes
            LOG.warning("gallery database: could not release the migration lock: %s", e)


def _upgrade(connection: sa.Connection, script_location: str | Path) -> list[str]:
    """Adopt a schema of the numbered migrations, refuse an unknown revision, then upgrade to the head."""
    cfg = _alembic_config(connection, script_location)
    script = ScriptDirectory.from_config(cfg)
    known = {rev.revision for rev in script.walk_revisions()}
    before = _heads(connection)
    if not before:
        _adopt_numbered_schema(connection, cfg, script)
        before = _heads(connection)
    unknown = sorted(before - known)
    if unknown:
        raise RuntimeError(
            f"the gallery database is at schema revision {', '.join(unknown)}, newer than this code "
            f"(which knows revisions up to {script.get_current_head()})"
        )
    command.upgrade(cfg, "head")  # one transaction per revision (env.py)
    connection.commit()  # Alembic's reads of alembic_version autobegin a transaction it leaves open when idle
    after = _heads(connection)
    if after == before:
        return []
    done = [rev.revision for rev in script.iterate_revisions(tuple(after), tuple(before) or "base")][::-1]
    LOG.info("gallery database: applied schema revisions %s", ", ".join(done))
    return done


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
        self._db = self._connect()  # first: an unreachable database is a psycopg.OperationalError, as later on
        try:
            migrate(url, connect_timeout=connect_timeout)  # on a connection of its own, closed when done
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
