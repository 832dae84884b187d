"""The fast part of issue 6's proofs (the long ones, against real server processes, are bench/reliability.py, with
their figures in bench/results/reliability.md): a corpus of hostile images, API keys on every keyed operation,
byte and pixel limits, subject ids and text fields that cannot inject SQL or paths (nor break PostgreSQL), keys
and embeddings absent from logs and /metrics, and one kill -9 of a real server mid-enrollment.

The images are made here, by the tests (nothing binary is committed). Each one's answer is pinned: the status and
the error code, in the one error shape.
"""

from __future__ import annotations

import io
import json
import logging
import re
import secrets
import struct
import sys
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import SecretStr
from test_app import (  # noqa: F401 (fixtures)
    BLANK,
    KEY,
    REPO,
    artifact,
    assert_error,
    client,
    enroll,
    identify,
    orl,
    png,
    serve,
    settings_for,
    upload,
)

from app.store import SQLiteStore


# ------------------------------------------------------------------------------------------ the corpus
def encoded(img: Image.Image, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_with_size(width: int, height: int) -> bytes:
    """A valid 1×1 PNG whose IHDR claims width × height (CRC fixed)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0\0")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def real_png_bomb(width: int = 8000, height: int = 6000) -> bytes:
    """A real, fully decodable all-black PNG: 48 MP (over the 40 MP default) in about 50 KB."""
    return encoded(Image.new("L", (width, height), 0), "PNG", compress_level=9)


def gif_with_size(width: int, height: int) -> bytes:
    data = bytearray(encoded(Image.new("L", (8, 8), 128), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)  # the logical screen
    i = data.index(b"\x2c")  # the image descriptor
    data[i + 5 : i + 9] = struct.pack("<HH", width, height)
    return bytes(data)


def bmp_with_size(width: int, height: int) -> bytes:
    data = bytearray(encoded(Image.new("RGB", (4, 4), (9, 9, 9)), "BMP"))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def jpeg_with_size(width: int, height: int) -> bytes:
    data = bytearray(encoded(Image.new("RGB", (16, 16), (90, 90, 90)), "JPEG"))
    i = data.index(b"\xff\xc0")  # baseline SOF0: length (2), precision (1), height (2), width (2)
    data[i + 5 : i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def tiff_with_size(width: int, height: int) -> bytes:
    img = Image.new("L", (4, 4), 50)
    data = bytearray(encoded(img, "TIFF"))
    # Little-endian TIFF: the IFD's ImageWidth (256) and ImageLength (257) entries, type SHORT or LONG.
    ifd = struct.unpack("<I", data[4:8])[0]
    for k in range(struct.unpack("<H", data[ifd : ifd + 2])[0]):
        e = ifd + 2 + 12 * k
        tag, _type = struct.unpack("<HH", data[e : e + 4])
        if tag in (256, 257):
            value = width if tag == 256 else height
            data[e + 2 : e + 12] = struct.pack("<HII", 4, 1, value)  # LONG, count 1
    return bytes(data)


def png_text_bomb() -> bytes:
    """A small PNG with a zTXt chunk that inflates to 64 MB of text (Pillow caps text chunks)."""
    base = encoded(Image.new("L", (32, 32), 200), "PNG")
    ztxt = b"Comment\0\0" + zlib.compress(b"A" * (64 * 2**20), 9)
    end = base.index(b"IDAT") - 4
    return base[:end] + chunk(b"zTXt", ztxt) + base[end:]


def animated_gif(frames: int = 200) -> bytes:
    images = [Image.new("L", (64, 64), (7 * k) % 256) for k in range(frames)]
    return encoded(images[0], "GIF", save_all=True, append_images=images[1:], duration=10, loop=0)


def multipage_tiff(pages: int = 50) -> bytes:
    images = [Image.new("L", (64, 64), (5 * k) % 256) for k in range(pages)]
    return encoded(images[0], "TIFF", save_all=True, append_images=images[1:])


def zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("payload.txt", "polyglot")
    return buf.getvalue()


def jpeg_with_comment(comment: bytes) -> bytes:
    data = encoded(Image.new("RGB", (160, 160), (120, 130, 140)), "JPEG")
    com = b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment
    return data[:2] + com + data[2:]  # right after SOI


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="4000" height="4000"><circle r="100"/></svg>'
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n(pwned) print showpage\n%%EOF\n"
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"

# name: (bytes, file name, content type, status, error code). Whatever the name or content type claims, the bytes
# decide: a decodable image with no face is a 422 `no_face`, anything else a 4xx with its reason, never a 5xx.
# fmt: off
HOSTILE: dict[str, tuple[Callable[[], bytes], str, str, int, str]] = {
    "zero_bytes_1": (lambda: b"\0", "a.png", "image/png", 415, "undecodable"),
    "zero_bytes_1mb": (lambda: bytes(2**20), "a.jpg", "image/jpeg", 415, "undecodable"),
    "truncated_png": (lambda: encoded(Image.new("RGB", (64, 64), 9), "PNG")[:60], "t.png", "image/png", 415,
                      "undecodable"),
    "truncated_gif": (lambda: encoded(Image.new("L", (64, 64), 9), "GIF")[:30], "t.gif", "image/gif", 415,
                      "undecodable"),
    "png_zero_width": (lambda: png_with_size(0, 10), "z.png", "image/png", 415, "undecodable"),
    "real_png_bomb_48mp": (real_png_bomb, "bomb.png", "image/png", 413, "image_too_large"),
    "png_claims_4g_pixels": (lambda: png_with_size(65535, 65535), "h.png", "image/png", 413, "image_too_large"),
    "gif_claims_65535x65535": (lambda: gif_with_size(65535, 65535), "h.gif", "image/gif", 413, "image_too_large"),
    "bmp_claims_10g_pixels": (lambda: bmp_with_size(100_000, 100_000), "h.bmp", "image/bmp", 413,
                              "image_too_large"),
    "jpeg_claims_65500x65500": (lambda: jpeg_with_size(65500, 65500), "h.jpg", "image/jpeg", 413,
                                "image_too_large"),
    "tiff_claims_10g_pixels": (lambda: tiff_with_size(100_000, 100_000), "h.tif", "image/tiff", 413,
                               "image_too_large"),
    "png_ztxt_bomb": (png_text_bomb, "text.png", "image/png", 415, "undecodable"),
    "svg": (lambda: SVG, "face.svg", "image/svg+xml", 415, "undecodable"),
    "eps_never_run": (lambda: EPS, "face.eps", "application/postscript", 415, "undecodable"),
    "pdf": (lambda: PDF, "face.pdf", "application/pdf", 415, "undecodable"),
    "ico_not_allowed": (lambda: encoded(Image.new("RGB", (64, 64), 9), "ICO"), "f.ico", "image/x-icon", 415,
                        "undecodable"),
    "tga_not_allowed": (lambda: encoded(Image.new("RGB", (64, 64), 9), "TGA"), "f.tga", "image/x-tga", 415,
                        "undecodable"),
    "html_with_gif_magic": (lambda: b"GIF89a<script>alert(1)</script>", "x.gif", "image/gif", 415, "undecodable"),
    "png_then_zip_polyglot": (lambda: BLANK + zip_bytes(), "p.png", "image/png", 422, "no_face"),
    "jpeg_with_php_comment": (lambda: jpeg_with_comment(b"<?php system($_GET['c']); ?>"), "p.jpg", "image/jpeg",
                              422, "no_face"),
    "png_named_jpg": (lambda: BLANK, "photo.jpg", "image/jpeg", 422, "no_face"),
    "png_as_svg_type": (lambda: BLANK, "photo.svg", "image/svg+xml", 422, "no_face"),
    "jpeg_named_exe": (lambda: jpeg_with_comment(b"x"), "setup.exe", "application/x-msdownload", 422, "no_face"),
    "animated_gif_200_frames": (animated_gif, "a.gif", "image/gif", 422, "no_face"),
    "multipage_tiff_50_pages": (multipage_tiff, "m.tif", "image/tiff", 422, "no_face"),
    "path_and_nul_in_file_name": (lambda: BLANK, "../../etc/passwd\x00.png", "image/png", 422, "no_face"),
}
# fmt: on


@pytest.fixture(scope="module")
def corpus() -> dict[str, bytes]:
    return {name: make() for name, (make, *_) in HOSTILE.items()}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_images(client: TestClient, corpus: dict[str, bytes], case: str) -> None:  # noqa: F811
    _, filename, ctype, status, code = HOSTILE[case]
    data = corpus[case]
    assert_error(client.post("/identify", files={"image": (filename, data, ctype)}), status, code)
    r = client.post("/enroll", data={"subject_id": f"hostile-{case}"}, files={"images": (filename, data, ctype)})
    err = assert_error(r, status, code)
    assert [d["rejection"]["code"] for d in err["details"]] == [code]
    assert_error(client.get(f"/subjects/hostile-{case}"), 404, "subject_not_found")  # nothing stored
    r = client.post("/verify", files={"image": (filename, data, ctype), "reference": upload(BLANK, "r.png")})
    assert_error(r, status, code)


@pytest.mark.data
def test_a_face_is_read_from_its_bytes_whatever_its_name_says(
    client: TestClient,  # noqa: F811
    orl: dict[tuple[int, int], bytes],  # noqa: F811
) -> None:
    face = orl[26, 1]  # a PGM
    r = client.post("/enroll", data={"subject_id": "named-wrong"}, files={"images": ("me.svg", face, "image/svg+xml")})
    assert r.status_code == 201, r.text
    assert r.json()["images"][0]["filename"] == "me.svg"
    r = client.post("/identify", files={"image": ("x.exe", face + zip_bytes(), "application/octet-stream")})
    assert r.status_code == 200, r.text
    assert r.json()["candidates"][0]["subject_id"] == "named-wrong"  # a polyglot's image part is what counts


# -------------------------------------------------------------------------------------------- security
def test_every_keyed_operation_refuses_a_missing_or_wrong_key(client: TestClient) -> None:  # noqa: F811
    """Every operation the schema marks as keyed answers 401 without a key and 403 with a wrong one, before doing
    anything; the operations that need no key are reads."""
    anonymous = TestClient(client.app)  # the running app, no key (no `with`: no second lifespan)
    assert enroll(client, "keyed", BLANK).status_code == 422  # the gallery is reachable with the key
    paths = client.get("/openapi.json").json()["paths"]
    keyed, open_ops = [], []
    for path, ops in paths.items():
        for method, op in ops.items():
            (keyed if op.get("security") else open_ops).append((method.upper(), path))
    assert {m for m, _ in open_ops} <= {"GET", "HEAD"}, open_ops
    assert {(m, p) for m, p in keyed} >= {
        ("POST", "/enroll"), ("POST", "/verify"), ("POST", "/identify"), ("GET", "/subjects"),
        ("GET", "/subjects/{subject_id}"), ("DELETE", "/subjects/{subject_id}"),
        ("DELETE", "/subjects/{subject_id}/faces/{face_id}"), ("GET", "/model"),
    }  # fmt: skip
    before = client.get("/subjects").json()["count"]
    for method, path in keyed:
        url = path.replace("{subject_id}", "keyed-new").replace("{face_id}", "1")
        files = {"image": upload(BLANK), "images": upload(BLANK)} if method == "POST" else None
        data = {"subject_id": "keyed-new"} if method == "POST" else None
        for headers, status, code in (({}, 401, "unauthorized"), ({"X-API-Key": KEY + "x"}, 403, "forbidden"),
                                      ({"X-API-Key": ""}, 401, "unauthorized")):  # fmt: skip
            r = anonymous.request(method, url, headers=headers, files=files, data=data)
            assert_error(r, status, code)
            assert KEY not in r.text
    assert client.get("/subjects").json()["count"] == before


SQL_AND_PATHS = ["x'; DROP TABLE subjects; --", "' OR '1'='1", "a\" OR 1=1 --", "%", "*", "../../etc/passwd",
                 "..\\windows", "/etc/passwd", "a\x00b", "a\nb", "a b", "é", "x" * 129, ""]  # fmt: skip


@pytest.mark.parametrize("payload", SQL_AND_PATHS)
def test_subject_ids_cannot_inject_sql_or_paths(client: TestClient, payload: str) -> None:  # noqa: F811
    assert_error(enroll(client, payload, BLANK), 400, "invalid_request")  # the pattern, before any image work
    if payload:
        # As a path parameter, percent-encoded: refused by the same pattern (a "/" makes it no route at all).
        raw = "/subjects/" + re.sub(r"[^A-Za-z0-9_@-]", lambda m: "%" + m.group().encode().hex("%").upper(), payload)
        status, code = (404, "not_found") if "/" in payload else (400, "invalid_request")
        for method in ("GET", "DELETE"):
            assert_error(client.request(method, raw), status, code)
        assert_error(client.delete(raw + "/faces/1"), status, code)
    r = client.post("/verify", data={"subject_id": payload or "x" * 200}, files={"image": upload(BLANK)})
    assert_error(r, 400, "invalid_request")


@pytest.mark.data
def test_ids_are_data_not_patterns_or_paths(
    artifact: Path,  # noqa: F811
    tmp_path: Path,
    orl: dict[tuple[int, int], bytes],  # noqa: F811
) -> None:
    """`_`, `%`-free ids and dot-only ids are valid: stored and matched as exact strings (no LIKE, no path), and
    nothing but the gallery's files appears in the data dir."""
    with serve(settings_for(tmp_path, artifact)) as c:
        for k, subject in enumerate(["abc", "a_c", "..", ".", "@.-"]):
            assert enroll(c, subject, orl[30 + k, 1]).status_code == 201
        assert c.get("/subjects/a_c").json()["subject_id"] == "a_c"
        assert_error(c.get("/subjects/a_"), 404, "subject_not_found")  # `_` is not a wildcard
        assert c.get("/subjects/%2E%2E").json()["subject_id"] == ".."  # dots percent-encoded: clients drop ./..
        assert c.delete("/subjects/%2E").json()["subject_id"] == "."
        assert c.get("/subjects").json()["count"] == 4
    assert {p.name for p in tmp_path.iterdir()} <= {"gallery.sqlite3", "gallery.sqlite3-wal", "gallery.sqlite3-shm"}


def test_text_fields_refuse_nul_and_unpaired_surrogates(client: TestClient) -> None:  # noqa: F811
    """PostgreSQL cannot store them (a 500 there before) and no UTF-8 answer can carry them back: a 400 on every
    backend, before any image work. (With a face stored, on PostgreSQL: tests/test_reliability.py's PG test.)"""
    for fields in ({"name": "a\x00b"}, {"metadata": '{"k": "a\\u0000"}'}, {"metadata": '{"\\u0000": 1}'},
                   {"metadata": '{"k": ["\\ud800"]}'}, {"metadata": '{"k": {"x": "\\udfff"}}'}):  # fmt: skip
        err = assert_error(enroll(client, "texty", BLANK, **fields), 400, "bad_request")
        assert "NUL character or invalid Unicode" in err["message"]
    r = enroll(client, "texty", BLANK, name="Zoë 😀", metadata='{"k": "\\ud83d\\ude00 ok"}')
    assert_error(r, 422, "no_face")  # valid text passes on to the image


@pytest.mark.data
def test_text_fields_on_postgresql(
    artifact: Path,  # noqa: F811
    tmp_path: Path,
    pg_url: str,
    orl: dict[tuple[int, int], bytes],  # noqa: F811
) -> None:
    """With a real face (so the store is written): NUL and unpaired surrogates are a 400, not PostgreSQL's
    DataError as a 500; a file name with a NUL is stored without it."""
    with serve(settings_for(tmp_path, artifact, database_url=SecretStr(pg_url))) as c:
        face = orl[33, 1]
        assert_error(enroll(c, "pg-text", face, name="a\x00b"), 400, "bad_request")
        assert_error(enroll(c, "pg-text", face, metadata='{"k": "\\u0000"}'), 400, "bad_request")
        assert_error(enroll(c, "pg-text", face, metadata='{"k": "\\ud800"}'), 400, "bad_request")
        assert_error(c.get("/subjects/a%00b"), 400, "invalid_request")
        # A raw NUL and an invalid UTF-8 byte in the part's file name (httpx would percent-encode them).
        body = (b'--b\r\nContent-Disposition: form-data; name="subject_id"\r\n\r\npg-text\r\n--b\r\n'
                b'Content-Disposition: form-data; name="images"; filename="a\x00b\xff.pgm"\r\n\r\n' + face
                + b"\r\n--b--\r\n")  # fmt: skip
        r = c.post("/enroll", content=body, headers={"Content-Type": "multipart/form-data; boundary=b"})
        assert r.status_code == 201, r.text
        source = c.get("/subjects/pg-text").json()["faces"][0]["source"]
        assert source.startswith("ab")
        assert source.endswith(".pgm")


def test_integers_past_64_bits_are_a_400(client: TestClient) -> None:  # noqa: F811
    """Found by schemathesis: an offset past SQL's 64-bit integers was a 500 (SQLite's OverflowError)."""
    assert client.get("/subjects", params={"offset": 2**63 - 1}).json()["data"] == []
    assert_error(client.get("/subjects", params={"offset": 2**63}), 400, "invalid_request")
    assert_error(client.get("/subjects", params={"offset": 10**30}), 400, "invalid_request")
    assert_error(client.delete(f"/subjects/x/faces/{2**63}"), 400, "invalid_request")


def nowhere(url: str) -> str:
    """`url` with its host and port replaced by a loopback port nothing listens on."""
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=(f"{user}@" if user else "") + "127.0.0.1:1"))


