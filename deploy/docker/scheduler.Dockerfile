# syntax=docker/dockerfile:1
# The scheduler: no HTTP API; ops server (/metrics, /livez, /readyz) on 9464. No browser.
# Build from the repository root:  docker build -f deploy/docker/scheduler.Dockerfile -t figranium-scheduler .

# Builder and runtime use the same base, so the venv's interpreter link stays valid.
FROM python:3.12-slim-bookworm AS builder
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.12 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Third-party dependencies first, from the lock file alone, so code changes reuse this layer.
# Every member's pyproject.toml is needed for uv to see the whole workspace.
COPY pyproject.toml uv.lock ./
COPY libs/common/pyproject.toml libs/common/
COPY services/gateway/pyproject.toml services/gateway/
COPY services/runner/pyproject.toml services/runner/
COPY services/scheduler/pyproject.toml services/scheduler/
COPY tools/devstack/pyproject.toml tools/devstack/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package figranium-scheduler
# Then this service and libs/common, installed as wheels (not editable: /src is not copied on).
COPY libs/common libs/common
COPY services/scheduler services/scheduler
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package figranium-scheduler

FROM python:3.12-slim-bookworm
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/app/.venv/bin:$PATH
RUN groupadd --system --gid 10001 figranium \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/figranium --create-home \
       --shell /usr/sbin/nologin figranium
COPY --from=builder /app/.venv /app/.venv
# Numeric, so Kubernetes can verify runAsNonRoot. The home folder is the working directory:
# without FIGRANIUM_MASTER_KEY the key file is kept in ./.data, which must be writable.
USER 10001:10001
WORKDIR /home/figranium
EXPOSE 9464
ENTRYPOINT ["/app/.venv/bin/python", "-m", "figranium_scheduler"]
