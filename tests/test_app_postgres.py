"""The PostgreSQL gallery store beyond the contract tests shared with SQLite (tests/test_app_store.py): schema
migrations (idempotent, safe when replicas start at once, newer schemas refused), the change log's commit order,
catching up after a lost connection without a rebuild, and two service replicas on one database answering for
each other's writes within a second.

Real PostgreSQL: the local server at 127.0.0.1:5432 (database `test`), each test in a fresh schema (`pg_url` in
conftest.py); every test skips with a reason when no server is running.
"""

from __future__ import annotations

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
from app.store_postgres import MIGRATIONS, Migration, PostgresStore, migrate  # noqa: E402 (after the skip)

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


def test_migrations_are_idempotent_and_safe_when_replicas_start_together(pg_url: str) -> None:
    """Six connections migrate one empty schema at once: exactly one applies each step, the others wait for it
    and find nothing to do (without the advisory lock, concurrent CREATE TABLEs fail)."""
    n = 6
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def start(i: int) -> None:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            barrier.wait()
            try:
                results[i] = migrate(conn)
            except Exception as e:  # reported below, with the others' results
                results[i] = e

    threads = [threading.Thread(target=start, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(map(str, results)) == sorted([str([m.version for m in MIGRATIONS])] + ["[]"] * (n - 1))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")] == [1]
        assert migrate(conn) == []  # idempotent
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
        assert tables == {"schema_migrations", "subjects", "faces", "changes"}
        # A later step is applied once, in order, on a database that has the earlier ones.
        extra = Migration(2, "test-step", "CREATE TABLE extra (x integer)")
        assert migrate(conn, [*MIGRATIONS, extra]) == [2]
        assert migrate(conn, [*MIGRATIONS, extra]) == []
    # Code that does not know step 2 refuses that database rather than serving it.
    with pytest.raises(RuntimeError, match=r"migrations \[2\], newer than this code"):
        PostgresStore(pg_url)


def test_a_failed_migration_step_leaves_nothing_behind(pg_url: str) -> None:
    broken = Migration(2, "broken", "CREATE TABLE half (x integer); SELECT no_such_column FROM half")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.UndefinedColumn):
            migrate(conn, [*MIGRATIONS, broken])
        assert [r[0] for r in conn.execute("SELECT version FROM schema_migrations")] == [1]
        assert conn.execute("SELECT to_regclass('half')").fetchone() == (None,)  # rolled back with its record
        assert migrate(conn) == []  # and the advisory lock was released


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
