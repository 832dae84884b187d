"""The service through its HTTP API: a real (small, random-weight) ONNX face artifact, real SQLite in a temp dir,
real FAISS, real ORL face photos from ../shared/data (tests that need them are marked `data` and skip without),
and real malformed bytes for every error path.

The test artifact is a 64×64 grey ResNet with mirror averaging and cosine distance, exported through
`training.export` and calibrated on ORL pairs it embedded (a constructed calibration without the data). It is
built once and cached in .cache/test_app/ under a hash of the code that makes it. A random-weight net separates
near-identical images only: tests of identification accuracy use the shipped model (skipped until it exists).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import SecretStr

from app.errors import ModelMismatch
from app.main import create_app
from app.settings import Settings, UnsafeSettingsError, get_settings
from model.artifact import ModelCard
from model.calibration import Calibration

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SIAMFACE_DATA", REPO.parent / "shared" / "data"))
ORL_ZIP = DATA / "orl_faces" / "orl_faces.zip"
SHIPPED = REPO / "model" / "artifacts" / "faces"
KEY = "test-key-0123456789"
NET = {"in_channels": 1, "input_size": 64, "stem_width": 8, "widths": [8, 16, 16], "blocks": [1, 1, 1],
       "embedding_dim": 32, "dropout": 0.0}  # fmt: skip
PREPROCESS = {"size": [64, 64], "channels": 1, "invert": False, "mean": [0.0], "std": [1.0], "resample": "bilinear"}
# Without the ORL data: thresholds of the shape the ORL fit gives this net (cosine similarities near 1).
PLAUSIBLE = Calibration(
    distance="cosine",
    threshold=0.997,
    far_thresholds={"1e-2": 0.9955, "1e-3": 0.9975},
    platt_a=474.0,
    platt_b=-473.0,
    fitted_on={k: "constructed for tests (no data)" for k in ("threshold", "far_thresholds", "platt")},
    n_genuine=120,
    n_impostor=3040,
)


# --------------------------------------------------------------------------------------------- fixtures
def orl_images() -> dict[tuple[int, int], bytes] | None:
    if not ORL_ZIP.is_file():
        return None
    with zipfile.ZipFile(ORL_ZIP) as z:
        return {(s, i): z.read(f"orl_faces/s{s}/{i}.pgm") for s in range(1, 41) for i in range(1, 11)}


@pytest.fixture(scope="session")
def orl() -> dict[tuple[int, int], bytes]:
    images = orl_images()
    if images is None:
        pytest.skip(f"needs the ORL faces at {ORL_ZIP} (set SIAMFACE_DATA to point elsewhere)")
    return images


def _calibrate_on_orl(folder: Path, images: dict[tuple[int, int], bytes]) -> Calibration:
    """Embed ORL s1–s20 × images 1–4 with the folder's net (as serving would) and fit the card's thresholds."""
    from app.pipeline import build_detector
    from model.artifact import load
    from model.faces import AlignSpec, as_rgb_array, detect_and_align
    from model.preprocess import decode, prepare_batch
    from training.verification import all_pairs, calibrate

    art = load(folder)
    detector, spec = build_detector(art.card.face["detector"]), AlignSpec.from_dict(art.card.face["align"])
    crops, labels = [], []
    for s in range(1, 21):
        for i in range(1, 5):
            rgb = as_rgb_array(decode(images[s, i]))
            crop, _ = detect_and_align(
                rgb, detector, spec, min_size=art.card.face["min_face"], allow_multiple="largest"
            )
            crops.append(Image.fromarray(crop))
            labels.append(s)
    emb = art.embed(prepare_batch(crops, art.spec))
    y, v = all_pairs(emb, np.array(labels), "cosine")
    return calibrate(y, v, "cosine", "ORL s1–s20, images 1–4, embedded by the random-weight test net")


def build_test_artifact(dest: Path, images: dict[tuple[int, int], bytes] | None) -> None:
    import torch

    from model.nets import Embedder, EmbedderConfig
    from training.data.face_cache import default_face_block
    from training.export import export_onnx

    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.manual_seed(0)
    net = Embedder(EmbedderConfig("resnet", NET, l2_normalize=True, tta_flip=True)).eval()
    export_onnx(net, tmp / "model.onnx")
    card = ModelCard(
        name="test-faces",
        version="0.0.1",
        created="2026-01-01T00:00:00+00:00",
        embedding_dim=NET["embedding_dim"],
        distance="cosine",
        preprocess=PREPROCESS,
        metrics={},
        data={"train": "none: random weights (a test fixture)", "terms": "n/a"},
        command="tests/test_app.py::build_test_artifact",
        face=default_face_block(),
    )
    (tmp / "card.json").write_text(card.to_json())
    cal = _calibrate_on_orl(tmp, images) if images else PLAUSIBLE
    (tmp / "card.json").write_text(dataclasses.replace(card, thresholds={"verification": cal.to_dict()}).to_json())
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


@pytest.fixture(scope="session")
def artifact() -> Path:
    """The test artifact, built on first use and cached under a hash of everything that shapes it."""
    images = orl_images()
    h = hashlib.sha256(json.dumps([NET, PREPROCESS, images is not None, repr(PLAUSIBLE)]).encode())
    for f in ("model/nets.py", "model/faces.py", "model/artifact.py", "training/export.py", "training/verification.py"):
        h.update((REPO / f).read_bytes())
    for fn in (build_test_artifact, _calibrate_on_orl):
        h.update(inspect.getsource(fn).encode())
    cache = REPO / ".cache" / "test_app"
    dest = cache / h.hexdigest()[:16]
    if not (dest / "card.json").is_file():
        for old in cache.glob("*") if cache.is_dir() else []:  # artifacts of older code
            shutil.rmtree(old, ignore_errors=True)
        build_test_artifact(dest, images)
    return dest


def settings_for(data_dir: Path, artifact: Path, **over: Any) -> Settings:
    kw: dict[str, Any] = {"data_dir": data_dir, "artifact": artifact, "api_keys": SecretStr(f"other-key,{KEY}")}
    kw.update(over)
    return Settings(_env_file=None, **kw)


@contextmanager
def serve(settings: Settings, key: str | None = KEY) -> Iterator[TestClient]:
    headers = {"X-API-Key": key} if key else {}
    with TestClient(create_app(settings), headers=headers, raise_server_exceptions=False) as client:
        yield client


def upload(data: bytes, name: str = "face.pgm", ctype: str = "image/x-portable-graymap") -> tuple[str, bytes, str]:
    return (name, data, ctype)


def enroll(client: TestClient, subject: str, *images: bytes, **fields: Any) -> Any:
    files = [("images", upload(b, f"{subject}-{i}.pgm")) for i, b in enumerate(images)]
    return client.post("/enroll", data={"subject_id": subject, **fields}, files=files)


def identify(client: TestClient, image: bytes, **fields: Any) -> Any:
    return client.post("/identify", data=fields, files={"image": upload(image)})


def assert_error(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    return body["error"]


# ------------------------------------------------------------------------------------------ test images
def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def as_png(data: bytes) -> bytes:
    return png(Image.open(io.BytesIO(data)))


def jpeg(data: bytes, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A 60-byte PNG whose header claims width × height pixels (10^10 by default)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def two_faces(orl: dict[tuple[int, int], bytes], big: int = 1, small: int = 2) -> bytes:
    """ORL `big` (the larger face) and `small` side by side on a grey canvas: the detector finds two faces."""
    canvas = Image.new("L", (92 * 2 + 80, 152), 128)
    canvas.paste(Image.open(io.BytesIO(orl[big, 1])), (20, 20))
    canvas.paste(Image.open(io.BytesIO(orl[small, 1])).resize((80, 97)), (152, 28))
    return png(canvas)


def small_face(orl: dict[tuple[int, int], bytes]) -> bytes:
    """ORL s3/1 at 30%: the detector finds a 28 px face, under the card's 40 px minimum."""
    return png(Image.open(io.BytesIO(orl[3, 1])).resize((28, 34)))


