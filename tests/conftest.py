"""Shared fixtures. Tests that need ../shared/data use `data_root` and skip with a reason when absent; tests that
need PostgreSQL use `pg_url` (a fresh schema of the local server) and skip with a reason when none is running."""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("SIAMFACE_DATA", REPO.parent / "shared" / "data"))
# Development and CI machines run PostgreSQL on 127.0.0.1:5432 with trust auth and a database `test`; the role
# is `postgres` on some and the OS user's on others. SIAMFACE_TEST_DATABASE_URL points elsewhere.
PG_CANDIDATES = (
    os.environ.get("SIAMFACE_TEST_DATABASE_URL"),
    "postgresql://postgres@127.0.0.1:5432/test",
    "postgresql://127.0.0.1:5432/test",
)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared dataset folder; skips the test when it (or Omniglot inside it) is absent."""
    if not (DATA_ROOT / "omniglot" / "images_background.zip").is_file():
        pytest.skip(f"needs the shared datasets at {DATA_ROOT} (set SIAMFACE_DATA to point elsewhere)")
    return DATA_ROOT


@pytest.fixture(scope="session")
def load_bench() -> Callable[[str], ModuleType]:
    """Imports `bench/<name>.py` as the module `bench_<name>` (registered in sys.modules: dataclasses look their
    module up), for tests of a benchmark's bookkeeping."""

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module

    return load


def make_glyph_folder(root: Path, classes: int = 6, per_class: int = 10, size: int = 28, seed: int = 0) -> Path:
    """Write `root/class_k/img_j.png`: each class a random polygon ("glyph"), each image a jittered copy.

    A real image folder whose ground truth is known by construction: a learnable few-shot task.
    """
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    for k in range(classes):
        shape = rng.uniform(0.2, 0.8, size=(rng.integers(3, 7), 2)) * size
        (root / f"class_{k}").mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            angle = rng.uniform(-0.3, 0.3)
            rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
            pts = (shape - size / 2) @ rot.T + size / 2 + rng.uniform(-2, 2, size=2)
            img = Image.new("L", (size, size), 0)
            ImageDraw.Draw(img).polygon([tuple(p) for p in pts], outline=255, width=2)
            img.save(root / f"class_{k}" / f"img_{j}.png")
    return root


@pytest.fixture
def glyph_folder(tmp_path: Path) -> Path:
    return make_glyph_folder(tmp_path / "glyphs")


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The URL of the test PostgreSQL server's database; skips the test when none answers."""
    psycopg = pytest.importorskip("psycopg", reason="needs psycopg (pip install 'psycopg[binary]')")
    failures = []
    for url in filter(None, PG_CANDIDATES):
        try:
            with psycopg.connect(url, connect_timeout=3):
                return url
        except psycopg.Error as e:
            failures.append(f"{url}: {(str(e).strip() or type(e).__name__).splitlines()[0]}")
    pytest.skip(
        "needs PostgreSQL on 127.0.0.1:5432 (database test) or SIAMFACE_TEST_DATABASE_URL; " + "; ".join(failures)
    )


def with_search_path(url: str, schema: str) -> str:
    """`url` with its sessions' search_path set to `schema` (libpq's `options` parameter)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"] + [("options", f"-csearch_path={schema}")]
    return urlunsplit(parts._replace(query=urlencode(query)))


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A URL whose sessions use a new, empty schema of the test database, dropped after the test: tests never
    see each other's tables, and may run in parallel."""
    import psycopg

    schema = f"siamface_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield with_search_path(pg_server, schema)
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
