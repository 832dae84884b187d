"""The gallery store and the in-memory gallery over it, with seeded synthetic embeddings whose nearest subjects are
known: round trips, deletion, durability across a killed process, rebuild from the store, the three ways of
matching a subject with several faces, the model-change rules, and a second gallery following the first's writes.

The contract tests run on both backends: real SQLite in a temp dir, and real PostgreSQL in a fresh schema of the
local server (`pg_url` in conftest.py; those cases skip with a reason when no server is running)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from app.errors import FaceNotFound, ModelMismatch, SubjectHasNoFaces, SubjectNotFound
from app.gallery import Gallery, GalleryFollower, reconcile_model
from app.index import IndexParams
from app.store import NewFace, SQLiteStore, Store
from model import distances

REPO = Path(__file__).resolve().parents[1]
DIM = 16
MODEL = "m@1#abc"


def faces(vectors: np.ndarray, model: str = MODEL, crop: bytes | None = None, spec: str | None = None) -> list[NewFace]:
    return [NewFace(v, model, (1, 2, 3, 4), crop, spec, f"img{i}.jpg") for i, v in enumerate(vectors)]


@pytest.fixture(params=["sqlite", "postgresql"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """Opens stores on one new, empty gallery of the parametrised backend: each call another connection to it,
    as another process (a replica, the CLI) would have. All are closed after the test."""
    if request.param == "sqlite":

        def make() -> Store:
            return SQLiteStore(tmp_path / "gallery.sqlite3")
    else:
        from app.store_postgres import PostgresStore

        url = request.getfixturevalue("pg_url")  # skips without a server

        def make() -> Store:
            return PostgresStore(url)

    opened: list[Store] = []

    def opener() -> Store:
        opened.append(make())
        return opened[-1]

    yield opener
    for s in opened:
        s.close()


@pytest.fixture
def store(open_store: Callable[[], Store]) -> Store:
    return open_store()


def test_store_round_trip(store: Store) -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(size=(3, DIM)).astype(np.float32)
    row, ids, created = store.add_faces("alice", faces(v[:2]), name="Alice", metadata={"team": "a"})
    assert created
    assert row.subject_id == "alice"
    assert row.face_count == 2
    assert row.metadata == {"team": "a"}
    row2, ids2, created2 = store.add_faces("alice", faces(v[2:]), metadata={"team": "b"})
    assert not created2
    assert row2.face_count == 3
    assert row2.name == "Alice"
    assert row2.metadata == {"team": "b"}
    assert ids2[0] > ids[1]
    stored = [e for batch in store.iter_embeddings(batch=2) for e in batch]  # several batches
    assert [e.face_id for e in stored] == ids + ids2
    np.testing.assert_array_equal(np.stack([e.vector for e in stored]), v)  # bit-exact float32
    assert [f.source for f in store.faces_of("alice")] == ["img0.jpg", "img1.jpg", "img0.jpg"]
    assert store.model_counts() == {MODEL: 3}
    store.add_faces("bob", faces(v[:1]))
    page, total = store.list_subjects(offset=1, limit=1)
    assert total == 2
    assert [r.subject_id for r in page] == ["bob"]
    assert store.delete_face("alice", ids[0])
    assert not store.delete_face("alice", ids[0])
    assert not store.delete_face("bob", ids[1])  # a face of another subject
    assert store.delete_subject("alice") == [ids[1], ids2[0]]
    assert store.delete_subject("alice") is None
    assert store.counts() == (1, 1)
    # Ids are never reused, even after deletions of the latest rows.
    _, ids3, _ = store.add_faces("carol", faces(v[:1]))
    assert ids3[0] > ids2[0]


def test_an_acknowledged_enrollment_survives_a_killed_process(tmp_path: Path) -> None:
    """A child process commits, prints the face id (the acknowledgement), and dies without closing anything."""
    db = tmp_path / "gallery.sqlite3"
    child = textwrap.dedent(f"""
        import os, numpy as np
        from app.store import NewFace, SQLiteStore
        s = SQLiteStore({str(db)!r})
        _, ids, _ = s.add_faces("alice", [NewFace(np.arange({DIM}, dtype=np.float32), "m")])
        print(ids[0], flush=True)
        os._exit(9)  # no close, no checkpoint, no atexit
    """)
    out = subprocess.run([sys.executable, "-c", child], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 9, out.stderr
    face_id = int(out.stdout.strip())
    reopened = SQLiteStore(db)
    try:
        [[e]] = list(reopened.iter_embeddings())
        assert e.face_id == face_id
        assert e.subject_id == "alice"
        np.testing.assert_array_equal(e.vector, np.arange(DIM, dtype=np.float32))
    finally:
        reopened.close()


def people(n_subjects: int, per: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Faces of `n_subjects` people, `per` each: a centre per person plus noise. Returns (vectors, labels)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_subjects, DIM))
    labels = np.repeat(np.arange(n_subjects), per)
    return (centres[labels] + 0.2 * rng.normal(size=(len(labels), DIM))).astype(np.float32), labels


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_gallery_search_delete_and_rebuild(store: Store, kind: str) -> None:
    x, labels = people(60, 3, seed=1)
    g = Gallery(store, DIM, "cosine", "faces", IndexParams(kind=kind))
    g.load()
    for s in range(60):
        g.enroll(f"p{s}", faces(x[labels == s]), None, None)
    probe = x[labels == 7][0] + 0.05
    best = g.search(probe, 5)
    assert best[0].subject_id == "p7"
    assert best[0].basis == "face"
    assert len({c.subject_id for c in best}) == 5
    assert [c.value for c in best] == sorted((c.value for c in best), reverse=True)
    assert g.compare(probe, "p7") == best[0]  # the same exact value either way
    g.delete_subject("p7")
    assert "p7" not in {c.subject_id for c in g.search(probe, 60)}
    with pytest.raises(SubjectNotFound):
        g.compare(probe, "p7")
    # A second gallery over the same store (a restart) answers exactly the same.
    g2 = Gallery(store, DIM, "cosine", "faces", IndexParams(kind=kind))
    g2.load()
    for q in x[::17]:
        assert g2.search(q, 3) == g.search(q, 3)
    assert g2.sizes() == g.sizes() == {"subjects": 59, "faces": 177, "index_size": 177}


@pytest.mark.parametrize("match", ["faces", "mean", "both"])
def test_subjects_with_several_faces(store: Store, match: str) -> None:
    x, labels = people(20, 4, seed=2)
    g = Gallery(store, DIM, "cosine", match, IndexParams())
    g.load()
    ids = {s: g.enroll(f"p{s}", faces(x[labels == s]), None, None)[1] for s in range(20)}
    probe = x[labels == 3].mean(0) + 0.1
    cos = distances.get("cosine")
    face_values = cos.pairwise(probe[None], x[labels == 3])[0]
    mean = distances.normalize(x[labels == 3]).mean(0)
    mean_value = float(cos.pairwise(probe[None], mean[None])[0, 0])
    c = g.compare(probe, "p3")
    if match == "faces":
        assert c.basis == "face"
        assert c.face_id == ids[3][int(face_values.argmax())]
        assert c.value == pytest.approx(float(face_values.max()), abs=1e-6)
    elif match == "mean":
        assert c.basis == "mean"
        assert c.face_id is None
        assert c.value == pytest.approx(mean_value, abs=1e-6)
    else:
        assert c.value == pytest.approx(max(mean_value, float(face_values.max())), abs=1e-6)
    assert g.search(probe, 1)[0] == c
    assert g.sizes()["index_size"] == {"faces": 80, "mean": 20, "both": 80}[match]
    # Removing a face changes the mean too.
    g.delete_face("p3", ids[3][0])
    assert g.sizes()["faces"] == 79
    for fid in ids[3][1:]:
        g.delete_face("p3", fid)
    with pytest.raises(SubjectHasNoFaces):
        g.compare(probe, "p3")
    assert "p3" not in {c.subject_id for c in g.search(probe, 20)}
    with pytest.raises(FaceNotFound):
        g.delete_face("p4", ids[3][0])
    with pytest.raises(SubjectNotFound):
        g.delete_face("nobody", 1)


def test_both_reports_a_one_face_subject_by_its_face(store: Store) -> None:
    """With one face the mean is that face: "both" must not flip to "mean" on a float rounding."""
    x, _ = people(30, 1, seed=6)
    g = Gallery(store, DIM, "cosine", "both", IndexParams())
    g.load()
    ids = [g.enroll(f"p{i}", faces(x[i : i + 1]), None, None)[1][0] for i in range(30)]
    probes = x + 0.3 * np.random.default_rng(7).normal(size=x.shape).astype(np.float32)
    for i, probe in enumerate(probes):
        c = g.compare(probe, f"p{i}")
        assert (c.basis, c.face_id) == ("face", ids[i])
        assert [(h.basis, h.face_id is not None) for h in g.search(probe, 5)] == [("face", True)] * 5


def test_euclidean_gallery_ranks_by_smallest(store: Store) -> None:
    x, labels = people(10, 2, seed=3)
    g = Gallery(store, DIM, "euclidean", "both", IndexParams())
    g.load()
    for s in range(10):
        g.enroll(f"p{s}", faces(x[labels == s]), None, None)
    found = g.search(x[0], 3)
    assert found[0].subject_id == "p0"
    assert found[0].value == pytest.approx(0.0, abs=1e-5)
    assert [c.value for c in found] == sorted(c.value for c in found)


def test_model_change_is_refused_unless_reembedding_from_crops(store: Store) -> None:
    x, _ = people(2, 2, seed=4)
    store.add_faces("a", faces(x[:2], model="old", crop=b"png-a", spec="S"))
    store.add_faces("b", faces(x[2:], model="new", crop=b"png-b", spec="S"))

    def embed(pngs: list[bytes]) -> np.ndarray:
        return np.stack([np.full(DIM, len(p) + i, np.float32) for i, p in enumerate(pngs)])

    with pytest.raises(ModelMismatch, match="SIAMFACE_REEMBED"):
        reconcile_model(store, "newer", "S", embed, reembed=False)
    with pytest.raises(ModelMismatch, match="aligned differently"):
        reconcile_model(store, "newer", "other-spec", embed, reembed=True)
    assert store.model_counts() == {"old": 2, "new": 2}  # refused before changing anything
    assert reconcile_model(store, "newer", "S", embed, reembed=True) == 4
    assert store.model_counts() == {"newer": 4}
    assert reconcile_model(store, "newer", "S", embed, reembed=False) == 0
    store.add_faces("c", faces(x[:1], model="other"))  # enrolled without a crop
    with pytest.raises(ModelMismatch, match="no stored crop"):
        reconcile_model(store, "newer", "S", embed, reembed=True)


@pytest.mark.parametrize("match", ["faces", "both"])
def test_a_second_gallery_follows_writes_through_the_change_log(open_store: Callable[[], Store], match: str) -> None:
    """Two galleries on one store through two connections (two replicas; a server and `siamface enroll`): each
    one's `sync` applies what the other wrote (enrollments, a face deletion, a subject deletion, a subject made
    again under the same id), skips faces of another model, and ends up answering as a fresh load does."""
    x, labels = people(12, 3, seed=5)

    def gallery() -> Gallery:
        g = Gallery(open_store(), DIM, "cosine", match, IndexParams(), model_id=MODEL)
        g.load()
        return g

    a, b = gallery(), gallery()
    ids = {s: a.enroll(f"p{s}", faces(x[labels == s]), None, None)[1] for s in range(12)}
    probes = x[::4] + 0.05
    assert b.search(probes[0], 3) == []
    assert b.sync() == 12
    assert b.sync() == 0  # nothing new
    assert a.sync() == 12  # its own writes: read, and nothing to change
    for q in probes:
        assert b.search(q, 5) == a.search(q, 5)

    b.delete_face("p4", ids[4][0])
    b.delete_subject("p5")
    b.enroll("p7", faces(x[labels == 7][:1] + 0.01), None, None)
    a.sync()
    assert a.compare(x[labels == 4][0], "p4").face_id != ids[4][0]
    assert "p5" not in {c.subject_id for c in a.search(x[labels == 5][0], 12)}
    assert a.compare(x[labels == 7][0] + 0.01, "p7").value == pytest.approx(1.0, abs=1e-6)
    b.enroll("p5", faces(x[labels == 5][:1]), None, None)  # the same id again: a new subject row
    # A subject `a` has no faces for sends `compare` to the change log first (enroll on one replica, verify on
    # another at once), where `search` answers from memory alone.
    assert a.compare(x[labels == 5][0], "p5").value == pytest.approx(1.0, abs=1e-6)
    assert a.sync() == 0
    assert a.search(x[labels == 5][0], 1)[0].subject_id == "p5"
    fresh = gallery()
    for q in probes:
        assert a.search(q, 5) == b.search(q, 5) == fresh.search(q, 5)
    assert (
        a.sizes() == b.sizes() == fresh.sizes() == {"subjects": 12, "faces": 34, "index_size": a.sizes()["index_size"]}
    )

    # Another model's face (a replica still on the old model, during an upgrade): in the store, not in memory.
    alien = np.random.default_rng(7).normal(size=(1, DIM)).astype(np.float32)
    index_size = a.sizes()["index_size"]
    b.store.add_faces("p8", faces(alien, model="other"))
    a.sync()
    assert a.compare(alien[0], "p8").face_id in ids[8]
    assert a.sizes() == {"subjects": 12, "faces": 35, "index_size": index_size}  # the store has it, the index not


def test_the_follower_thread_applies_writes_within_a_second(open_store: Callable[[], Store]) -> None:
    x, _ = people(2, 1, seed=6)
    writer = Gallery(open_store(), DIM, "cosine", "faces", IndexParams())
    reader = Gallery(open_store(), DIM, "cosine", "faces", IndexParams())
    writer.load()
    reader.load()
    follower = GalleryFollower(reader, interval=0.05)
    follower.start()
    try:
        for action in ("enroll", "delete"):
            start = time.monotonic()
            if action == "enroll":
                writer.enroll("ada", faces(x[:1]), None, None)
            else:
                writer.delete_subject("ada")
            want = ["ada"] if action == "enroll" else []
            while [c.subject_id for c in reader.search(x[0], 1)] != want:
                assert time.monotonic() - start < 1.0, f"{action} not seen within 1 s"
                time.sleep(0.01)
        assert follower.healthy
    finally:
        follower.stop()
