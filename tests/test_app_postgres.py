"""The PostgreSQL gallery store beyond the contract tests shared with SQLite (tests/test_app_store.py): schema
migrations with Alembic (idempotent, safe when replicas start at once, atomic per revision, newer schemas refused,
databases of the earlier numbered migrations adopted), the change log's commit order, catching up after a lost
connection without a rebuild, and two service replicas on one database answering for each other's writes within
a second.

Real PostgreSQL: the local server at 127.0.0.1:5432 (database `test`), each test in a fresh schema (`pg_url` in
conftest.py); every test skips with a reason when no server is running.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pytest
from pydantic import SecretStr, ValidationError
from test_app import artifact, enroll, identify, orl, serve, settings_for  # noqa: F401 (fixtures)

from app.gallery import Gallery
from app.index import IndexParams
from app.settings import Settings
from app.store import NewFace

psycopg = pytest.importorskip("psycopg", reason="needs psycopg (pip install 'psycopg[binary]')")
sqlalchemy = pytest.importorskip("sqlalchemy", reason="needs SQLAlchemy and Alembic (pip install -e .)")
from alembic.script import ScriptDirectory  # noqa: E402 (after the skip)

from app.store_postgres import _MIGRATION_LOCK, MIGRATIONS_DIR, PostgresStore, migrate  # noqa: E402

DIM = 8
MODEL = "m@1#abc"


def face(seed: int, model: str = MODEL) -> NewFace:
    return NewFace(np.random.default_rng(seed).normal(size=DIM).astype(np.float32), model, (1, 2, 3, 4))


@pytest.fixture
def open_pg(pg_url: str) -> Iterator[Callable[[], PostgresStore]]:
    """Opens stores (one connection each, as separate replicas would) on the test's fresh schema."""
    opened: list[PostgresStore] = []

    def opener() -> PostgresStore:
        opened.append(PostgresStore(pg_url))
        return opened[-1]

    yield opener
    for s in opened:
        s.close()


def test_database_url_setting() -> None:
    url = "postgresql://siamface:hunter2@db:5432/gallery"
    s = Settings(_env_file=None, database_url=SecretStr(url))
    assert s.store_backend == "postgresql"
    assert "hunter2" not in repr(s)
    assert "hunter2" not in str(s.model_dump())
    assert Settings(_env_file=None).store_backend == "sqlite"
    assert Settings(_env_file=None, database_url=SecretStr("")).database_url is None  # empty means unset
    with pytest.raises(ValidationError, match="postgresql://"):
        Settings(_env_file=None, database_url=SecretStr("sqlite:///data/gallery.sqlite3"))


def scripts_with(tmp_path: Path, name: str, upgrade_sql: str) -> Path:
    """A copy of the shipped Alembic scripts with one more revision, `name`, after the newest shipped one."""
    scripts = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    (scripts / "versions" / f"{name}_test.py").write_text(
        f"from alembic import op\n\nrevision = {name!r}\ndown_revision = {head!r}\n\n\n"
        f"def upgrade() -> None:\n    op.execute({upgrade_sql!r})\n"
    )
    return scripts


def tables(conn: Any) -> set[str]:
    return {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}


def versions(conn: Any) -> list[str]:
    return [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]


