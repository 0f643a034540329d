# Figranium developer entry points.
#
# Two stacks can run side by side: `make run PORT=11346 FIGRANIUM_DATA_DIR=./.data2`.
# make hands command-line and environment variables to recipes by itself; an explicit `export`
# would also hand an empty PORT to every other target whenever it is unset.
#
# `HEADFUL=true make run` (or `make run HEADFUL=true`) also starts one headful runner:
# Chromium on a virtual display, watched through noVNC (docs/headful.md). Its Xvfb,
# x11vnc and noVNC are installed when missing, then and by `make test` (the headful
# integration tests need them), never by `make install` or `make lint`.

UV ?= uv
PYTHON ?= python3
VENV := .venv/bin
MYPY_TARGETS := libs/common/figranium_common services/gateway/figranium_gateway \
	services/runner/figranium_runner services/scheduler/figranium_scheduler \
	tools/devstack/figranium_devstack

.PHONY: install run test lint format bench console-shots faults

# No stamp file: `uv sync` compares the venv with uv.lock itself and returns in about a
# second when nothing changed, which a stamp could only get wrong. --compile-bytecode writes
# the dependencies' .pyc files once, at install: where PYTHONDONTWRITEBYTECODE is set, every
# service start would otherwise compile them again (seconds per gateway under load).
install:
	@if command -v $(UV) >/dev/null 2>&1; then uv="$(UV)"; \
	else $(PYTHON) -m pip install --quiet uv && uv="$(PYTHON) -m uv"; fi; \
	$$uv sync --frozen --all-packages --compile-bytecode
	@bash scripts/ensure-chromium.sh
	@bash scripts/ensure-ffmpeg.sh
	@bash scripts/ensure-haproxy.sh

run: install
	@case "$${HEADFUL:-}" in 1|[Tt][Rr][Uu][Ee]) bash scripts/ensure-headful.sh;; esac
	$(VENV)/python -m figranium_devstack run

# Test files run on PYTEST_WORKERS processes, three on two cores: most integration tests
# wait on services, not on the CPU (the suite passes with a busy loop taking one of the two
# cores). Each worker starts its own NATS, PostgreSQL and services. 0 runs them in one.
# Files are handed out in the order conftest.py collects them (those that start stacks of
# their own first), not by xdist's count of tests per file, which left the long few-test
# files for last.
PYTEST_WORKERS ?= 3

test: install
	@bash scripts/ensure-headful.sh
	$(VENV)/pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

lint: install
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy $(MYPY_TARGETS)

# Measured figures, not tests: a private stack, eleven to twelve minutes, written to
# benchmarks/results/latest.json. `make bench BENCH_ARGS="--quick"` for a smoke check.
bench: install
	$(VENV)/python -m benchmarks $(BENCH_ARGS)

# The fault matrix on the cluster topology (docs/faults.md): a private three-node stack, six
# faults under load, figures in faults/results/latest.json. `FAULTS_ARGS="--keep"` keeps logs.
faults: install
	$(VENV)/python -m faults $(FAULTS_ARGS)

# The console's screenshots in docs/console/ (a private stack, Playwright; about a minute).
console-shots: install
	$(VENV)/python -m benchmarks.console_shots

format:
	$(VENV)/ruff format .
	$(VENV)/ruff check --fix .
