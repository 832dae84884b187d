"""The web console (app/console/, served at /console/ by app/routers/console.py).

- Its route over a real app: on by default with the right content types and headers, every ES module the page
  imports served, nothing outside the folder; off with SIAMFACE_CONSOLE=false (404s, the API unchanged).
- End to end in a real headless Chromium (Debian's `chromium`, driven by Playwright; no browser is downloaded)
  against a live uvicorn server over a temporary gallery and the shipped model: the API key asked once and kept
  for the tab, a subject enrolled from ORL photos (and a photo without a face, rejected in plain words), another
  photo of them identified, a pair verified with the faces' boxes drawn, the gallery paged, searched and the
  subject's face and then the subject deleted with confirmation, the model card, a phone-sized screen. What the
  page shows is checked against the API's own answers for the same photos. Each step's screenshot is saved to
  test-artifacts/console/ (git-ignored).

The browser tests skip with a reason without Chromium (`apt-get install -y chromium chromium-driver`; .ci/run
does), without Playwright (the dev extra), without the ORL photos or without the shipped model.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from test_app import KEY, SHIPPED, artifact, orl, serve, settings_for  # noqa: F401 (fixtures)

from app.main import create_app
from app.routers.console import MEDIA_TYPES, ROOT, console_file
from app.settings import Settings

# The shipped model's version as its card states it (the page shows "faces <version>").
SHIPPED_VERSION = (
    json.loads((SHIPPED / "card.json").read_text())["version"] if (SHIPPED / "card.json").is_file() else ""
)

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "test-artifacts" / "console"
CHROMIUM = Path(os.environ.get("SIAMFACE_CHROMIUM", "/usr/bin/chromium"))
SUBJECT = "orl-s2"  # ORL s2 is one of the shipped model's 10 held-out subjects (never trained on)
DISTRACTORS = range(11, 23)  # ORL s11–s22 enrolled through the API: 12 others in the gallery, 13 subjects in all
IMPORT_RE = re.compile(r"""^\s*import\s[^;]*?from\s+["'](\.[^"']+)["']""", re.MULTILINE | re.DOTALL)


# ------------------------------------------------------------------------------------------ the route
@pytest.fixture(scope="module")
def console_client(artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:  # noqa: F811
    with serve(settings_for(tmp_path_factory.mktemp("console-on"), artifact)) as c:
        yield c


def test_console_is_on_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIAMFACE_CONSOLE", raising=False)
    assert Settings(_env_file=None).console is True
    monkeypatch.setenv("SIAMFACE_CONSOLE", "false")
    assert Settings(_env_file=None).console is False


def test_console_is_served_with_its_content_types(console_client: TestClient) -> None:
    c = console_client
    r = c.get("/", follow_redirects=False)
    assert r.status_code == 307
    assert r.headers["location"] == "console/"  # relative: works under a reverse proxy's path prefix
    assert c.get("/console", follow_redirects=False).headers["location"] == "console/"

    page = c.get("/console/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script type="module" src="js/main.js"></script>' in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script-src 'self'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert not re.search(r"https?://", page.text)  # nothing fetched from elsewhere

    assert c.get("/console/console.css").headers["content-type"] == "text/css; charset=utf-8"
    assert c.get("/console/icon.svg").headers["content-type"] == "image/svg+xml"
    # Every module reachable from the entry point is served as JavaScript (a missing one would break the page).
    seen, todo = set(), ["js/main.js"]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        r = c.get(f"/console/{path}")
        assert r.status_code == 200, path
        assert r.headers["content-type"] == "text/javascript; charset=utf-8", path
        assert not re.search(r"https?://", r.text), path
        base = path.rsplit("/", 1)[0]
        todo += [os.path.normpath(f"{base}/{m}") for m in IMPORT_RE.findall(r.text)]
    assert seen == {f"js/{p.name}" for p in (ROOT / "js").glob("*.js")}, "a module no page imports, or one missing"

    r = c.get("/console/no-such-file.js")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    paths = c.get("/openapi.json").json()["paths"]
    assert "/" not in paths
    assert not [p for p in paths if p.startswith("/console")]  # not part of the API's schema


def test_console_serves_only_its_own_files(tmp_path: Path) -> None:
    assert console_file("") == ROOT / "index.html"
    assert console_file("js/api.js") == ROOT / "js" / "api.js"
    assert console_file("js/../index.html") is None  # no dot segments at all (browsers normalise them away)
    assert console_file("../routers/console.py") is None  # outside the folder
    assert console_file("../../pyproject.toml") is None
    assert console_file("/etc/passwd") is None
    (tmp_path / "notes.py").write_text("x = 1\n")
    (tmp_path / ".secret.js").write_text("x\n")
    (tmp_path / "ok.js").write_text("x\n")
    assert console_file("notes.py", tmp_path) is None  # a type the console does not serve
    assert console_file(".secret.js", tmp_path) is None  # hidden
    assert console_file("ok.js", tmp_path) == (tmp_path / "ok.js").resolve()
    assert {p.suffix for p in ROOT.rglob("*") if p.is_file()} <= set(MEDIA_TYPES)


def test_console_switched_off(artifact: Path, tmp_path: Path) -> None:  # noqa: F811
    with serve(settings_for(tmp_path, artifact, console=False)) as c:
        for path in ("/", "/console", "/console/", "/console/index.html", "/console/js/main.js"):
            r = c.get(path, follow_redirects=False)
            assert r.status_code == 404, path
            assert r.json()["error"]["code"] == "not_found", path
        assert c.get("/health").json() == {"status": "ok"}
        assert c.get("/subjects").status_code == 200  # the API is unchanged


# ------------------------------------------------------------------------------------- in a browser
def _pgm_to_png(data: bytes) -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).save(buf, format="PNG")
    return buf.getvalue()


def _file(name: str, data: bytes, mime: str = "image/x-portable-graymap") -> dict[str, Any]:
    return {"name": name, "mimeType": mime, "buffer": data}


@pytest.fixture(scope="module")
def live_server(
    tmp_path_factory: pytest.TempPathFactory,
    orl: dict[tuple[int, int], bytes],  # noqa: F811
) -> Iterator[str]:
    """A real uvicorn server on a free loopback port: the shipped model, a new SQLite gallery holding ORL
    s11–s22 (one photo each, enrolled through the API). Yields its base URL."""
    if not (SHIPPED / "card.json").is_file():
        pytest.skip(f"needs the shipped face model at {SHIPPED}")
    import uvicorn

    settings = settings_for(tmp_path_factory.mktemp("console-gallery"), SHIPPED)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            assert thread.is_alive(), "uvicorn stopped"
            time.sleep(0.05)
        url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=30) as http:
            for s in DISTRACTORS:
                files = {"images": (f"s{s}-1.pgm", orl[s, 1], "image/x-portable-graymap")}
                assert http.post("/enroll", data={"subject_id": f"orl-s{s}"}, files=files).status_code == 201
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright (pip install -e '.[dev]')")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"needs Chromium at {CHROMIUM} (apt-get install -y chromium chromium-driver; .ci/run does)")
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield b
        finally:
            b.close()


class Console:
    """A browser tab on the console, with what the page logged: uncaught errors and console errors (CSP
    violations among them) fail the test."""

    def __init__(self, browser: Any, **context: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 860}, **context)
        self.page = self.context.new_page()
        self.page.set_default_timeout(20_000)
        self.problems: list[str] = []
        self.page.on("pageerror", lambda e: self.problems.append(f"uncaught: {e}"))
        self.page.on("console", self._console)

    def _console(self, msg: Any) -> None:
        # The browser logs each 4xx answer as "Failed to load resource"; those the test provokes on purpose.
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            self.problems.append(f"console: {msg.text}")

    def shot(self, name: str) -> None:
        """Save a screenshot of the page, after checking that no value reached it unrendered and that nothing is
        wider than the window (the page scrolls vertically only)."""
        text = self.page.locator("body").inner_text()
        for junk in ("[object", "undefined", "NaN", "null"):
            assert junk not in text, f"{name}: {junk!r} on the page"
        width = self.page.viewport_size["width"]
        assert self.page.evaluate("document.documentElement.scrollWidth") <= width, f"{name}: wider than the window"
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    def tab(self, name: str) -> None:
        self.page.get_by_role("tab", name=name).click()
        assert self.page.get_by_role("tab", name=name).get_attribute("aria-selected") == "true"

    def close(self) -> None:
        self.context.close()


def box_colour(console: Console, canvas: str, face: dict[str, Any]) -> tuple[int, int, int]:
    """The colour drawn on the middle of the left edge of `face`'s box in `canvas`."""
    x, y, _, h = face["box"]
    width = face["image_size"][0]
    return tuple(
        console.page.eval_on_selector(
            canvas,
            """(c, [x, y, w]) => { const s = c.width / w;
               return [...c.getContext('2d').getImageData(Math.floor(x * s), Math.round(y * s), 1, 1).data]
                 .slice(0, 3); }""",
            [x, y + h / 2, width],
        )
    )