def test_migrations_are_idempotent_and_safe_when_replicas_start_together(pg_url: str, tmp_path: Path) -> None:
    """Six connections migrate one empty schema at once: exactly one applies each revision, the others wait for it
    and find nothing to do (without the advisory lock, concurrent CREATE TABLEs fail). They all wait while another
    session (a replica of another process migrating) holds the schema's migration lock."""
    n = 6
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def start(i: int) -> None:
        barrier.wait()
        try:
            results[i] = migrate(pg_url)
        except Exception as e:  # reported below, with the others' results
            results[i] = e

    threads = [threading.Thread(target=start, args=(i,)) for i in range(n)]
    with psycopg.connect(pg_url, autocommit=True) as other:
        lock = (_MIGRATION_LOCK, other.execute("SELECT hashtext(current_schema())").fetchone()[0])  # type: ignore[index]
        other.execute("SELECT pg_advisory_lock(%s, %s)", lock)
        for t in threads:
            t.start()
        time.sleep(0.5)
        assert all(t.is_alive() for t in threads), results
        assert tables(other) == set()
        other.execute("SELECT pg_advisory_unlock(%s, %s)", lock)
    for t in threads:
        t.join(30)
    assert sorted(map(str, results)) == sorted([str(["0001"])] + ["[]"] * (n - 1))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        # Alembic's version table in the URL's schema (its search_path), next to the gallery's tables.
        assert tables(conn) == {"alembic_version", "subjects", "faces", "changes"}
        assert versions(conn) == ["0001"]
        assert migrate(pg_url) == []  # idempotent
        # A later revision is applied once, on a database that has the earlier ones.
        scripts = scripts_with(tmp_path, "0099", "CREATE TABLE extra (x integer)")
        assert migrate(pg_url, scripts) == ["0099"]
        assert migrate(pg_url, scripts) == []
        assert versions(conn) == ["0099"]
        assert "extra" in tables(conn)
    # Code that does not know revision 0099 refuses that database rather than serving it.
    with pytest.raises(RuntimeError, match=r"revision 0099, newer than this code"):
        migrate(pg_url)
    with pytest.raises(RuntimeError, match=r"revision 0099, newer than this code"):
        PostgresStore(pg_url)


def test_a_failed_migration_leaves_nothing_behind(pg_url: str, tmp_path: Path) -> None:
    broken = scripts_with(tmp_path, "0099", "CREATE TABLE half (x integer); SELECT no_such_column FROM half")
    assert migrate(pg_url) == ["0001"]
    with pytest.raises(sqlalchemy.exc.ProgrammingError) as failure:
        migrate(pg_url, broken)
    assert isinstance(failure.value.orig, psycopg.errors.UndefinedColumn)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert versions(conn) == ["0001"]
        assert conn.execute("SELECT to_regclass('half')").fetchone() == (None,)  # rolled back with its version
        # The migration lock is free again: this session takes it without waiting, and a following migrate runs.
        key = conn.execute("SELECT hashtext(current_schema())").fetchone()[0]  # type: ignore[index]
        assert conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (_MIGRATION_LOCK, key)).fetchone() == (True,)
        conn.execute("SELECT pg_advisory_unlock(%s, %s)", (_MIGRATION_LOCK, key))
    assert migrate(pg_url) == []
    # On an empty schema, a failing revision after 0001 leaves 0001 applied (its own transaction) and no more.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE alembic_version, changes, faces, subjects")
    with pytest.raises(sqlalchemy.exc.ProgrammingError):
        migrate(pg_url, broken)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert versions(conn) == ["0001"]
        assert tables(conn) == {"alembic_version", "subjects", "faces", "changes"}


def test_a_database_of_the_numbered_migrations_is_adopted(open_pg: Callable[[], PostgresStore], pg_url: str) -> None:
    """A gallery created by the numbered-migrations runner that preceded Alembic (`schema_migrations` at step 1,
    the tables of revision 0001, no `alembic_version`) is stamped 0001, not created again: its rows stay."""
    store = open_pg()
    store.add_faces("kept", [face(1)])
    store.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:  # back to what the numbered runner left
        conn.execute("DROP TABLE alembic_version")
        conn.execute(
            "CREATE TABLE schema_migrations ("
            "version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (1, 'gallery')")
    assert migrate(pg_url) == []  # stamped, nothing applied
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert versions(conn) == ["0001"]
        assert tables(conn) == {"alembic_version", "subjects", "faces", "changes"}
    reopened = open_pg()
    assert reopened.get_subject("kept").face_count == 1  # type: ignore[union-attr]
    assert [c.subject_id for c in reopened.changes_since(0)] == ["kept"]
    # A step the numbered runner never shipped is refused, like an unknown revision.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE alembic_version")
        conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL)")
        conn.execute("INSERT INTO schema_migrations VALUES (1, 'gallery'), (2, 'unknown')")
    with pytest.raises(RuntimeError, match=r"schema migrations \[1, 2\].*newer than this code"):
        migrate(pg_url)
    # An empty schema_migrations (its step 1 failed, rolled back) is dropped and the schema migrated as new.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE schema_migrations, changes, faces, subjects")
        conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL)")
    assert migrate(pg_url) == ["0001"]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert tables(conn) == {"alembic_version", "subjects", "faces", "changes"}