def test_an_unreachable_database_is_a_503(artifact: Path, tmp_path: Path, pg_url: str) -> None:  # noqa: F811
    """PostgreSQL gone (the session ended and no new one can be opened): a 503 `store_unavailable` in the error
    shape, not a 500; once it is back, the next request reconnects."""
    import psycopg

    with serve(settings_for(tmp_path, artifact, database_url=SecretStr(pg_url), sync_interval=60)) as c:
        store = c.app.state.resources.store  # type: ignore[attr-defined]
        url = store._url
        store._url = nowhere(url)
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (store._db.info.backend_pid,))
        assert_error(c.get("/subjects"), 503, "store_unavailable")
        assert_error(c.get("/subjects/someone"), 503, "store_unavailable")  # a read retried once, then refused
        store._url = url
        assert c.get("/subjects").json()["count"] == 0


def test_pixel_and_byte_limits(artifact: Path, tmp_path: Path) -> None:  # noqa: F811
    """A real decodable PNG one row over SIAMFACE_MAX_PIXELS is refused on every route (413, from its header);
    one of exactly the limit is decoded. Files each under the file cap but over the request cap together: 413."""
    s = settings_for(tmp_path, artifact, max_pixels=200 * 200, max_upload_bytes=60_000, max_request_bytes=100_000)
    over, at = png(Image.new("L", (200, 201), 0)), png(Image.new("L", (200, 200), 0))
    with serve(s) as c:
        assert_error(identify(c, over), 413, "image_too_large")
        assert_error(enroll(c, "big", over), 413, "image_too_large")
        r = c.post("/verify", files={"image": upload(BLANK), "reference": upload(over, "r.png")})
        assert_error(r, 422, "no_face")  # the probe is read first ...
        r = c.post("/verify", files={"image": upload(over), "reference": upload(BLANK, "r.png")})
        assert_error(r, 413, "image_too_large")  # ... and refused when it is the large one
        assert_error(identify(c, at), 422, "no_face")
        noise = np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes()  # each under 60 kB
        files = [("images", upload(noise, f"{k}.bin")) for k in range(3)]
        assert_error(c.post("/enroll", data={"subject_id": "big"}, files=files), 413, "request_too_large")
        assert_error(c.get("/subjects/big"), 404, "subject_not_found")


