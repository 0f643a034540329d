"""Secrets that travel through NATS (proxy passwords, browser state) are sealed: neither the
streams' messages nor the NATS store directory hold them in clear, and runners open them
with the transit key, never the master key."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from figranium_common import nats as topology
from tests.integration.pages import QuietHandler, serve_http
from tests.integration.stack import Stack

pytestmark = pytest.mark.stack  # every test here starts services of its own

PROXY_SECRET = "proxy-secret-3b8e61f0"
COOKIE_SECRET = "cookie-secret-c41d27aa"


class _CookiePage(QuietHandler):
    """Sets a session cookie, and says in its title whether the browser sent it back."""

    def do_GET(self) -> None:
        seen = COOKIE_SECRET in (self.headers.get("Cookie") or "")
        body = f"<!doctype html><title>seen:{'yes' if seen else 'no'}</title>".encode()
        cookie = f"sid={COOKIE_SECRET}; Path=/; Max-Age=3600"
        self.send_body(body, "text/html", {"Set-Cookie": cookie})


@pytest.fixture
def cookie_page() -> Iterator[str]:
    with serve_http(_CookiePage) as url:
        yield f"{url}/"


async def _stream_bodies(url: str, stream: str) -> list[bytes]:
    """Every message a stream holds, as stored."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        state = (await js.stream_info(stream)).state
        bodies = []
        for seq in range(state.first_seq, state.last_seq + 1):
            try:
                bodies.append((await js.get_msg(stream, seq)).data or b"")
            except nats.js.errors.NotFoundError:
                continue  # deleted (taken from the work queue)
        return bodies
    finally:
        await nc.close()


def _store_files_holding(store: Path, secret: bytes) -> list[Path]:
    return [p for p in store.rglob("*") if p.is_file() and secret in p.read_bytes()]


def test_nats_carries_secrets_sealed_and_runners_open_them(
    isolated: Stack, site: str, cookie_page: str
) -> None:
    assert isolated.nats is not None
    admin_url = isolated.env["NATS_URL"]
    _, client = isolated.start_gateway()
    # A run request for a task with a saved proxy waits in RUNS: no runner is up yet.
    added = client.post(
        "/api/settings/proxies",
        json={"server": "http://127.0.0.1:9", "username": "user", "password": PROXY_SECRET},
    )
    assert added.status_code == 200, added.text
    task = {"id": "proxied", "url": f"{site}/form", "rotateProxies": True}
    assert client.post("/api/tasks", json=task).status_code == 200
    queued = client.post("/api/tasks/proxied/api", json={"async": True})
    assert queued.status_code == 202, queued.text
    (waiting,) = asyncio.run(_stream_bodies(admin_url, topology.RUNS_STREAM))
    assert PROXY_SECRET.encode() not in waiting
    assert b'"sealed":"enc:v1:' in waiting
    (proxy,) = added.json()["proxies"][1:]  # after the host entry
    assert client.delete(f"/api/settings/proxies/{proxy['id']}").status_code < 300

    # Browser state: the first run gets the cookie and sends it back sealed in its result;
    # the second starts from it, sealed in its run request. The runner opens both ways.
    runner = isolated.start_runner()
    environ = Path(f"/proc/{runner.proc.pid}/environ").read_bytes().split(b"\0")
    assert not [v for v in environ if v.startswith(b"FIGRANIUM_MASTER_KEY=")]
    assert [v for v in environ if v.startswith(b"FIGRANIUM_TRANSIT_KEY=")]
    stateful = {
        "id": "stateful",
        "url": cookie_page,
        "extractionScript": "return document.title",
    }
    assert client.post("/api/tasks", json=stateful).status_code == 200
    first = client.post("/api/tasks/stateful/api", json={})
    assert first.status_code == 200 and first.json()["data"] == "seen:no", first.text
    second = client.post("/api/tasks/stateful/api", json={})
    assert second.status_code == 200 and second.json()["data"] == "seen:yes", second.text

    events = asyncio.run(_stream_bodies(admin_url, topology.EVENTS_STREAM))
    assert any(b'"sealed_storage_state":"enc:v1:' in body for body in events)
    for body in events:
        assert COOKIE_SECRET.encode() not in body
        assert PROXY_SECRET.encode() not in body
    for secret in (PROXY_SECRET, COOKIE_SECRET):
        assert not _store_files_holding(isolated.nats.store_dir, secret.encode())


def test_runs_still_work_when_nats_is_reached_with_credentials_in_the_url(
    isolated: Stack, site: str
) -> None:
    """NATS_URL may carry the user and password instead of NATS_USER/NATS_PASSWORD."""
    assert isolated.nats is not None
    _, client = isolated.start_gateway()
    isolated.start_runner(NATS_URL=isolated.nats.url_for("runner"), NATS_USER="", NATS_PASSWORD="")
    task = {"id": "plain", "url": f"{site}/form", "extractionScript": "return document.title"}
    assert client.post("/api/tasks", json=task).status_code == 200
    run = client.post("/api/tasks/plain/api", json={})
    assert run.status_code == 200 and run.json()["data"] == "Form", run.text
