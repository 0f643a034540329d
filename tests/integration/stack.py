"""Helpers for whole-stack tests: service processes, stacks, waiting on them."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, LiteralString, TypeVar

import httpx
import psycopg
from psycopg import sql

from figranium_common import transit
from figranium_common.config import Config
from figranium_common.secretbox import SecretBox
from figranium_devstack import natsauth
from figranium_devstack.natsserver import LocalNats
from figranium_devstack.ports import free_port
from figranium_devstack.postgres import LocalPostgres
from figranium_devstack.service import Service

API_KEY = "test-key-0123456789"

T = TypeVar("T")


class Stack:
    """Starts services against one NATS and one PostgreSQL; stops them all at the end.

    Given the LocalNats itself, each service connects as its own NATS user (as in
    production); ``env["NATS_URL"]`` is the admin's URL, for the tests' own connections.
    """

    def __init__(self, workdir: Path, nats: LocalNats | str, database_url: str, **env: str) -> None:
        self.workdir = workdir
        self.nats = nats if isinstance(nats, LocalNats) else None
        self.env = {
            **os.environ,
            "NATS_URL": nats if isinstance(nats, str) else nats.url,
            "DATABASE_URL": database_url,
            # Gateway and scheduler share the master key file created here.
            "FIGRANIUM_DATA_DIR": str(workdir),
            "FIGRANIUM_API_KEY": API_KEY,
            "ALLOW_PRIVATE_NETWORKS": "true",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "RUN_TIMEOUT_SECONDS": "60",
            "RUN_ACK_WAIT_SECONDS": "4",
            "RUN_MAX_DELIVER": "3",
            "RUNNER_CONCURRENCY": "2",
            "RUNNER_DRAIN_SECONDS": "5",
            "PYTHONUNBUFFERED": "1",
            # Several services of each kind per machine: no fixed ops ports (tests that
            # need one pass a free port).
            "SCHEDULER_METRICS_PORT": "0",
            "GATEWAY_METRICS_PORT": "0",
            "RUNNER_METRICS_PORT": "0",
            # Every test client is 127.0.0.1; tests of wrong keys must not lock out the rest.
            "AUTH_SLOW_AFTER_FAILURES": "1000",
            "AUTH_LOCKOUT_AFTER_FAILURES": "100000",
            **env,
        }
        self.services: list[Service] = []
        self.clients: list[httpx.Client] = []
        self._count = 0

    def start(self, name: str, **env: str) -> Service:
        self._count += 1
        log_path = self.workdir / f"{name}-{self._count}.log"
        role = self.nats.service_env(name) if self.nats and name in natsauth.ROLES else {}
        merged = {**self.env, **role, **env}
        if name == "runner":
            # As in production: the transit key, never the master key.
            merged.setdefault("FIGRANIUM_TRANSIT_KEY", self.transit_key())
            merged.pop("FIGRANIUM_MASTER_KEY", None)
        service = Service(name, merged, log_path)
        self.services.append(service)
        return service

    def master_box(self) -> SecretBox:
        """The master key gateway and scheduler use (the key file is made if absent)."""
        values = {k: v for k, v in self.env.items() if k.startswith("FIGRANIUM_")}
        return SecretBox.from_config(Config.model_validate(values))

    def transit_key(self) -> str:
        return transit.transit_key_text(self.master_box())

    def start_gateway(self, **env: str) -> tuple[Service, httpx.Client]:
        port = free_port()
        service = self.start("gateway", PORT=str(port), **env)
        client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"x-api-key": API_KEY}, timeout=120
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if client.get("/api/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if service.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"gateway did not become healthy:\n{service.log_text()}")
            time.sleep(0.2)
        self.clients.append(client)
        return service, client

    def start_runner(self, **env: str) -> Service:
        service = self.start("runner", **env)
        service.wait_for_log("runner.ready", timeout=60)
        return service

    def start_headful_runner(self, **env: str) -> Service:
        """A headful runner: Chromium on a virtual display, its viewer on a free port."""
        return self.start_runner(**{"RUNNER_HEADFUL": "true", "NOVNC_PORT": "0", **env})

    def close(self) -> None:
        for client in self.clients:
            client.close()
        for service in reversed(self.services):
            service.stop(timeout=15)


@contextlib.contextmanager
def own_stack(workdir: Path, postgres: LocalPostgres, **env: str) -> Iterator[Stack]:
    """A stack with a NATS server and a database of its own (on the shared PostgreSQL
    server), for tests whose services or data must not meet the shared stack's; no service
    is started yet. Everything started on it is stopped at the end."""
    database_url = fresh_database(postgres, f"own_{uuid.uuid4().hex[:12]}")
    with LocalNats(workdir / "nats", free_port()) as nats_server:
        stack = Stack(workdir, nats_server, database_url, **env)
        try:
            yield stack
        finally:
            stack.close()


def fresh_database(server: LocalPostgres, name: str) -> str:
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return server.url.rsplit("/", 1)[0] + f"/{name}"


def wait_until(check: Callable[[], T], timeout: float, what: str) -> T:
    """The first truthy value ``check()`` returns, asked every 0.2 s; fails after ``timeout``
    seconds, naming ``what`` was waited for."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def fetch_rows(
    database_url: str, query: LiteralString, params: Sequence[object] = ()
) -> list[tuple[Any, ...]]:
    """The rows ``query`` answers, on a connection of its own."""
    with psycopg.connect(database_url) as conn:
        return conn.execute(query, params).fetchall()


def count_rows(database_url: str, query: LiteralString, params: Sequence[object] = ()) -> int:
    """The number a ``SELECT count(*) ...`` query answers."""
    ((count,),) = fetch_rows(database_url, query, params)
    return int(count)


def result_rows(database_url: str, execution_id: str) -> int:
    """How many result events are stored for the execution (exactly one once it finished)."""
    return count_rows(
        database_url,
        "SELECT count(*) FROM execution_events WHERE execution_id = %s AND type = 'result'",
        (execution_id,),
    )
