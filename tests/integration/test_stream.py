"""``GET /api/executions/stream``: Server-Sent Events of execution changes, resumable."""

from __future__ import annotations

import asyncio
import json
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from figranium_gateway import changes
from tests.integration.pages import add_item
from tests.integration.stack import API_KEY, Stack

PATH = "/api/executions/stream"


@dataclass(frozen=True)
class Event:
    id: int
    kind: str
    data: dict[str, Any]


class SseReader:
    """An event stream read on a raw socket by a thread, so every wait has a bound.

    The request is HTTP/1.0: the body then comes unchunked and ends when the server
    closes the connection, which is how a stream ended at shutdown shows.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
    ) -> None:
        url = urlsplit(base_url)
        self._sock = socket.create_connection((url.hostname, url.port), timeout=10)
        target = PATH + (f"?{urlencode(query)}" if query else "")
        head = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self._sock.sendall(f"GET {target} HTTP/1.0\r\nHost: {url.netloc}\r\n{head}\r\n".encode())
        raw = b""
        while b"\r\n\r\n" not in raw:
            chunk = self._sock.recv(65536)
            if not chunk:
                break
            raw += chunk
        head_raw, _, self._buffer = raw.partition(b"\r\n\r\n")
        lines = head_raw.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {
            k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])
        }
        self.events: queue.Queue[Event] = queue.Queue()
        self.comments: list[str] = []
        self.ended = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        self._sock.settimeout(0.2)
        buffer, self._buffer = self._buffer, b""
        try:
            while not self._stop.is_set():
                buffer = self._parse(buffer)
                try:
                    chunk = self._sock.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                buffer += chunk
            self._parse(buffer)
        except OSError:
            pass
        finally:
            self.ended.set()

    def _parse(self, buffer: bytes) -> bytes:
        while b"\n\n" in buffer:
            block, _, buffer = buffer.partition(b"\n\n")
            fields: dict[str, str] = {}
            for line in block.decode().split("\n"):
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                    continue
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
            if "data" in fields:
                self.events.put(
                    Event(int(fields["id"]), fields["event"], json.loads(fields["data"]))
                )
        return buffer

    def until(self, done: Callable[[Event], bool], timeout: float = 45) -> list[Event]:
        """Every event up to and including the first that ``done`` accepts."""
        seen: list[Event] = []
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"stream never delivered the awaited event; got {seen}")
            try:
                event = self.events.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            seen.append(event)
            if done(event):
                return seen

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


def _reader(client: httpx.Client) -> SseReader:
    reader = SseReader(str(client.base_url), headers={"x-api-key": API_KEY})
    assert reader.status == 200, reader.headers
    return reader


def _finished(execution_id: str) -> Callable[[Event], bool]:
    return lambda e: e.kind == "finished" and e.data["executionId"] == execution_id


def _run(client: httpx.Client, site: str) -> tuple[str, str]:
    task_id = f"stream-{uuid.uuid4().hex[:8]}"
    task = {
        "id": task_id,
        "name": "streamed",
        "url": f"{site}/form",
        "actions": add_item("fig"),
    }
    assert client.post("/api/tasks", json=task).status_code == 200
    run = client.post(f"/api/tasks/{task_id}/api", json={})
    assert run.status_code == 200, run.text
    return task_id, str(run.json()["executionId"])


def _assert_run_events(
    events: list[Event], task_id: str, execution_id: str, logs: list[str]
) -> None:
    mine = [e for e in events if e.data["executionId"] == execution_id]
    kinds = [e.kind for e in mine]
    assert kinds[0] == "queued" and kinds[1] == "started" and kinds[-1] == "finished", kinds
    assert set(kinds[2:-1]) == {"log"}
    assert sorted(e.data["line"] for e in mine if e.kind == "log") == sorted(logs)
    assert all(e.data["taskId"] == task_id for e in mine)
    assert mine[-1].data["outcome"] == "success" and mine[-1].data["status"] == 200
    assert mine[-1].data["phase"] == "finished" and mine[-1].data["durationMs"] >= 0


def test_a_run_streams_queued_started_logs_finished_in_order(api: httpx.Client, site: str) -> None:
    reader = _reader(api)
    try:
        assert reader.headers["content-type"] == "text/event-stream"
        assert reader.headers["cache-control"] == "no-cache"
        assert reader.headers["x-accel-buffering"] == "no"
        task_id, execution_id = _run(api, site)
        events = reader.until(_finished(execution_id))
    finally:
        reader.close()
    ids = [e.id for e in events]
    assert ids == sorted(set(ids)), "ids must strictly increase"
    logs = api.get(f"/api/executions/{execution_id}").json()["execution"]["logs"]
    assert logs
    mine = [e for e in events if e.data["executionId"] == execution_id]
    _assert_run_events(events, task_id, execution_id, logs)
    # One ingester: the changes are in the order the runner sent its events.
    assert [e.data["line"] for e in mine if e.kind == "log"] == logs
    assert [e.data["seq"] for e in mine if e.kind == "log"] == sorted(
        e.data["seq"] for e in mine if e.kind == "log"
    )


def test_reconnecting_with_last_event_id_gets_exactly_the_rest(
    api: httpx.Client, site: str
) -> None:
    first = _reader(api)
    try:
        _, execution_id = _run(api, site)
        seen = first.until(_finished(execution_id))
    finally:
        first.close()
    assert len(seen) >= 4
    middle = seen[len(seen) // 2]
    expected = seen[len(seen) // 2 + 1 :]

    # The header wins over a stale ?lastEventId= (EventSource reconnects with its first URL).
    resume = {"Last-Event-ID": str(middle.id)}
    for headers, query in (
        (resume, {}),
        ({}, {"lastEventId": str(middle.id)}),
        (resume, {"lastEventId": "1"}),
    ):
        again = SseReader(str(api.base_url), headers={"x-api-key": API_KEY, **headers}, query=query)
        try:
            assert again.status == 200
            resumed = again.until(lambda e: e.id == seen[-1].id, timeout=15)
        finally:
            again.close()
        assert resumed == expected


def test_deleted_and_cleared_executions_emit_deleted(api: httpx.Client, site: str) -> None:
    task_id, deleted_id = _run(api, site)
    _, cleared_id = _run(api, site)
    reader = _reader(api)
    try:
        assert api.delete(f"/api/executions/{deleted_id}").status_code == 200
        event = reader.until(lambda e: e.kind == "deleted")[-1]
        assert event.data == {"executionId": deleted_id, "taskId": task_id, "phase": "deleted"}
        assert api.post("/api/executions/clear").status_code == 200
        reader.until(lambda e: e.kind == "deleted" and e.data["executionId"] == cleared_id)
    finally:
        reader.close()


def test_key_in_the_query_for_eventsource_and_no_key_refused(api: httpx.Client) -> None:
    base = str(api.base_url)
    for name in ("key", "apiKey"):
        reader = SseReader(base, query={name: API_KEY})
        try:
            assert reader.status == 200
            assert reader.headers["content-type"] == "text/event-stream"
        finally:
            reader.close()
    refused = httpx.get(base + PATH, timeout=10)
    assert refused.status_code == 401
    assert refused.json()["error"] == "UNAUTHORIZED"
    assert httpx.get(base + PATH, params={"key": "wrong"}, timeout=10).status_code == 401


def test_bad_last_event_id_is_refused(api: httpx.Client) -> None:
    for headers, params in (
        ({"Last-Event-ID": "abc"}, {}),
        ({"Last-Event-ID": "-5"}, {}),
        ({}, {"lastEventId": "1.5"}),
    ):
        response = api.get(PATH, headers=headers, params=params, timeout=10)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "INVALID_QUERY"
    # The stream's path is not taken for an execution id.
    assert api.get("/api/executions/stream-not").status_code == 404


@pytest.mark.stack
def test_a_run_through_one_gateway_streams_from_another(isolated: Stack, site: str) -> None:
    _, gateway_a = isolated.start_gateway()
    service_b, gateway_b = isolated.start_gateway()
    isolated.start_runner()
    reader = _reader(gateway_b)
    try:
        task_id, execution_id = _run(gateway_a, site)
        events = reader.until(_finished(execution_id))
        # The run's own events may also be ingested by either replica, so the log lines
        # are compared as a set: changes are in commit order, not in the runner's order.
        logs = gateway_a.get(f"/api/executions/{execution_id}").json()["execution"]["logs"]
        ids = [e.id for e in events]
        assert ids == sorted(set(ids))
        mine = [e for e in events if e.data["executionId"] == execution_id]
        assert mine[0].kind == "queued"
        assert {e.kind for e in mine} == {"queued", "started", "log", "finished"}
        assert sorted(e.data["line"] for e in mine if e.kind == "log") == sorted(logs)
        assert all(e.data["taskId"] == task_id for e in mine)

        # Shutting down ends open streams at once instead of waiting out shutdown_timeout.
        started = time.monotonic()
        assert service_b.stop(timeout=15) == 0
        assert time.monotonic() - started < 5
        assert reader.ended.wait(5)
    finally:
        reader.close()


async def test_change_ids_are_handed_out_in_commit_order(
    api: httpx.Client, site: str, stack: tuple[Stack, httpx.Client]
) -> None:
    # Without this a reader could send id 11 while 10 is still uncommitted, and a client
    # resuming after 11 would never see 10.
    _, execution_id = _run(api, site)
    url = stack[0].env["DATABASE_URL"]

    async def write(conn: psycopg.AsyncConnection[Any], line: str) -> None:
        async with conn.transaction():
            await changes.record_change(conn, execution_id, "log", {"line": line})

    async with (
        await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as one,
        await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as two,
    ):
        async with one.transaction():
            await changes.record_change(one, execution_id, "log", {"line": "first"})
            second = asyncio.create_task(write(two, "second"))
            await asyncio.sleep(0.5)
            assert not second.done(), "a second writer must wait for the first commit"
        await asyncio.wait_for(second, 10)
        cur = await one.execute(
            "SELECT payload->>'line' AS line FROM execution_changes"
            " WHERE execution_id = %s AND payload->>'line' IN ('first', 'second') ORDER BY id",
            (execution_id,),
        )
        assert [row["line"] for row in await cur.fetchall()] == ["first", "second"]