def test_replicas_enrolling_one_new_subject_at_once(open_pg: Callable[[], PostgresStore]) -> None:
    """Four replicas create the same subject at the same moment: one creates it, the others add to it (no unique
    violation), and every face lands on the one subject."""
    stores = [open_pg() for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    results: list[Any] = [None] * len(stores)

    def add(i: int) -> None:
        barrier.wait()
        try:
            results[i] = stores[i].add_faces("same", [face(i)])
        except Exception as e:  # reported by the assertion below
            results[i] = e

    threads = [threading.Thread(target=add, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(isinstance(r, tuple) for r in results), results
    assert sorted(created for _, _, created in results) == [False, False, False, True]
    assert stores[0].get_subject("same").face_count == 4  # type: ignore[union-attr]
    assert len({row.pk for row, _, _ in results}) == 1


def test_change_ids_follow_commit_order(open_pg: Callable[[], PostgresStore]) -> None:
    """A writer that took its change id first but has not committed yet holds back a later writer's commit, so a
    follower can never see the later id while the earlier one is still invisible (and skip it for good)."""
    slow, fast, observer = open_pg(), open_pg(), open_pg()
    with slow._tx() as db:  # a writer between its change row and its commit
        slow._record(db, "enroll", 999, "slow", "2026-01-01T00:00:00.000+00:00")
        writer = threading.Thread(target=fast.add_faces, args=("fast", [face(0)]))
        writer.start()
        writer.join(0.5)
        assert writer.is_alive(), "the second writer committed while an earlier change id was uncommitted"
        assert observer.changes_since(0) == []
    writer.join(10)
    assert not writer.is_alive()
    changes = observer.changes_since(0)
    assert [c.subject_id for c in changes] == ["slow", "fast"]
    assert changes[0].change_id < changes[1].change_id


def test_a_replica_catches_up_after_losing_its_connection(
    open_pg: Callable[[], PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server drops replica A's connection while B writes: A's next sync reconnects (a read is retried once on a
    new connection) and applies B's writes from A's last seen change, without rebuilding; a write whose BEGIN meets
    a dropped connection runs on a new one."""
    a = Gallery(open_pg(), DIM, "cosine", "faces", IndexParams(), model_id=MODEL)
    b = Gallery(open_pg(), DIM, "cosine", "faces", IndexParams(), model_id=MODEL)
    a.load()
    b.load()
    a.enroll("before", [face(1)], None, None)
    assert b.sync() == 1
    pid = a.store._db.info.backend_pid  # type: ignore[attr-defined]
    with psycopg.connect(a.store._url, autocommit=True) as admin:  # type: ignore[attr-defined]
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    b.enroll("during", [face(2)], None, None)
    b.delete_subject("before")
    seen = a.last_change

    def no_rebuild() -> None:
        raise AssertionError("the replica rebuilt its gallery instead of catching up")

    monkeypatch.setattr(a, "load", no_rebuild)
    assert a.last_change == seen
    assert a.sync() == 3  # reconnected: its own enrollment (not yet read back) and both of B's changes
    assert [c.subject_id for c in a.search(face(2).embedding, 5)] == ["during"]
    assert a.sizes() == b.sizes() == {"subjects": 1, "faces": 1, "index_size": 1}
    # A write after the connection was dropped while idle: retried at BEGIN on a new connection, stored once.
    pid = a.store._db.info.backend_pid  # type: ignore[attr-defined]
    with psycopg.connect(a.store._url, autocommit=True) as admin:  # type: ignore[attr-defined]
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    a.enroll("after", [face(3)], None, None)
    assert a.store._db.info.backend_pid != pid  # type: ignore[attr-defined]
    assert b.sync() == 3  # its own two writes (not yet read back) and A's
    assert [c.subject_id for c in b.search(face(3).embedding, 1)] == ["after"]
    assert b.sizes() == {"subjects": 2, "faces": 2, "index_size": 2}
    # A read in the middle of a lost connection is retried once; when the server refuses new ones, it raises.
    parts = urlsplit(a.store._url)  # type: ignore[attr-defined]
    user = parts.netloc.rpartition("@")[0]
    a.store._url = urlunsplit(parts._replace(netloc=f"{user}@127.0.0.1:1" if user else "127.0.0.1:1"))  # type: ignore[attr-defined]
    pid = a.store._db.info.backend_pid  # type: ignore[attr-defined]
    with psycopg.connect(b.store._url, autocommit=True) as admin:  # type: ignore[attr-defined]
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(psycopg.OperationalError):
        a.sync()


# ------------------------------------------------------------------------------------ two service replicas
@pytest.fixture
def replicas(artifact: Path, pg_url: str, tmp_path: Path) -> Iterator[tuple[Any, Any]]:  # noqa: F811
    """Two instances of the service (the test face model) on one PostgreSQL gallery, each with its own index."""
    url = SecretStr(pg_url)
    with (
        serve(settings_for(tmp_path / "a", artifact, database_url=url)) as a,
        serve(settings_for(tmp_path / "b", artifact, database_url=url)) as b,
    ):
        yield a, b


def _within_a_second(check: Callable[[], bool], what: str) -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < 1.0, f"{what}: not within 1 s"
        time.sleep(0.02)
    return time.monotonic() - start


@pytest.mark.data
def test_two_replicas_answer_for_each_others_writes(
    replicas: tuple[Any, Any],
    orl: dict[tuple[int, int], bytes],  # noqa: F811
) -> None:
    a, b = replicas
    for s in (1, 2, 3):
        r = enroll(a, f"orl-s{s}", orl[s, 1])
        assert r.status_code == 201, r.text
    # Enrolled through A, identified through B (B's own index, fed by its follower). Changes apply in order:
    # once the last enrollment is there, so are the others.
    _within_a_second(lambda: identify(b, orl[3, 1]).json()["match"] == "orl-s3", "enroll on A, identify on B")
    assert identify(b, orl[2, 1]).json()["match"] == "orl-s2"
    assert b.get("/ready").json()["index_size"] == 3
    # Verify against a subject enrolled through A a moment ago: B catches up on demand (not a 409).
    assert enroll(a, "orl-s5", orl[5, 1]).status_code == 201
    r = b.post(
        "/verify", data={"subject_id": "orl-s5"}, files={"image": ("p.pgm", orl[5, 1], "image/x-portable-graymap")}
    )
    assert r.status_code == 200, r.text
    assert r.json()["match"]
    # Deleted through B, gone from A's answers.
    assert b.delete("/subjects/orl-s2").status_code == 200
    assert a.get("/subjects/orl-s2").status_code == 404  # the store is shared: at once
    _within_a_second(
        lambda: "orl-s2" not in {c["subject_id"] for c in identify(a, orl[2, 1]).json()["candidates"]},
        "delete on B, gone on A",
    )
    assert a.get("/ready").json()["index_size"] == 3
    # One subject given a face through each replica: both faces on both.
    assert enroll(b, "orl-s4", orl[4, 1]).status_code == 201
    assert enroll(a, "orl-s4", orl[4, 2]).status_code == 200
    _within_a_second(
        lambda: all(c.get("/ready").json()["index_size"] == 5 for c in (a, b)), "both faces of one subject on both"
    )