BLANK = png(Image.new("RGB", (160, 160), (120, 130, 140)))
TEXT = b"subject,name\nalice,Alice\nthis is a CSV file, not an image\n"
RANDOM = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()


def truncated_jpeg() -> bytes:
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=90)
    data = buf.getvalue()
    return data[: len(data) // 2]


# Every malformed upload, its status and its error code.
MALFORMED = {
    "truncated_jpeg": (truncated_jpeg(), 415, "undecodable"),
    "png_bomb": (png_bomb(), 413, "image_too_large"),
    "random_bytes": (RANDOM, 415, "undecodable"),
    "text_file": (TEXT, 415, "undecodable"),
    "empty": (b"", 400, "empty_file"),
    "no_face": (BLANK, 422, "no_face"),
}


# ------------------------------------------------------------------------------------ module's gallery
@pytest.fixture(scope="module")
def client(artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """A service with an empty gallery (tests enroll what they need under their own subject ids)."""
    with serve(settings_for(tmp_path_factory.mktemp("gallery"), artifact)) as c:
        yield c


@pytest.fixture(scope="module")
def enrolled(client: TestClient, orl: dict[tuple[int, int], bytes]) -> TestClient:
    """ORL s1–s10 enrolled from their first image."""
    for s in range(1, 11):
        r = enroll(client, f"orl-s{s}", orl[s, 1], name=f"ORL subject {s}", metadata=json.dumps({"set": "orl"}))
        assert r.status_code == 201, r.text
    return client


# ---------------------------------------------------------------------------------------------- tests
def test_the_app_imports_neither_torch_nor_training() -> None:
    code = (
        "import sys, app.main, app.cli, app.service, app.routers.system; app.main.create_app(); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'training')); "
        "assert not bad, bad"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SIAMFACE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SIAMFACE_API_KEYS", " k1 , k2 ,")
    monkeypatch.setenv("SIAMFACE_INDEX", "hnsw")
    monkeypatch.setenv("SIAMFACE_MATCH", "mean")
    s = Settings(_env_file=None)
    assert s.data_dir == tmp_path
    assert s.index == "hnsw"
    assert s.match == "mean"
    assert s.key_list() == [b"k1", b"k2"]
    assert s.key_accepted("k2")
    assert not s.key_accepted("k3")
    assert "k1" not in repr(s)
    assert "k1" not in str(s.model_dump())
    s.check_serving()
    monkeypatch.setenv("SIAMFACE_INDEX", "annoy")
    with pytest.raises(ValueError, match="index"):
        Settings(_env_file=None)
    get_settings.cache_clear()


def test_serving_without_api_keys_is_refused_outside_development(artifact: Path, tmp_path: Path) -> None:
    with (
        pytest.raises(UnsafeSettingsError, match="SIAMFACE_API_KEYS"),
        serve(settings_for(tmp_path, artifact, api_keys=SecretStr(""))),
    ):
        pass
    with serve(settings_for(tmp_path, artifact, api_keys=SecretStr(""), dev_disable_auth=True), key=None) as c:
        assert c.get("/subjects").status_code == 200


def test_system_endpoints(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["status"] == "ready"
    assert ready["model"].startswith("test-faces@0.0.1#")
    assert ready["index"] == {"faces": "flat", "means": "flat"}
    assert ready["match"] == "both"
    card = client.get("/model").json()
    assert card["card"]["distance"] == "cosine"
    assert "verification" in card["card"]["thresholds"]
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/enroll", "/verify", "/identify", "/subjects", "/subjects/{subject_id}",
              "/subjects/{subject_id}/faces/{face_id}", "/health", "/ready", "/metrics", "/model"):  # fmt: skip
        assert p in paths, p


def test_auth(client: TestClient) -> None:
    anonymous = TestClient(client.app)  # the same running app, without a key (no `with`: no second lifespan)
    assert_error(anonymous.get("/subjects"), 401, "unauthorized")
    assert_error(anonymous.get("/subjects", headers={"X-API-Key": "nope"}), 403, "forbidden")
    assert_error(anonymous.post("/identify", files={"image": upload(BLANK)}), 401, "unauthorized")
    assert anonymous.get("/subjects", headers={"X-API-Key": "other-key"}).status_code == 200  # any listed key
    for open_path in ("/health", "/ready", "/metrics"):
        assert anonymous.get(open_path).status_code == 200


@pytest.mark.data
def test_enroll_then_identify_and_verify(enrolled: TestClient, orl: dict[tuple[int, int], bytes]) -> None:
    c = enrolled
    r = identify(c, orl[3, 1])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["match"] == "orl-s3"
    assert body["candidates"][0]["subject_id"] == "orl-s3"
    assert len(body["candidates"]) == 5
    scores = [x["score"] for x in body["candidates"]]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert body["candidates"][0]["distance"] == pytest.approx(1.0, abs=1e-5)  # the same photo: cosine 1
    assert len(body["face"]["box"]) == 4
    assert body["metric"] == "cosine"
    # The same photo re-encoded as JPEG (a near-identical image: what a random-weight net can tell apart).
    r = identify(c, jpeg(orl[3, 1]), top_k=3)
    assert r.json()["candidates"][0]["subject_id"] == "orl-s3"
    assert len(r.json()["candidates"]) == 3

    same = c.post("/verify", data={"subject_id": "orl-s3"}, files={"image": upload(as_png(orl[3, 1]))}).json()
    other = c.post("/verify", data={"subject_id": "orl-s4"}, files={"image": upload(as_png(orl[3, 1]))}).json()
    assert same["match"]
    assert same["subject_id"] == "orl-s3"
    assert same["basis"] == "face"
    assert same["score"] > other["score"]
    assert same["distance"] > other["distance"]
    cal = Calibration.from_dict(c.get("/model").json()["card"]["thresholds"]["verification"])
    for v in (same, other):  # the decision is the calibration's, on the distance in float64 ...
        assert v["match"] == bool(cal.matches(np.array([v["distance"]]))[0])
        assert v["match"] == (v["score"] >= v["threshold"])  # ... and the score says the same
        assert v["threshold"] == pytest.approx(cal.score_threshold())
        assert v["operating_point"]["far"] is None
    strict = c.post("/verify", data={"subject_id": "orl-s4", "far": "0.001"}, files={"image": upload(orl[3, 1])})
    assert strict.json()["operating_point"]["distance"] == pytest.approx(cal.threshold_for(0.001))
    # The same pixels as PNG (another decoder, the same face): a pair a random-weight net must match.
    pair = c.post("/verify", files={"image": upload(orl[5, 1]), "reference": upload(as_png(orl[5, 1]), "r.png")}).json()
    assert pair["match"]
    assert pair["basis"] == "reference"
    assert pair["subject_id"] is None
    assert pair["reference_face"]

    # A score threshold no pair reaches: candidates, but no match ("unknown").
    r = identify(c, orl[3, 1], threshold="0.999999").json()
    assert r["match"] is None
    assert r["candidates"][0]["subject_id"] == "orl-s3"
    assert r["operating_point"]["score"] == pytest.approx(0.999999)


@pytest.mark.data
def test_enrollment_reports_each_image(client: TestClient, orl: dict[tuple[int, int], bytes]) -> None:
    images = [orl[20, 1], TEXT, BLANK, two_faces(orl, 24, 25), orl[20, 2]]
    r = enroll(client, "mixed", *images, name="Mixed")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["created"]
    assert body["enrolled"] == 2
    assert body["faces"] == 2
    got = [(im["face_id"] is not None, (im.get("rejection") or {}).get("code")) for im in body["images"]]
    assert got == [(True, None), (False, "undecodable"), (False, "no_face"), (False, "multiple_faces"), (True, None)]
    # The largest face when asked; the subject exists already (200, not 201).
    r = enroll(client, "mixed", two_faces(orl, 24, 25), largest="true")
    assert r.status_code == 200
    assert r.json()["enrolled"] == 1
    assert not r.json()["created"]
    detail = client.get("/subjects/mixed").json()
    assert detail["face_count"] == 3
    assert detail["name"] == "Mixed"
    assert all(f["has_crop"] for f in detail["faces"])
    # No usable image at all: nothing stored, the shared reason's status, each image's reason in details.
    err = assert_error(enroll(client, "never", TEXT, RANDOM), 415, "undecodable")
    assert [d["rejection"]["code"] for d in err["details"]] == ["undecodable", "undecodable"]
    err = assert_error(enroll(client, "never", BLANK, TEXT), 422, "no_usable_image")
    assert_error(client.get("/subjects/never"), 404, "subject_not_found")


@pytest.mark.data
def test_identify_every_face(client: TestClient, orl: dict[tuple[int, int], bytes]) -> None:
    photo = two_faces(orl)
    assert enroll(client, "faces-s1", photo, largest="true").status_code == 201  # the larger face: s1's
    body = identify(client, photo, all_faces="true").json()
    assert len(body["faces"]) == 2
    assert body["faces"][0]["face"] == body["face"]
    assert body["faces"][0]["candidates"] == body["candidates"]
    areas = [f["face"]["box"][2] * f["face"]["box"][3] for f in body["faces"]]
    assert areas == sorted(areas, reverse=True)
    assert body["match"] == "faces-s1"
    assert body["candidates"][0]["distance"] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("route", ["/enroll", "/verify", "/identify"])
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_uploads(client: TestClient, route: str, case: str) -> None:
    data, status, code = MALFORMED[case]
    if route == "/enroll":
        r = client.post(route, data={"subject_id": "x"}, files={"images": upload(data, "bad.bin")})
    elif route == "/verify":  # the reference form: no enrolled subject needed
        r = client.post(route, files={"image": upload(data, "bad.bin"), "reference": upload(data, "bad2.bin")})
    else:
        r = client.post(route, files={"image": upload(data, "bad.bin")})
    assert_error(r, status, code)


@pytest.mark.data
def test_face_too_small(client: TestClient, orl: dict[tuple[int, int], bytes]) -> None:
    assert_error(identify(client, small_face(orl)), 422, "face_too_small")


def test_malformed_requests(client: TestClient) -> None:
    c = client
    assert_error(c.post("/identify"), 400, "invalid_request")
    assert_error(c.post("/enroll", data={"subject_id": "a b"}, files={"images": upload(BLANK)}), 400, "invalid_request")
    assert_error(c.post("/enroll", data={"subject_id": "x" * 129}, files={"images": upload(BLANK)}), 400,
                 "invalid_request")  # fmt: skip
    for meta in ("{not json", "[1, 2]"):
        r = c.post("/enroll", data={"subject_id": "a", "metadata": meta}, files={"images": upload(BLANK)})
        assert_error(r, 400, "bad_request")
    too_many = [("images", upload(BLANK)) for _ in range(17)]
    assert_error(c.post("/enroll", data={"subject_id": "a"}, files=too_many), 400, "bad_request")
    assert_error(c.post("/verify", files={"image": upload(BLANK)}), 400, "bad_request")  # neither
    both = {"image": upload(BLANK), "reference": upload(BLANK)}
    assert_error(c.post("/verify", data={"subject_id": "a"}, files=both), 400, "bad_request")
    assert_error(c.post("/verify", data={"subject_id": "nobody"}, files={"image": upload(BLANK)}), 404,
                 "subject_not_found")  # fmt: skip
    err = assert_error(identify(c, BLANK, far="0.02"), 400, "unknown_far")
    assert "1e-2" in err["message"]
    assert_error(identify(c, BLANK, far="2"), 400, "invalid_request")
    assert_error(identify(c, BLANK, far="0.01", threshold="0.5"), 400, "bad_request")
    assert_error(identify(c, BLANK, top_k="0"), 400, "invalid_request")
    assert_error(identify(c, BLANK, top_k="101"), 400, "bad_request")
    assert_error(identify(c, BLANK, top_k="many"), 400, "invalid_request")
    assert_error(c.get("/subjects/nobody"), 404, "subject_not_found")
    assert_error(c.delete("/subjects/nobody"), 404, "subject_not_found")
    assert_error(c.delete("/subjects/nobody/faces/1"), 404, "subject_not_found")
    assert_error(c.delete("/subjects/nobody/faces/one"), 400, "invalid_request")
    assert_error(c.delete(f"/subjects/nobody/faces/{2**64}"), 400, "invalid_request")  # past SQLite's integers
    assert_error(c.get("/subjects", params={"limit": 0}), 400, "invalid_request")
    assert_error(c.get("/no/such/route"), 404, "not_found")
    assert_error(c.put("/identify"), 405, "method_not_allowed")
    # A multipart body that is not multipart.
    r = c.post("/identify", content=b"--x\r\nnot a part", headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 400
    assert set(r.json()) == {"error"}


def test_byte_limits(artifact: Path, tmp_path: Path) -> None:
    s = settings_for(tmp_path, artifact, max_upload_bytes=20_000, max_request_bytes=50_000)
    with serve(s) as c:
        big = bytes(30_000)
        assert_error(identify(c, big), 413, "file_too_large")
        err = assert_error(enroll(c, "a", big), 413, "file_too_large")
        assert err["details"][0]["rejection"]["code"] == "file_too_large"
        assert_error(identify(c, bytes(60_000)), 413, "request_too_large")
        # Chunked (no Content-Length): refused while streaming.
        body = (b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a\"\r\n\r\n" + bytes(60_000)
                + b"\r\n--b--\r\n")  # fmt: skip
        r = c.post(
            "/identify", content=iter([body[i : i + 8192] for i in range(0, len(body), 8192)]),
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )  # fmt: skip
        assert_error(r, 413, "request_too_large")
        metrics = c.get("/metrics").text
        assert 'route="/identify",status="413"' in metrics.replace('method="POST",', "")


@pytest.mark.data
def test_subjects_listing_and_deletion(artifact: Path, tmp_path: Path, orl: dict[tuple[int, int], bytes]) -> None:
    with serve(settings_for(tmp_path, artifact)) as c:
        for s in (11, 12, 13):
            assert enroll(c, f"p{s}", orl[s, 1], orl[s, 2], metadata='{"k": 1}').status_code == 201
        page = c.get("/subjects", params={"limit": 2}).json()
        assert page["count"] == 3
        assert [d["subject_id"] for d in page["data"]] == ["p11", "p12"]
        assert page["data"][0]["metadata"] == {"k": 1}
        assert page["data"][0]["face_count"] == 2
        assert [d["subject_id"] for d in c.get("/subjects", params={"offset": 2}).json()["data"]] == ["p13"]
        detail = c.get("/subjects/p12").json()
        assert [f["source"] for f in detail["faces"]] == ["p12-0.pgm", "p12-1.pgm"]
        assert all(f["model"] == c.get("/ready").json()["model"] for f in detail["faces"])

        assert identify(c, orl[12, 1]).json()["candidates"][0]["face_id"] == detail["faces"][0]["face_id"]
        first = detail["faces"][0]["face_id"]
        assert c.delete(f"/subjects/p12/faces/{first}").json() == {"subject_id": "p12", "face_ids": [first]}
        assert_error(c.delete(f"/subjects/p12/faces/{first}"), 404, "face_not_found")
        assert identify(c, orl[12, 1]).json()["candidates"][0]["face_id"] != first
        assert c.get("/ready").json()["index_size"] == 5

        gone = c.delete("/subjects/p12").json()
        assert gone == {"subject_id": "p12", "face_ids": [detail["faces"][1]["face_id"]]}
        ids = [x["subject_id"] for x in identify(c, orl[12, 1], top_k=10).json()["candidates"]]
        assert ids == ["p11", "p13"] or ids == ["p13", "p11"]
        assert_error(c.post("/verify", data={"subject_id": "p12"}, files={"image": upload(orl[12, 1])}), 404,
                     "subject_not_found")  # fmt: skip
        ready = c.get("/ready").json()
        assert (ready["subjects"], ready["faces"], ready["index_size"]) == (2, 4, 4)
        metrics = c.get("/metrics").text
        assert "siamface_faces_enrolled 4.0" in metrics
        assert "siamface_index_size 4.0" in metrics
        assert 'siamface_requests_total{method="POST",route="/enroll",status="201"} 3.0' in metrics
        assert 'siamface_request_duration_seconds_bucket{le="0.5",method="POST",route="/identify",status="200"}' in (
            metrics
        )


@pytest.mark.data
@pytest.mark.parametrize("index", ["flat", "hnsw"])
def test_gallery_survives_a_restart(
    artifact: Path, tmp_path: Path, orl: dict[tuple[int, int], bytes], index: str
) -> None:
    s = settings_for(tmp_path, artifact, index=index)
    with serve(s) as c:
        for subject in (21, 22, 23):
            assert enroll(c, f"s{subject}", orl[subject, 1]).status_code == 201
        c.delete("/subjects/s22")
        before = identify(c, orl[21, 1], top_k=10).json()
    with serve(s) as c:  # a new app instance on the same data dir
        assert [d["subject_id"] for d in c.get("/subjects").json()["data"]] == ["s21", "s23"]
        after = identify(c, orl[21, 1], top_k=10).json()
        assert after["candidates"] == before["candidates"]
        assert after["match"] == "s21"
        assert c.get("/ready").json()["index"] == {"faces": index, "means": index}


@pytest.mark.data
def test_model_change_needs_reembedding(artifact: Path, tmp_path: Path, orl: dict[tuple[int, int], bytes]) -> None:
    data = tmp_path / "data"
    with serve(settings_for(data, artifact)) as c:
        assert enroll(c, "a", orl[31, 1], orl[31, 2]).status_code == 201
        before = identify(c, orl[31, 3]).json()["candidates"]
    # Version 0.0.2: same weights, another model as far as the gallery can tell.
    v2 = tmp_path / "v2"
    shutil.copytree(artifact, v2)
    card = json.loads((v2 / "card.json").read_text())
    (v2 / "card.json").write_text(json.dumps({**card, "version": "0.0.2"}))
    with pytest.raises(ModelMismatch, match="SIAMFACE_REEMBED"), serve(settings_for(data, v2)):
        pass
    with serve(settings_for(data, v2, reembed=True)) as c:
        model = c.get("/ready").json()["model"]
        assert model.startswith("test-faces@0.0.2#")
        assert {f["model"] for f in c.get("/subjects/a").json()["faces"]} == {model}
        after = identify(c, orl[31, 3]).json()["candidates"]
        assert after[0]["subject_id"] == "a"
        assert after[0]["distance"] == pytest.approx(before[0]["distance"], abs=1e-6)
    # Without stored crops there is nothing to re-embed from: refused even when asked.
    no_crops = tmp_path / "no-crops"
    with serve(settings_for(no_crops, artifact, keep_crops=False)) as c:
        assert enroll(c, "b", orl[32, 1]).status_code == 201
    with pytest.raises(ModelMismatch, match="no stored crop"), serve(settings_for(no_crops, v2, reembed=True)):
        pass


@pytest.mark.data
def test_cli_bulk_enrollment(
    artifact: Path, tmp_path: Path, orl: dict[tuple[int, int], bytes], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from app.cli import main
    from app.store import SQLiteStore

    folder = tmp_path / "people"
    for s in (35, 36):
        (folder / f"orl-{s}").mkdir(parents=True)
        for i in (1, 2):
            (folder / f"orl-{s}" / f"{i}.pgm").write_bytes(orl[s, i])
    (folder / "orl-36" / "notes.txt").write_bytes(TEXT)  # not an image suffix: ignored
    (folder / "orl-36" / "broken.jpg").write_bytes(truncated_jpeg())
    (folder / "nobody").mkdir()
    (folder / "nobody" / "blank.png").write_bytes(BLANK)
    monkeypatch.setenv("SIAMFACE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SIAMFACE_ARTIFACT", str(artifact))
    get_settings.cache_clear()
    try:
        assert main(["enroll", str(folder)]) == 0
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr().out
    assert "enrolled 4 faces of 6 images; 2 new subjects (3 folders)" in out
    assert "rejected: " in out
    assert "undecodable 1" in out
    assert "no_face 1" in out
    assert "orl-36/broken.jpg" in out
    store = SQLiteStore(tmp_path / "data" / "gallery.sqlite3")
    try:
        assert store.counts() == (2, 4)
    finally:
        store.close()


@pytest.mark.data
def test_live_server_on_loopback(artifact: Path, tmp_path: Path, orl: dict[tuple[int, int], bytes]) -> None:
    import httpx
    import uvicorn

    config = uvicorn.Config(create_app(settings_for(tmp_path, artifact)), host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            assert thread.is_alive(), "uvicorn stopped"
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": KEY}, timeout=30) as http:
            assert http.get("/health").json() == {"status": "ok"}
            r = http.post("/enroll", data={"subject_id": "live"}, files={"images": upload(orl[38, 1])})
            assert r.status_code == 201, r.text
            r = http.post("/verify", data={"subject_id": "live"}, files={"image": upload(orl[38, 1])})
            assert r.json()["match"] is True
            assert_error(http.post("/identify", files={"image": upload(png_bomb())}), 413, "image_too_large")
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert not thread.is_alive()


@pytest.mark.data
@pytest.mark.slow
def test_orl_identification_with_the_shipped_model(tmp_path: Path, orl: dict[tuple[int, int], bytes]) -> None:
    """All 40 ORL subjects enrolled from image 1 each; their 360 other images identified through the API."""
    if not (SHIPPED / "card.json").is_file():
        pytest.skip(f"the trained face artifact {SHIPPED} does not exist yet")
    with serve(settings_for(tmp_path, SHIPPED, onnx_threads=1)) as c:
        for s in range(1, 41):
            assert enroll(c, f"s{s}", orl[s, 1]).status_code == 201
        correct = answered = 0
        for s in range(1, 41):
            for i in range(2, 11):
                r = identify(c, orl[s, i])
                if r.status_code == 200:
                    answered += 1
                    correct += r.json()["candidates"][0]["subject_id"] == f"s{s}"
    accuracy = correct / 360
    print(f"ORL 1-shot identification through the API: {correct}/360 = {accuracy:.3f} ({answered} with a face)")
    assert answered == 360  # every ORL photo has its face found
    # The service issue's target (chance is 1/40). Measured with the shipped 2.1.0: 346/360 = 96.1% (2.0.0, with
    # the full-resolution face search and single-stage eye search it was measured with: 339/360).
    assert accuracy >= 0.95
