# syntax=docker/dockerfile:1
#
# siamface on CPU: the HTTP service (`siamface serve`) over the face model shipped in model/artifacts/faces.
#
#   docker build -t siamface .
#   docker run --rm -p 127.0.0.1:8000:8000 -e SIAMFACE_API_KEYS="$(openssl rand -hex 32)" \
#       -v siamface-data:/data siamface                          # http://127.0.0.1:8000, OpenAPI at /docs
#   docker run --rm -v siamface-data:/data -v "$PWD/photos:/photos:ro" siamface enroll /photos
#   (or: docker compose up, see docker-compose.yml)
#
# Two stages. `build` makes a virtualenv with `pip install .`: the base dependencies only, which are what
# serving needs (NumPy, Pillow, OpenCV headless, ONNX Runtime, FAISS, FastAPI, ...); torch and the rest of the
# training stack are the `train` extra and never enter the image, nor does training/ (not copied). Every
# dependency is a binary wheel, so no compiler is needed in either stage. `runtime` is python:3.11-slim plus
# that virtualenv: no pip cache, no source tree, no build tools, running as an unprivileged user (uid 10001).
#
# Settings are SIAMFACE_* environment variables (app/README.md). The image sets the listen address (0.0.0.0),
# the port (8000) and the gallery folder (/data, a volume). API keys have no default: the service refuses to
# start without SIAMFACE_API_KEYS unless SIAMFACE_DEV_DISABLE_AUTH=true. To serve another model, mount its
# folder (model.onnx + card.json) and point SIAMFACE_ARTIFACT at it.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ------------------------------------------------------------------------------------------------- build
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
RUN python -m venv /opt/siamface

# Only what the wheel is made of: metadata, the service, the shared model code and its artifacts.
COPY pyproject.toml README.md ./
COPY app/ app/
COPY model/ model/

# The image exists to serve the shipped model: fail here, not at the container's first start, without it.
RUN test -s model/artifacts/faces/model.onnx && test -s model/artifacts/faces/card.json \
    || { echo "model/artifacts/faces/{model.onnx,card.json} missing: train and export the face model first" >&2; \
         exit 1; }

# Non-editable install: app/ and model/ (with the artifacts, as package data) land in site-packages. Then pip
# and setuptools leave the virtualenv (nothing at run time needs them), and checks that see site-packages only
# (python -I: not the source tree here) prove that the closure holds no torch, that the service imports and
# that it finds the shipped model where the settings look for it by default.
RUN /opt/siamface/bin/pip install --no-cache-dir . \
    && /opt/siamface/bin/python -m pip uninstall --yes --quiet pip setuptools \
    && /opt/siamface/bin/python -Ic "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)" \
    && /opt/siamface/bin/python -Ic "import app.main, app.cli, faiss, onnxruntime, cv2" \
    && /opt/siamface/bin/python -Ic "from app.settings import Settings; (Settings().artifact / 'card.json').open()"

# ----------------------------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="siamface" \
      org.opencontainers.image.description="Self-hosted face verification and identification (CPU)" \
      org.opencontainers.image.licenses="MIT"

# /data belongs to the service user before it is declared a volume: a new named volume is initialised from
# the image, so it starts owned by that user too (a bind mount must be made writable for uid 10001 by hand).
RUN groupadd --system --gid 10001 siamface \
    && useradd --system --uid 10001 --gid siamface --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin siamface \
    && mkdir /data \
    && chown siamface:siamface /data \
    && chmod 700 /data

COPY --from=build /opt/siamface /opt/siamface

# OMP_NUM_THREADS=1: parallelism comes from concurrent requests (SIAMFACE_EMBED_CONCURRENCY pipelines, each
# with SIAMFACE_ONNX_THREADS ONNX Runtime threads), not from OpenMP inside one FAISS or BLAS call.
ENV PATH=/opt/siamface/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OMP_NUM_THREADS=1 \
    SIAMFACE_HOST=0.0.0.0 \
    SIAMFACE_PORT=8000 \
    SIAMFACE_DATA_DIR=/data

# Not /data: the settings also read a `.env` file from the working directory, and the volume is no place for one.
WORKDIR /opt/siamface
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8000

# curl is not in the slim image: the image's own Python asks /health (the process is up and its lifespan has
# loaded the model and the gallery, since uvicorn answers only after that). start-period covers loading a
# large gallery; raise it for millions of faces.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('SIAMFACE_PORT', '8000') + '/health', timeout=4)"]

ENTRYPOINT ["siamface"]
CMD ["serve"]
