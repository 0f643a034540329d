"""Saved proxies reach the runner for tasks with ``rotateProxies``."""

from __future__ import annotations

import json
import select
import socket
import urllib.request
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from tests.integration.pages import QuietHandler, serve_http
from tests.integration.stack import Stack


class _ProxyHandler(QuietHandler):
    """Forward proxy: absolute-form GETs (Chromium) and CONNECT tunnels (Playwright's fetch);
    what it was asked for, and with which credentials, is appended to ``seen``."""

    seen: list[tuple[str, str | None]]

    def do_CONNECT(self) -> None:
        self.seen.append((self.path, self.headers.get("Proxy-Authorization")))
        host, port = self.path.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as upstream:
            self.send_response(200, "Connection established")
            self.end_headers()
            self.close_connection = True
            _pipe(self.connection, upstream)

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Proxy-Authorization")))
        with urllib.request.urlopen(self.path, timeout=10) as upstream:
            body = upstream.read()
            content_type = upstream.headers.get("Content-Type", "text/html")
        self.send_body(body, content_type)


def _pipe(client: socket.socket, upstream: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    sockets = [client, upstream]
    while True:
        readable, _, _ = select.select(sockets, [], [], 10)
        if not readable:
            return
        for sock in readable:
            data = sock.recv(65536)
            if not data:
                return
            (upstream if sock is client else client).sendall(data)


@pytest.fixture
def proxy() -> Iterator[tuple[str, list[tuple[str, str | None]]]]:
    seen: list[tuple[str, str | None]] = []
    with serve_http(type("Handler", (_ProxyHandler,), {"seen": seen})) as url:
        yield url, seen


def test_rotate_proxies_uses_the_saved_ones(
    api: httpx.Client,
    site: str,
    stack: tuple[Stack, httpx.Client],
    proxy: tuple[str, list[tuple[str, str | None]]],
) -> None:
    address, seen = proxy
    added = api.post(
        "/api/settings/proxies",
        json={"server": address, "username": "user", "password": "secret"},
    )
    assert added.status_code == 200, added.text
    with psycopg.connect(stack[0].env["DATABASE_URL"], autocommit=True) as conn:
        row = conn.execute("SELECT value::text FROM settings WHERE key = 'proxies'").fetchone()
    # Sealed at rest: the raw row does not reveal the password.
    assert row is not None and "secret" not in row[0] and "enc:v1:" in row[0]
    try:
        api.post(
            "/api/tasks",
            json={
                "id": "proxied",
                "url": f"{site}/form",
                "rotateProxies": True,
                "extractionScript": "return document.title",
            },
        )
        run = api.post("/api/tasks/proxied/api", json={})
        assert run.status_code == 200, run.text
        assert run.json()["data"] == "Form"
        target = site.removeprefix("http://")
        assert any(target in path and auth for path, auth in seen), seen
        assert "secret" not in stack[0].services[1].log_text()  # the runner never logs it
    finally:
        with psycopg.connect(stack[0].env["DATABASE_URL"], autocommit=True) as conn:
            conn.execute("DELETE FROM settings WHERE key = 'proxies'")


@pytest.mark.stack
def test_passwords_stored_in_clear_earlier_are_sealed_at_start(isolated: Stack) -> None:
    saved = [{"id": "proxy_old", "server": "http://127.0.0.1:3128", "password": "old-secret"}]
    _, client = isolated.start_gateway()  # creates the schema
    with psycopg.connect(isolated.env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(
            "INSERT INTO settings (key, value) VALUES ('proxies', %s)", (json.dumps(saved),)
        )
    isolated.start_gateway()
    with psycopg.connect(isolated.env["DATABASE_URL"]) as conn:
        row = conn.execute("SELECT value::text FROM settings WHERE key = 'proxies'").fetchone()
    assert row is not None and "old-secret" not in row[0] and "enc:v1:" in row[0]
    listed = client.get("/api/settings/proxies").json()["proxies"]
    assert [(p["id"], p["hasPassword"]) for p in listed] == [("proxy_old", True)]


@pytest.mark.stack
def test_a_proxy_is_checked_again_for_each_run(
    isolated: Stack, proxy: tuple[str, list[tuple[str, str | None]]]
) -> None:
    # Saved while the gateway allowed it; by run time the runner's policy refuses its
    # address, as it would a name whose DNS answer changed after it was saved.
    address, seen = proxy
    _, api = isolated.start_gateway(ALLOW_PRIVATE_NETWORKS="true")
    isolated.start_runner(ALLOW_PRIVATE_NETWORKS="false")
    added = api.post("/api/settings/proxies", json={"server": address})
    assert added.status_code == 200, added.text
    saved = api.post(
        "/api/tasks",
        json={
            "id": "moved-proxy",
            "url": f"{address}/never-fetched",
            "rotateProxies": True,
            "extractionScript": "return document.title",
        },
    )
    assert saved.status_code == 200, saved.text

    run = api.post("/api/tasks/moved-proxy/api", json={})
    assert run.status_code == 422, run.text
    body = run.json()
    assert body["outcome"] == "error", body
    assert f"the proxy {address} is refused" in body["details"], body
    assert "loopback" in body["details"], body
    assert seen == []  # nothing went to the proxy
    execution = api.get(f"/api/executions/{body['executionId']}").json()["execution"]
    assert execution["outcome"] == "error"
