"""Whole-stack fixtures: real NATS, PostgreSQL, Chromium and the services as processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from figranium_devstack.natsserver import LocalNats
from figranium_devstack.ports import free_port
from figranium_devstack.postgres import LocalPostgres
from tests.integration.ai_fakes import AiFakes
from tests.integration.console_browser import SharedChromium, signed_in
from tests.integration.pages import PageHandler, serve_http
from tests.integration.stack import Stack, own_stack

# Figures some tests measure and report without asserting (``record_property("figures",
# ...)``), printed together at the end; this also works with xdist workers, whose reports
# carry their properties back to the main process.
_figures: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        _figures.extend(str(value) for name, value in report.user_properties if name == "figures")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _figures:
        terminalreporter.section("measured figures (reported, not asserted)")
        for line in _figures:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def site() -> Iterator[str]:
    """Test pages served on a free loopback port."""
    with serve_http(PageHandler) as url:
        yield url


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def postgres(workdir: Path) -> Iterator[LocalPostgres]:
    with LocalPostgres(workdir / "pg", free_port(), fast=True) as server:
        yield server


@pytest.fixture(scope="session")
def nats_server(workdir: Path) -> Iterator[LocalNats]:
    with LocalNats(workdir / "nats", free_port()) as server:
        yield server


@pytest.fixture(scope="session")
def stack(
    workdir: Path, nats_server: LocalNats, postgres: LocalPostgres
) -> Iterator[tuple[Stack, httpx.Client]]:
    """The shared stack: one gateway and one runner."""
    stack = Stack(workdir / "shared", nats_server, postgres.url)
    (workdir / "shared").mkdir()
    try:
        _, client = stack.start_gateway()
        stack.start_runner()
        yield stack, client
    finally:
        stack.close()


@pytest.fixture
def api(stack: tuple[Stack, httpx.Client]) -> httpx.Client:
    return stack[1]


@pytest.fixture
def isolated(tmp_path: Path, postgres: LocalPostgres) -> Iterator[Stack]:
    """A stack with its own NATS server and database, for tests that kill or starve runners
    (mark them ``@pytest.mark.stack``)."""
    with own_stack(tmp_path, postgres) as stack:
        yield stack


@pytest.fixture(scope="module")
def fakes() -> Iterator[AiFakes]:
    """Local stand-ins for the AI vendors, for the test module."""
    with AiFakes() as started:
        yield started


@pytest.fixture(scope="module")
def ai_stack(
    tmp_path_factory: pytest.TempPathFactory, postgres: LocalPostgres, fakes: AiFakes
) -> Iterator[Stack]:
    """A stack of its own (NATS, database, a gateway; no runner) whose gateway sends every
    AI call to ``fakes``, for the test module."""
    with own_stack(tmp_path_factory.mktemp("ai"), postgres, **fakes.env) as stack:
        stack.start_gateway()
        yield stack


@pytest.fixture(scope="session")
def chromium() -> Iterator[SharedChromium]:
    """The Chromium every console test of this worker drives (one process, fresh contexts)."""
    shared = SharedChromium()
    try:
        yield shared
    finally:
        shared.close()


@pytest.fixture
def browser_like(api: httpx.Client) -> Iterator[httpx.Client]:
    """A browser-like client holding a console session on the shared stack."""
    client = signed_in(str(api.base_url))
    try:
        yield client
    finally:
        client.close()
