# syntax=docker/dockerfile:1
# ShopiBundle V2 service image: two stages, slim base, non-root, no secrets inside.
#
#   docker build -t shopibundle .
#   # once per release, before new replicas start (NOT at every replica's start):
#   docker run --rm -e DATABASE_URL=postgresql://... shopibundle shopibundle db upgrade
#   # the service (any number of replicas):
#   docker run -e DATABASE_URL=... -e ADMIN_API_TOKEN=... -e SHOPIFY_API_KEY=... -e SHOPIFY_API_SECRET=... \
#              -p 8000:8000 shopibundle
#
# Every secret comes from the environment at run time (docs/configuration.md lists the variables).
# Migrations are a separate command so that N replicas starting together never race on Alembic
# and a failed migration stops the release instead of a crash-looping fleet; AUTO_MIGRATE stays off
# (its default whenever DATABASE_URL is set).

ARG PYTHON_VERSION=3.11

# ---------------------------------------------------------------------------------------------
# build: a virtualenv with the dependencies, then the project itself (editable, so the source
# layout the code relies on — alembic.ini and alembic/ beside app/ — stays as in the repository).
FROM python:${PYTHON_VERSION}-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /srv
# Dependencies first, exactly as locked (versions and hashes, the build backend included; `make
# lock` regenerates requirements/lock.txt): this layer is rebuilt only when the lock changes, and a
# build next year installs what was tested.
COPY requirements/lock.txt ./requirements/lock.txt
RUN pip install --require-hashes -r requirements/lock.txt

COPY alembic.ini ./
COPY alembic ./alembic
COPY app ./app
COPY pyproject.toml ./
RUN pip install --no-deps --no-build-isolation -e . \
    && python -m compileall -q app alembic \
    && shopibundle --help > /dev/null

# ---------------------------------------------------------------------------------------------
# runtime: the virtualenv and the source tree at the same paths, owned by root and read-only to
# the unprivileged user that runs the service.
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LOG_FORMAT=json \
    DATA_DIR=/tmp/shopibundle \
    OTEL_SERVICE_NAME=shopibundle

RUN groupadd --system --gid 10001 shopibundle \
    && useradd --system --uid 10001 --gid shopibundle --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin shopibundle

COPY --from=build /opt/venv /opt/venv
COPY --from=build /srv /srv
WORKDIR /srv

USER 10001:10001

EXPOSE 8000

# Liveness only (/readyz also checks the database and the schema: use it for the load balancer).
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"]

# uvicorn behind `shopibundle serve` (JSON logs, no duplicate access log). No migrations here.
CMD ["shopibundle", "serve", "--host", "0.0.0.0", "--port", "8000"]
