"""Helpers for whole-stack tests: service processes, stacks, test pages."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

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

PAGES: dict[str, str] = {
    "/scripted": """<!doctype html><html><head><title>Scripted</title></head><body>
<p id="s">static</p><script>document.getElementById('s').textContent = 'scripted';</script>
</body></html>""",
    "/form": """<!doctype html><html><head><title>Form</title></head><body>
<input id="q" placeholder="item">
<button id="add" onclick="
  const li = document.createElement('li');
  li.textContent = document.getElementById('q').value;
  document.getElementById('items').appendChild(li);">Add</button>
<ul id="items"><li>apple</li><li>banana</li></ul>
</body></html>""",
    "/slow": """<!doctype html><html><body><p id="p">slow page</p></body></html>""",
    # Counts visits in a session cookie and in local storage: what a run sees shows which
    # browser state it started from.
    "/cookie": """<!doctype html><html><head><title>Visits</title></head><body>
<p id="visits"></p><p id="stored"></p>
<script>
  const match = document.cookie.match(/(?:^|; )visits=(\\d+)/);
  const visits = (match ? Number(match[1]) : 0) + 1;
  document.cookie = 'visits=' + visits + '; path=/';
  const stored = Number(localStorage.getItem('stored') || 0) + 1;
  localStorage.setItem('stored', String(stored));
  document.getElementById('visits').textContent = visits;
  document.getElementById('stored').textContent = stored;
</script></body></html>""",
}


class PageHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = PAGES.get(self.path.split("?")[0])
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


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
