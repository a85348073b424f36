# syntax=docker/dockerfile:1
# Bulwark production image: gunicorn serving controlplane.wsgi on 0.0.0.0:8000, non-root.
# The same image runs the Celery worker and beat (see docker-compose.yml).
#
# No secret is baked in: every secret comes from the environment (or NAME_FILE, or Azure Key
# Vault) at run time, and BULWARK_ENV=production refuses to start without real ones.
#
# Pin by digest in CI if you need byte-for-byte rebuilds:
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:... .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- Build stage: runtime dependencies only, every file checked against requirements.lock ---
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
COPY requirements.lock /tmp/requirements.lock
# --require-hashes: a download whose hash is not in the lock fails the build.
# --no-deps: the lock is the complete set; nothing unlisted is resolved behind our back.
RUN /opt/venv/bin/pip install --require-hashes --no-deps -r /tmp/requirements.lock

# --- Runtime stage ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=controlplane.settings \
    BULWARK_ENV=production \
    STATIC_ROOT=/app/var/static \
    MEDIA_ROOT=/data/media \
    WEB_CONCURRENCY=2

# A fixed numeric uid/gid so orchestrators can verify runAsNonRoot.
RUN groupadd --system --gid 10001 bulwark \
    && useradd --system --uid 10001 --gid bulwark --home-dir /home/bulwark --create-home \
       --shell /usr/sbin/nologin bulwark \
    && mkdir -p /data/media \
    && chown bulwark:bulwark /data/media

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
# The code stays owned by root: the service user can read it, not change it.
COPY . /app

# collectstatic imports the settings, which refuse to start without the six secrets and
# ALLOWED_HOSTS. Throwaway values are generated inside this one process and handed to the
# collectstatic it execs: they never reach an ENV, a file, or the layer. BULWARK_DOTENV points
# at /dev/null so no .env is read or written.
RUN python -c "import os, sys; \
from apps.core.secrets.required import REQUIRED_SECRETS; \
os.environ.update({s.name: s.generate() for s in REQUIRED_SECRETS}, \
ALLOWED_HOSTS='build.invalid', BULWARK_DOTENV=os.devnull); \
os.execv(sys.executable, [sys.executable, 'manage.py', 'collectstatic', '--noinput', '--verbosity', '0'])" \
    && python -m compileall -q /app/apps /app/controlplane

USER 10001:10001

EXPOSE 8000

# Liveness only (/healthz touches nothing, and answers whatever the Host header says). Worker
# and beat containers, which serve no HTTP, replace it (see docker-compose.yml).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

# controlplane/gunicorn.conf.py: WEB_CONCURRENCY sync workers (bench/predict measured sync
# against gthread on 2 cores), gc.freeze() at worker start, timeouts, heartbeat files in
# /dev/shm, no X-Forwarded-* believed by gunicorn (TRUSTED_PROXIES decides), no control socket.
CMD ["gunicorn", "-c", "controlplane/gunicorn.conf.py", "controlplane.wsgi", "--bind", "0.0.0.0:8000"]
