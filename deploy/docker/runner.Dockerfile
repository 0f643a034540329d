# syntax=docker/dockerfile:1
# The runner: Debian's Chromium driven by Playwright; ops server (/metrics, /livez, /readyz)
# on 9466. No database driver, no inbound API: runs arrive from NATS JetStream.
# Build from the repository root:  docker build -f deploy/docker/runner.Dockerfile -t figranium-runner .
# The headful runner is the stage "headful" of this file (the same build, plus Xvfb, x11vnc
# and noVNC):  docker build -f deploy/docker/runner.Dockerfile --target headful -t figranium-runner-headful .

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
    uv sync --frozen --no-dev --no-install-workspace --package figranium-runner
# Then this service and libs/common, installed as wheels (not editable: /src is not copied on).
COPY libs/common libs/common
COPY services/runner services/runner
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package figranium-runner

FROM python:3.12-slim-bookworm AS runner
# Debian's Chromium rather than Playwright's download: security updates come with the
# distribution, and the same binaries are what `make install` prefers. Headless runs use
# its headless shell (the build Playwright runs headless), which costs a third of the CPU
# per run; the full browser is for headful runs. Fonts so pages in Latin,
# CJK and emoji render and screenshot correctly; ffmpeg (with libvpx-vp9) for run videos;
# tini as PID 1, to reap the Chromium processes that exit after their parent.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       ca-certificates \
       chromium \
       chromium-headless-shell \
       ffmpeg \
       fonts-liberation \
       fonts-noto-cjk \
       fonts-noto-color-emoji \
       tini \
    && rm -rf /var/lib/apt/lists/*
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/app/.venv/bin:$PATH \
    CHROMIUM_PATH=/usr/bin/chromium \
    CHROMIUM_HEADLESS_PATH=/usr/bin/chromium-headless-shell \
    PLAYWRIGHT_BROWSERS_PATH=/ms-playwright
RUN groupadd --system --gid 10001 figranium \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/figranium --create-home \
       --shell /usr/sbin/nologin figranium
COPY --from=builder /app/.venv /app/.venv
# Playwright records videos with the ffmpeg at <PLAYWRIGHT_BROWSERS_PATH>/ffmpeg-<revision>/
# ffmpeg-linux; the same script as `make install` links Debian's ffmpeg there (the revision
# is read from the installed Playwright). Fail the build if the link is missing: the runner
# would otherwise start without videos and only say so in its log.
COPY scripts/ensure-ffmpeg.sh /app/scripts/ensure-ffmpeg.sh
RUN bash /app/scripts/ensure-ffmpeg.sh \
    && ls /ms-playwright/ffmpeg-*/ffmpeg-linux \
    && test -x "$(ls /ms-playwright/ffmpeg-*/ffmpeg-linux | head -n 1)"
# Numeric, so Kubernetes can verify runAsNonRoot. Chromium writes its caches under $HOME.
USER 10001:10001
WORKDIR /home/figranium
EXPOSE 9466
ENTRYPOINT ["/usr/bin/tini", "--", "/app/.venv/bin/python", "-m", "figranium_runner"]

# The headful runner: the same runner started with RUNNER_HEADFUL=true. It runs Xvfb (the
# virtual display Chromium is headed on) and x11vnc (VNC, on 127.0.0.1 only) itself, and
# serves Debian's noVNC client from /usr/share/novnc with its own ticket-checked websocket
# on 54311 (websockify comes with novnc; it is not run). One run at a time, from its own
# consumer, so KEDA's runner scaling never starts these.
FROM runner AS headful
USER root
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       novnc \
       websockify \
       x11vnc \
       xvfb \
    && rm -rf /var/lib/apt/lists/*
ENV RUNNER_HEADFUL=true \
    RUNNER_CONCURRENCY=1 \
    NOVNC_PORT=54311 \
    NOVNC_WEB_DIR=/usr/share/novnc
USER 10001:10001
EXPOSE 54311

# Last, so that a build without --target is the plain runner.
FROM runner