GREEN, RED = (0x1A, 0x7F, 0x37), (0xC6, 0x28, 0x28)  # --box-match, --box-nomatch (light scheme)


def near(colour: tuple[int, ...], want: tuple[int, int, int]) -> bool:
    return max(abs(a - b) for a, b in zip(colour, want, strict=True)) <= 24


@pytest.mark.data
@pytest.mark.slow
def test_console_end_to_end(
    live_server: str,
    browser: Any,
    orl: dict[tuple[int, int], bytes],  # noqa: F811
) -> None:
    from playwright.sync_api import expect  # importable: the browser fixture skipped otherwise

    url = live_server
    http = httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=30)
    console = Console(browser, color_scheme="light")
    page = console.page
    try:
        # The key: asked once, refused in plain words when wrong, kept in sessionStorage only.
        page.goto(f"{url}/")
        assert page.url == f"{url}/console/"  # / opens the console
        dialog = page.get_by_role("dialog", name="API key")
        dialog.wait_for()
        console.shot("01-api-key")
        dialog.get_by_label("Key", exact=True).fill("not-the-key")
        dialog.get_by_role("button", name="Use this key").click()
        page.get_by_text("The API key was not accepted").wait_for()
        dialog.get_by_label("Key", exact=True).fill(KEY)
        dialog.get_by_role("button", name="Use this key").click()
        page.get_by_text(
            re.compile(rf"Ready · model faces {re.escape(SHIPPED_VERSION)} · 12 subjects, 12 faces")
        ).wait_for()
        assert not dialog.is_visible()
        assert page.evaluate("sessionStorage.getItem('siamface.apiKey')") == KEY
        assert page.evaluate("localStorage.length") == 0
        page.reload()
        page.get_by_text(f"Ready · model faces {SHIPPED_VERSION}").wait_for()
        page.locator("#try-far option", has_text="1e-3").wait_for(state="attached")  # the card loaded with the key
        assert not dialog.is_visible()

        # Keyboard: arrows move between the sections.
        page.get_by_role("tab", name="Try").focus()
        page.keyboard.press("ArrowRight")
        assert page.get_by_role("tab", name="Enroll").get_attribute("aria-selected") == "true"
        assert page.evaluate("document.activeElement.id") == "tab-enroll"
        assert page.url.endswith("#enroll")

        # Enroll: three ORL photos of s2 (PGM: the page decodes them itself) and a photo with no face.
        page.get_by_label("Subject id").fill(SUBJECT)
        page.get_by_label("Name").fill("ORL subject 2")
        blank = Image.new("RGB", (160, 160), (120, 130, 140))
        buf = io.BytesIO()
        blank.save(buf, format="PNG")
        page.set_input_files(
            "#enroll-files",
            [_file(f"s2-{i}.pgm", orl[2, i]) for i in (1, 2, 3)] + [_file("wall.png", buf.getvalue(), "image/png")],
        )
        expect(page.locator("#enroll-thumbs li")).to_have_count(4)  # previews are decoded asynchronously
        page.get_by_role("button", name="Enroll", exact=True).click()
        summary = page.locator("#enroll-result [data-field=summary]")
        summary.wait_for()
        assert summary.inner_text() == f"New subject {SUBJECT}: 3 faces enrolled, 3 in total."
        outcomes = page.locator("#enroll-outcomes li")
        assert outcomes.count() == 4
        for i in range(3):
            assert re.fullmatch(r"Enrolled as face \d+", outcomes.nth(i).locator(".ok-text").inner_text())
        assert outcomes.nth(3).locator(".error-text").inner_text().startswith("Rejected: No face was found")
        console.shot("02-enroll")
        stored = http.get(f"/subjects/{SUBJECT}").json()
        assert stored["face_count"] == 3
        assert stored["name"] == "ORL subject 2"
        assert sorted(f["source"] for f in stored["faces"]) == ["s2-1.pgm", "s2-2.pgm", "s2-3.pgm"]

        # Identify: a photo without a face, in plain words; then another photo of s2, as the API answers it.
        console.tab("Identify")
        page.set_input_files("#identify-file", _file("wall.png", buf.getvalue(), "image/png"))
        page.get_by_role("button", name="Identify", exact=True).click()
        page.locator("#identify-result .error-box").get_by_text("No face was found in the photo.").wait_for()
        probe = _pgm_to_png(orl[2, 4])  # PNG this time: the browser's own decoder
        page.set_input_files("#identify-file", _file("s2-4.png", probe, "image/png"))
        page.get_by_role("button", name="Identify", exact=True).click()
        page.locator("#identify-result [data-field=match]").wait_for()
        want = http.post("/identify", files={"image": ("s2-4.png", probe, "image/png")}).json()
        assert want["match"] == SUBJECT
        assert page.locator("#identify-result [data-field=match]").inner_text() == SUBJECT
        rows = page.locator("#identify-candidates tbody tr")
        assert rows.count() == len(want["candidates"]) == 5
        for i, cand in enumerate(want["candidates"]):
            cells = rows.nth(i)
            assert cells.locator("th").inner_text() == cand["subject_id"]
            assert cells.locator("td.num").nth(1).inner_text() == f"{cand['score']:.3f}"
        assert near(box_colour(console, "#panel-identify canvas.preview", want["face"]), GREEN)
        console.shot("03-identify")

        # Try: two photos of s2 → the same person, both faces boxed; then s2 and s30 at FAR 1e-3 → different.
        console.tab("Try")
        page.set_input_files("#try-a-file", _file("s2-7.pgm", orl[2, 7]))
        page.set_input_files("#try-b-file", _file("s2-8.pgm", orl[2, 8]))
        page.get_by_role("button", name="Compare").click()
        page.locator("#try-result .verdict").wait_for()
        want = http.post(
            "/verify",
            files={"image": ("a.pgm", orl[2, 7], "image/x-portable-graymap"),
                   "reference": ("b.pgm", orl[2, 8], "image/x-portable-graymap")},
        ).json()  # fmt: skip
        assert want["match"] is True
        assert page.locator("#try-result .verdict-title").inner_text() == "Same person"
        assert page.locator("#try-result [data-field=score]").inner_text() == f"{want['score']:.3f}"
        assert page.locator("#try-result [data-field=threshold]").inner_text() == f"{want['threshold']:.3f}"
        assert near(box_colour(console, '[data-slot="try-a"] canvas', want["face"]), GREEN)
        assert near(box_colour(console, '[data-slot="try-b"] canvas', want["reference_face"]), GREEN)
        console.shot("04-try-same")
        page.set_input_files("#try-b-file", _file("s30-7.pgm", orl[30, 7]))
        page.get_by_role("tabpanel", name="Try").get_by_label("Threshold", exact=True).select_option("1e-3")
        page.get_by_role("button", name="Compare").click()
        page.locator("#try-result .verdict").wait_for()
        want = http.post(
            "/verify",
            data={"far": "0.001"},
            files={"image": ("a.pgm", orl[2, 7], "image/x-portable-graymap"),
                   "reference": ("b.pgm", orl[30, 7], "image/x-portable-graymap")},
        ).json()  # fmt: skip
        assert want["match"] is False
        assert want["operating_point"]["far"] == 0.001
        assert page.locator("#try-result .verdict-title").inner_text() == "Different people"
        assert page.locator("#try-result [data-field=threshold]").inner_text() == f"{want['threshold']:.3f}"
        assert near(box_colour(console, '[data-slot="try-b"] canvas', want["reference_face"]), RED)
        console.shot("05-try-different")

        # Gallery: pages of 10 (the new subject is the 13th), search by id, delete a face, then the subject.
        console.tab("Gallery")
        page.get_by_label("Per page").select_option("10")
        page.get_by_text("Subjects 1–10 of 13.").wait_for()
        assert page.locator("#gallery-table tbody tr").count() == 10
        assert page.get_by_role("button", name="Previous page").is_disabled()
        page.get_by_role("button", name="Next page").click()
        page.get_by_text("Subjects 11–13 of 13.").wait_for()
        assert page.locator(f'#gallery-table tr[data-subject="{SUBJECT}"]').count() == 1
        assert page.get_by_role("button", name="Next page").is_disabled()
        page.get_by_label("Find a subject by id").fill(SUBJECT)
        page.get_by_role("button", name="Find", exact=True).click()
        page.get_by_text(f"Found subject “{SUBJECT}”.").wait_for()
        faces = page.locator("#subject-faces tbody tr")
        faces.nth(2).wait_for()
        assert faces.count() == 3
        first_face = stored["faces"][0]["face_id"]
        page.get_by_role("button", name=f"Delete face {first_face} of {SUBJECT}").click()
        confirm = page.get_by_role("dialog", name=f"Delete face {first_face}?")
        confirm.get_by_role("button", name="Cancel").click()  # cancelled: nothing deleted
        assert http.get(f"/subjects/{SUBJECT}").json()["face_count"] == 3
        page.get_by_role("button", name=f"Delete face {first_face} of {SUBJECT}").click()
        confirm.get_by_role("button", name="Delete face").click()
        page.get_by_text(f"Deleted face {first_face} of {SUBJECT}.").wait_for()
        assert faces.count() == 2
        assert page.locator(f'#gallery-table tr[data-subject="{SUBJECT}"] td.num').inner_text() == "2"
        assert http.get(f"/subjects/{SUBJECT}").json()["face_count"] == 2
        console.shot("06-gallery")
        page.get_by_role("button", name=f"Delete subject {SUBJECT}").click()
        confirm = page.get_by_role("dialog", name=f"Delete subject {SUBJECT}?")
        assert "its 2 faces" in confirm.inner_text()
        confirm.get_by_role("button", name="Delete subject").click()
        page.get_by_text(f"Deleted subject {SUBJECT} and 2 faces.").wait_for()
        assert http.get(f"/subjects/{SUBJECT}").status_code == 404
        assert page.locator(f'#gallery-table tr[data-subject="{SUBJECT}"]').count() == 0
        page.get_by_text(f"Ready · model faces {SHIPPED_VERSION} · 12 subjects, 12 faces").wait_for()
        console.shot("07-gallery-deleted")

        # Model: the card and its thresholds, in both units, as the service decides.
        console.tab("Model")
        page.get_by_role("heading", name=f"faces {SHIPPED_VERSION}").wait_for()
        card = http.get("/model").json()["card"]
        cal = card["thresholds"]["verification"]
        thresholds = page.locator("#model-thresholds tbody tr")
        assert thresholds.count() == 1 + len(cal["far_thresholds"])
        default = http.post(
            "/verify",
            files={"image": ("a.pgm", orl[2, 7], "image/x-portable-graymap"),
                   "reference": ("b.pgm", orl[2, 8], "image/x-portable-graymap")},
        ).json()["threshold"]  # fmt: skip
        assert thresholds.nth(0).locator("td.num").nth(0).inner_text() == f"{cal['threshold']:.4f}"
        assert thresholds.nth(0).locator("td.num").nth(1).inner_text() == f"{default:.3f}"
        a, b = cal["platt"]["a"], cal["platt"]["b"]
        for i, (far, t) in enumerate(sorted(cal["far_thresholds"].items(), key=lambda kv: -float(kv[0])), start=1):
            assert thresholds.nth(i).locator("th").inner_text() == f"FAR {far}"
            assert thresholds.nth(i).locator("td.num").nth(1).inner_text() == f"{1 / (1 + math.exp(-(a * t + b))):.3f}"
        assert page.locator("#model-metrics tbody tr").count() == len(card["metrics"])
        console.shot("08-model")

        # A phone-sized screen: nothing wider than the screen, the sections still reachable.
        page.set_viewport_size({"width": 390, "height": 844})
        console.tab("Try")
        console.shot("09-phone-try")
        console.tab("Gallery")
        page.get_by_role("button", name="Show all").click()
        page.get_by_text("Subjects 1–10 of 12.").wait_for()
        console.shot("10-phone-gallery")
        console.tab("Model")
        console.shot("11-phone-model")

        assert console.problems == []
    finally:
        console.close()
        http.close()
    # Another browser session (a new tab's sessionStorage) asks for the key again.
    fresh = Console(browser)
    try:
        fresh.page.goto(f"{url}/console/#model")
        fresh.page.get_by_role("dialog", name="API key").wait_for()
        assert fresh.page.evaluate("sessionStorage.length") == 0
    finally:
        fresh.close()
