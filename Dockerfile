# syntax=docker/dockerfile:1
# Task Manager API image. Stages: deps (the venv, cached apart from the code), test (the suite),
# runtime (slim, non-root). Build: docker build --build-arg APP_VERSION=$(git rev-parse HEAD) .

# One pinned base for every stage: upgrading Python is a one-line change.
FROM python:3.11.11-slim-bookworm AS base

FROM base AS deps
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
# Only the requirements: this layer is rebuilt when they change, not when the code does.
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt

FROM deps AS test
COPY requirements-dev.txt /tmp/requirements-dev.txt
RUN pip install --no-cache-dir -r /tmp/requirements-dev.txt
WORKDIR /src
COPY . .
# tests/deploy needs nginx and a local .venv; the compose test run covers the API suite.
CMD ["pytest", "-q", "--ignore=tests/deploy"]

FROM base AS source
WORKDIR /src
COPY . .
RUN rm -rf tests requirements-dev.txt

FROM base AS runtime
# The commit the image was built from; /version reports it and the deploy's smoke check
# compares it with the tag it asked for.
ARG APP_VERSION=dev
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    APP_VERSION=${APP_VERSION} \
    ENVIRONMENT=production \
    HOST=0.0.0.0 \
    PORT=8000 \
    WEB_CONCURRENCY=2 \
    LOG_FORMAT=json \
    UPLOAD_DIR=/app/data/uploads
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=deps /opt/venv /opt/venv
# Code stays owned by root: the app user can read it but not change it.
COPY --from=source /src /app
RUN mkdir -p /app/data/uploads && chown -R app:app /app/data
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8000')}/health\", timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["serve"]