@pytest.mark.data
def test_logs_and_metrics_hold_no_keys_or_embeddings(
    artifact: Path,  # noqa: F811
    tmp_path: Path,
    orl: dict[tuple[int, int], bytes],  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every log record of a session (DEBUG, every logger) and /metrics: no accepted key, no refused key, no
    embedding value (from the store: Python's, NumPy's and %.6f renderings, base64 and hex of its bytes)."""
    import base64

    key, wrong = "k-" + secrets.token_hex(16), "w-" + secrets.token_hex(16)
    caplog.set_level(logging.DEBUG)
    with serve(settings_for(tmp_path, artifact, api_keys=SecretStr(key)), key=key) as c:
        assert enroll(c, "logged", orl[36, 1], orl[36, 2], metadata='{"a": 1}').status_code == 201
        assert identify(c, orl[36, 3]).status_code == 200
        assert c.post("/verify", data={"subject_id": "logged"}, files={"image": upload(orl[36, 4])}).status_code == 200
        assert c.get("/subjects/logged", headers={"X-API-Key": wrong}).status_code == 403
        assert_error(enroll(c, "logged", BLANK), 422, "no_face")  # logs the rejection
        metrics = c.get("/metrics").text
    store = SQLiteStore(tmp_path / "gallery.sqlite3")
    try:
        vectors = [e.vector for batch in store.iter_embeddings() for e in batch]
    finally:
        store.close()
    assert len(vectors) == 2
    renderings = []
    for v in vectors:
        raw = v.astype("<f4").tobytes()
        renderings += [repr(float(v[0])), f"{v[0]:.6f}", f"{v[1]:.6f}", np.array2string(v[:3], precision=4)[1:-1],
                       base64.b64encode(raw[:12]).decode(), raw[:8].hex()]  # fmt: skip
    logs = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "logged" in logs  # the capture saw the service's records
    for text in (logs, metrics):
        assert key not in text
        assert wrong not in text
        for s in renderings:
            assert s.strip() not in text, s


# ----------------------------------------------------------------------------------------------- crash
@pytest.fixture(scope="module")
def bench(load_bench: Callable[[str], ModuleType]) -> Iterator[ModuleType]:
    """bench/reliability.py, imported as a module (its server and checks are what this test reuses)."""
    yield load_bench("reliability")
    sys.modules.pop("bench_reliability", None)


@pytest.mark.data
@pytest.mark.slow
def test_kill_9_mid_enrollment_loses_nothing_acknowledged(
    bench: ModuleType,
    artifact: Path,  # noqa: F811
    tmp_path: Path,
    orl: dict[tuple[int, int], bytes],  # noqa: F811
) -> None:
    """A real server process (the test model) enrolled into by three threads gets SIGKILL after 12 acknowledged
    enrollments; restarted on the same SQLite gallery, every acknowledged one is there and searchable, nothing is
    half-written, store and index agree. (5 rounds on SQLite and on PostgreSQL: bench/reliability.py crash.)"""
    images = [(f"s{s}-{i}.pgm", orl[s, i]) for i in range(1, 11) for s in range(1, 41)]
    server = bench.Server(tmp_path / "data", KEY, tmp_path / "server.log", artifact=artifact)
    server.start(timeout=120)
    try:
        sent = bench.crash_round(server, images, [0], target=12, workers=3)
        acked = [s for s in sent if s.status is not None and 200 <= s.status < 300]
        in_flight = [s for s in sent if s.status is None and not s.never_sent]
        assert len(acked) >= 12
        assert all(s.status is None or s.status < 500 for s in sent)
        server.start(timeout=120)
        check = bench.check_gallery(server, acked, in_flight)
    finally:
        server.stop()
    assert check["missing"] == []
    assert check["unsearchable"] == []
    assert check["partial"] == []
    assert check["present"] == check["searchable"] == len(acked)
    assert check["agree"], check
    acked_faces = sum(len(s.face_ids) for s in acked)
    if check["maybe_committed"] == 0:  # nothing committed without an answer: the gallery is exactly the acked
        assert check["ready"]["faces"] == acked_faces
    else:
        assert check["ready"]["faces"] > acked_faces
    log = (tmp_path / "server.log").read_text()
    assert KEY not in log
    assert json.dumps(KEY) not in log
