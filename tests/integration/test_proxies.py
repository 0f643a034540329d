"""Runs go through the saved proxies as Figranium applies them: the default proxy for
every run, and for tasks with ``rotateProxies`` a rotation shared by every gateway replica
and the scheduler (the routes themselves: test_proxy_routes.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import socket
import urllib.request
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from figranium_common.db import Connection
from figranium_common.models import Task
from figranium_common.proxy_choice import choose_proxy
from tests.integration.pages import QuietHandler, serve_http
from tests.integration.stack import Stack
from tests.integration.test_proxy_routes import clear_proxy_settings

Seen = list[tuple[str, str | None]]


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


@contextlib.contextmanager
def _forward_proxy() -> Iterator[tuple[str, Seen]]:
    """A forward proxy on a free loopback port: its URL and what it was asked for."""
    seen: Seen = []
    with serve_http(type("Handler", (_ProxyHandler,), {"seen": seen})) as url:
        yield url, seen


@pytest.fixture
def proxy() -> Iterator[tuple[str, Seen]]:
    with _forward_proxy() as started:
        yield started


@pytest.fixture
def proxies() -> Iterator[list[tuple[str, Seen]]]:
    """Two forward proxies."""
    with _forward_proxy() as one, _forward_proxy() as two:
        yield [one, two]


@pytest.fixture
def clean(stack: tuple[Stack, httpx.Client]) -> Iterator[None]:
    """No saved proxy, default or rotation before and after: every later run on the shared
    stack would go through them."""
    clear_proxy_settings(stack[0].env["DATABASE_URL"])
    yield
    clear_proxy_settings(stack[0].env["DATABASE_URL"])


def _save_task(api: httpx.Client, task_id: str, site: str, **fields: object) -> None:
    task = {"id": task_id, "url": f"{site}/form", "extractionScript": "return document.title"}
    saved = api.post("/api/tasks", json={**task, **fields})
    assert saved.status_code == 200, saved.text


def _run_through(
    api: httpx.Client, task_id: str, site: str, proxies: list[tuple[str, Seen]]
) -> int | None:
    """Run the task; which of ``proxies`` carried its page (None: none did)."""
    before = [len(seen) for _, seen in proxies]
    run = api.post(f"/api/tasks/{task_id}/api", json={})
    assert run.status_code == 200, run.text
    assert run.json()["data"] == "Form"
    target = site.removeprefix("http://")
    carried = [
        index
        for index, (_, seen) in enumerate(proxies)
        if any(target in path for path, _ in seen[before[index] :])
    ]
    assert len(carried) <= 1, carried
    return carried[0] if carried else None


def test_rotate_proxies_uses_the_saved_ones(
    api: httpx.Client,
    site: str,
    stack: tuple[Stack, httpx.Client],
    proxy: tuple[str, Seen],
    clean: None,
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
    _save_task(api, "proxied", site, rotateProxies=True)
    assert _run_through(api, "proxied", site, [proxy]) == 0
    target = site.removeprefix("http://")
    assert any(target in path and auth for path, auth in seen), seen
    assert "secret" not in stack[0].services[1].log_text()  # the runner never logs it


def test_the_default_proxy_carries_every_run(
    api: httpx.Client, site: str, proxies: list[tuple[str, Seen]], clean: None
) -> None:
    imported = api.post("/api/settings/proxies/import", json={"proxies": [p for p, _ in proxies]})
    second = imported.json()["proxies"][2]["id"]
    _save_task(api, "plain", site)  # no rotateProxies
    assert _run_through(api, "plain", site, proxies) is None  # no default yet: the host
    assert api.post("/api/settings/proxies/default", json={"id": second}).status_code == 200
    assert _run_through(api, "plain", site, proxies) == 1
    assert _run_through(api, "plain", site, proxies) == 1
    api.post("/api/settings/proxies/default", json={"id": None})
    assert _run_through(api, "plain", site, proxies) is None


def test_round_robin_takes_the_proxies_in_turn(
    api: httpx.Client, site: str, proxies: list[tuple[str, Seen]], clean: None
) -> None:
    api.post("/api/settings/proxies/import", json={"proxies": [p for p, _ in proxies]})
    _save_task(api, "rotating", site, rotateProxies=True)
    used = [_run_through(api, "rotating", site, proxies) for _ in range(4)]
    assert used in ([0, 1, 0, 1], [1, 0, 1, 0]), used


def test_random_rotation_picks_only_from_the_set(
    api: httpx.Client, site: str, proxies: list[tuple[str, Seen]], clean: None
) -> None:
    api.post("/api/settings/proxies/import", json={"proxies": [p for p, _ in proxies]})
    api.post("/api/settings/proxies/rotation", json={"rotationMode": "random"})
    _save_task(api, "random-proxy", site, rotateProxies=True)
    # The host is the default and left out of the rotation: every run takes a proxy.
    used = [_run_through(api, "random-proxy", site, proxies) for _ in range(3)]
    assert set(used) <= {0, 1}, used


async def _connect(url: str) -> Connection:
    return await Connection.connect(url, autocommit=True, row_factory=dict_row)


def test_one_rotation_for_every_replica_and_the_scheduler(
    api: httpx.Client, stack: tuple[Stack, httpx.Client], clean: None
) -> None:
    """Each connection stands for a gateway replica or the scheduler, which chooses inside
    its claim transaction: they take turns in one rotation, also when at the same time."""
    servers = [f"http://127.0.0.1:{port}" for port in (9301, 9302, 9303)]
    api.post("/api/settings/proxies/import", json={"proxies": servers})
    url, box = stack[0].env["DATABASE_URL"], stack[0].master_box()
    task = Task(rotateProxies=True)

    async def dispatch() -> tuple[list[str], list[str]]:
        gateway_a, gateway_b, scheduler = [await _connect(url) for _ in range(3)]

        async def choose(conn: Connection) -> str:
            if conn is scheduler:
                async with conn.transaction():
                    (chosen,) = await choose_proxy(conn, box, task)
            else:
                (chosen,) = await choose_proxy(conn, box, task)
            return chosen.server

        try:
            turns = (gateway_a, gateway_b, scheduler, gateway_a, scheduler, gateway_b)
            order = [await choose(conn) for conn in turns]
            together = await asyncio.gather(*(choose(c) for c in (gateway_a, gateway_b, scheduler)))
            return order, together
        finally:
            for conn in (gateway_a, gateway_b, scheduler):
                await conn.close()

    order, together = asyncio.run(dispatch())
    first = servers.index(order[0])
    assert order == [servers[(first + turn) % 3] for turn in range(6)]
    assert sorted(together) == servers

    # The turn is PostgreSQL's: whatever a replica elsewhere advanced it to is followed.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE settings SET value = '301' WHERE key = 'proxy_rotation_turn'")
    assert asyncio.run(dispatch())[0][0] == servers[301 % 3]


def test_what_a_rotation_takes_from(
    api: httpx.Client, stack: tuple[Stack, httpx.Client], clean: None
) -> None:
    servers = [f"http://127.0.0.1:{port}" for port in (9401, 9402, 9403)]
    imported = api.post("/api/settings/proxies/import", json={"proxies": servers})
    ids = [p["id"] for p in imported.json()["proxies"][1:]]
    url, box = stack[0].env["DATABASE_URL"], stack[0].master_box()

    def choices(times: int, **task: bool) -> list[str | None]:
        async def draw() -> list[str | None]:
            async with await _connect(url) as conn:
                picked = [await choose_proxy(conn, box, Task(**task)) for _ in range(times)]
            return [chosen[0].server if chosen else None for chosen in picked]

        return asyncio.run(draw())

    def turn() -> object:
        with psycopg.connect(url) as conn:
            return conn.execute(
                "SELECT value FROM settings WHERE key = 'proxy_rotation_turn'"
            ).fetchone()

    # The host is the default: plain runs take no proxy, rotating ones the three.
    assert choices(3) == [None] * 3
    assert set(choices(3, rotateProxies=True)) == set(servers)
    api.post("/api/settings/proxies/rotation", json={"includeDefaultInRotation": True})
    assert set(choices(4, rotateProxies=True)) == {None, *servers}

    # A proxy is the default: plain runs take it; a rotation includes it, or instead of it
    # the host.
    api.post("/api/settings/proxies/default", json={"id": ids[1]})
    assert choices(3) == [servers[1]] * 3
    assert set(choices(4, rotateProxies=True)) == {None, *servers}
    api.post("/api/settings/proxies/rotation", json={"includeDefaultInRotation": False})
    assert set(choices(3, rotateProxies=True)) == {None, servers[0], servers[2]}

    # Random picks from the same set, and leaves the round-robin turn alone.
    api.post("/api/settings/proxies/rotation", json={"rotationMode": "random"})
    before = turn()
    drawn = choices(40, rotateProxies=True)
    assert set(drawn) <= {None, servers[0], servers[2]} and len(set(drawn)) > 1
    assert turn() == before


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
    assert [(p["id"], p["hasPassword"]) for p in listed] == [("host", False), ("proxy_old", True)]


@pytest.mark.stack
def test_a_proxy_is_checked_again_for_each_run(isolated: Stack, proxy: tuple[str, Seen]) -> None:
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
