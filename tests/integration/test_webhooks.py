"""Webhooks after runs: signed, durable, retried, visible on the execution."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from aiohttp import web
from psycopg.rows import dict_row

from tests.integration.stack import Stack, wait_until
from tests.integration.test_bad_input import assert_error
from tests.integration.test_first_start import read_secret_file
from tests.integration.threaded_app import ThreadedApp

PAYLOAD_FIELDS = {
    "executionId",
    "taskId",
    "status",
    "httpStatus",
    "outcome",
    "durationMs",
    "result",
}
FAST = {"WEBHOOK_BACKOFF_SECONDS": "0.3", "WEBHOOK_POLL_SECONDS": "0.2"}


class Receiver(ThreadedApp):
    """A local aiohttp server recording every POST; answers ``statuses`` in turn, then
    ``default`` (200). ``url`` is the address to send webhooks to."""

    name = "webhook-receiver"

    def __init__(self, statuses: list[int] | None = None) -> None:
        super().__init__()
        self.statuses = list(statuses or [])
        self.default = 200
        self._requests: list[tuple[dict[str, str], bytes, int]] = []
        self._lock = threading.Lock()

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        return app

    def start(self) -> None:
        super().start()
        self.url += "/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            status = self.statuses.pop(0) if self.statuses else self.default
            self._requests.append((dict(request.headers), body, status))
        return web.Response(status=status, text="ok" if status < 300 else "not now")

    @property
    def requests(self) -> list[tuple[dict[str, str], bytes, int]]:
        with self._lock:
            return list(self._requests)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as server:
        yield server


def verify_signature(secret: str, header: str, body: bytes, tolerance: float = 300) -> bool:
    """What a receiver does (as docs/webhooks.md shows): any ``v1=`` made with its secret."""
    pairs = [item.split("=", 1) for item in header.split(",")]
    (timestamp,) = [int(value) for name, value in pairs if name == "t"]
    if abs(time.time() - timestamp) > tolerance:
        return False
    signed = f"{timestamp}.".encode() + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, value) for name, value in pairs if name == "v1")


def _expected_header(header: str, body: bytes, *secrets: str) -> str:
    """The signature header made at the same second with ``secrets``, in that order."""
    timestamp = header.split(",", 1)[0].removeprefix("t=")
    signed = f"{timestamp}.".encode() + body
    macs = [hmac.new(s.encode(), signed, hashlib.sha256).hexdigest() for s in secrets]
    return f"t={timestamp}" + "".join(f",v1={mac}" for mac in macs)


def _execution(api: httpx.Client, execution_id: str) -> dict[str, Any]:
    answer = api.get(f"/api/executions/{execution_id}")
    assert answer.status_code == 200, answer.text
    execution: dict[str, Any] = answer.json()["execution"]
    return execution


def _webhook_settled(api: httpx.Client, execution_id: str, timeout: float = 60) -> dict[str, Any]:
    """The execution once its webhook is delivered or failed."""

    def settled() -> bool:
        hook = _execution(api, execution_id).get("webhook") or {}
        return hook.get("state") in ("delivered", "failed")

    wait_until(settled, timeout, f"the webhook of {execution_id} to settle")
    return _execution(api, execution_id)


def _query(database_url: str, query: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        return list(conn.execute(query.encode(), params).fetchall())


def _stopped_run(api: httpx.Client, task_id: str, webhook_url: str) -> str:
    """A run finished without any runner: queued, then stopped (outcome ``stopped``)."""
    api.post("/api/tasks", json={"id": task_id, "actions": [{"type": "wait", "value": 1}]})
    queued = api.post(f"/api/tasks/{task_id}/api", json={"async": True, "webhookUrl": webhook_url})
    assert queued.status_code == 202, queued.text
    execution_id: str = queued.json()["executionId"]
    stop = api.post("/api/executions/stop", json={"runId": execution_id})
    assert stop.json()["phase"] == "finished", stop.text
    return execution_id


def test_sync_run_posts_one_signed_result(
    api: httpx.Client, stack: tuple[Stack, httpx.Client], site: str, receiver: Receiver
) -> None:
    secret = api.post("/api/settings/webhook-secret").json()["secret"]
    assert secret.startswith("whsec_")
    status = api.get("/api/settings/webhook-secret").json()
    assert status["configured"] is True and isinstance(status["createdAt"], int)
    assert secret not in json.dumps(status)
    # Sealed at rest: the database alone does not give the secret away.
    (row,) = _query(
        stack[0].env["DATABASE_URL"], "SELECT value FROM settings WHERE key = 'webhook_secret'"
    )
    assert secret not in json.dumps(row["value"])
    assert secret[len("whsec_") :] not in json.dumps(row["value"])
    assert row["value"]["secret"].startswith("enc:v1:")

    api.post(
        "/api/tasks",
        json={"id": "hooked", "url": f"{site}/form", "extractionScript": "return document.title"},
    )
    answer = api.post("/api/tasks/hooked/api", json={"webhookUrl": receiver.url})
    assert answer.status_code == 200, answer.text
    run = answer.json()
    assert run["data"] == "Form" and run["outcome"] == "success"
    execution = _webhook_settled(api, run["executionId"])
    time.sleep(1)  # a few more polls: nothing else is sent
    (headers, body, _), *more = receiver.requests
    assert more == []

    payload = json.loads(body)
    assert set(payload) == PAYLOAD_FIELDS
    assert payload["executionId"] == run["executionId"] and payload["taskId"] == "hooked"
    # As the API reference shows: the run's outcome, and the HTTP-style code on its own.
    assert payload["status"] == payload["outcome"] == "success"
    assert payload["httpStatus"] == execution["status"] == 200
    assert payload["result"]["data"] == "Form"
    assert payload["durationMs"] == execution["durationMs"]
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "Figranium-Webhooks/1"
    assert headers["X-Figranium-Delivery"].startswith("whd_")
    assert verify_signature(secret, headers["X-Figranium-Signature"], body)
    assert not verify_signature(secret + "x", headers["X-Figranium-Signature"], body)

    hook = execution["webhook"]
    assert hook["state"] == "delivered" and hook["attempts"] == 1
    assert hook["lastStatus"] == 200 and hook["lastError"] is None
    assert hook["deliveredAt"] >= execution["finishedAt"] and hook["nextAttemptAt"] is None
    assert execution["result"]["data"] == "Form" and execution["outcome"] == "success"
    plain = api.post("/api/tasks/hooked/api", json={}).json()
    assert "webhook" not in _execution(api, plain["executionId"])


def test_async_run_posts_its_result(api: httpx.Client, site: str, receiver: Receiver) -> None:
    secret = api.post("/api/settings/webhook-secret").json()["secret"]
    api.post(
        "/api/tasks",
        json={"id": "hooked_async", "url": f"{site}/scripted", "extractionScript": "return 7"},
    )
    queued = api.post("/tasks/hooked_async/api", json={"async": True, "webhookUrl": receiver.url})
    assert queued.status_code == 202, queued.text
    execution_id = queued.json()["executionId"]
    assert _execution(api, execution_id)["webhook"]["state"] == "pending"
    execution = _webhook_settled(api, execution_id)
    assert execution["webhook"]["state"] == "delivered"
    (headers, body, _), *more = receiver.requests
    assert more == []
    payload = json.loads(body)
    assert payload["executionId"] == execution_id and payload["result"]["data"] == 7
    assert verify_signature(secret, headers["X-Figranium-Signature"], body)


def test_invalid_webhook_urls_are_refused(api: httpx.Client) -> None:
    api.post("/api/tasks", json={"id": "badhook", "actions": [{"type": "noop"}]})
    before = len(api.get("/api/executions", params={"limit": 1000}).json()["executions"])
    for bad in ("ftp://x", "http://169.254.169.254/", 123, ["http://a"]):
        for path in ("/api/tasks/badhook/api", "/tasks/badhook/api"):
            assert_error(
                api.post(path, json={"async": True, "webhookUrl": bad}),
                400,
                "INVALID_WEBHOOK_URL",
            )
        assert_error(
            api.post("/api/schedules/badhook", json={"cron": "0 0 1 1 *", "webhookUrl": bad}),
            400,
            "INVALID_WEBHOOK_URL",
        )
    after = len(api.get("/api/executions", params={"limit": 1000}).json()["executions"])
    assert after == before
    assert api.get("/api/schedules/badhook/status").json()["schedule"] is None


@pytest.mark.stack
def test_retries_until_delivered_and_client_errors_fail_at_once(isolated: Stack) -> None:
    _, api = isolated.start_gateway(**FAST)
    with Receiver([500, 500]) as flaky, Receiver([400]) as refusing:
        retried = _stopped_run(api, "retried", flaky.url)
        refused = _stopped_run(api, "refused", refusing.url)

        execution = _webhook_settled(api, retried)
        hook = execution["webhook"]
        assert hook["state"] == "delivered" and hook["attempts"] == 3
        assert hook["lastStatus"] == 200 and hook["deliveredAt"] is not None
        requests = flaky.requests
        assert [status for _, _, status in requests] == [500, 500, 200]
        assert len({headers["X-Figranium-Delivery"] for headers, _, _ in requests}) == 1
        assert json.loads(requests[0][1]) == json.loads(requests[2][1])
        # The run is what it was: webhooks never change a result.
        assert execution["outcome"] == "stopped" and execution["status"] == 200

        failed = _webhook_settled(api, refused)
        assert failed["webhook"]["state"] == "failed" and failed["webhook"]["attempts"] == 1
        assert failed["webhook"]["lastStatus"] == 400
        assert failed["webhook"]["lastError"].startswith("HTTP 400")
        assert failed["webhook"]["nextAttemptAt"] is None
        assert failed["outcome"] == "stopped"
        time.sleep(1)
        assert len(refusing.requests) == 1

    attempts = _query(
        isolated.env["DATABASE_URL"],
        "SELECT a.attempt, a.status FROM webhook_attempts a"
        " JOIN webhook_deliveries d ON d.id = a.delivery_id"
        " WHERE d.execution_id = %s ORDER BY a.attempt",
        retried,
    )
    assert [(a["attempt"], a["status"]) for a in attempts] == [(1, 500), (2, 500), (3, 200)]


@pytest.mark.stack
def test_pending_delivery_survives_a_gateway_restart(isolated: Stack) -> None:
    first, api = isolated.start_gateway(**FAST)
    first.wait_for_log("webhooks.secret_generated")
    with Receiver() as down:
        down.default = 503
        execution_id = _stopped_run(api, "durable", down.url)
        wait_until(
            lambda: _execution(api, execution_id)["webhook"]["attempts"] >= 1,
            30,
            "a first failed attempt",
        )
        assert first.stop() == 0
        assert _execution_row(isolated, execution_id)["state"] == "pending"

        down.default = 200
        second, api = isolated.start_gateway(**FAST)
        execution = _webhook_settled(api, execution_id)
        assert execution["webhook"]["state"] == "delivered"
        requests = down.requests
        assert requests[-1][2] == 200
        assert len({headers["X-Figranium-Delivery"] for headers, _, _ in requests}) == 1
        assert execution["webhook"]["attempts"] >= 2
    # The secret is made once per installation, not once per start.
    assert "webhooks.secret_generated" not in second.log_text()


@pytest.mark.stack
def test_rotated_secret_keeps_signing_for_the_overlap(isolated: Stack) -> None:
    first, api = isolated.start_gateway(**FAST)
    first.wait_for_log("webhooks.secret_generated")
    original = read_secret_file(Path(isolated.env["FIGRANIUM_DATA_DIR"]) / "webhook-secret")
    rotated = api.post("/api/settings/webhook-secret")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    status = api.get("/api/settings/webhook-secret").json()
    # The default overlap: 24 hours.
    assert status["previousValidUntil"] - status["createdAt"] == 86_400_000
    with Receiver() as receiver:
        _webhook_settled(api, _stopped_run(api, "overlap", receiver.url))
        ((headers, body, _),) = receiver.requests
    header = headers["X-Figranium-Signature"]
    # Both secrets sign, the new one first: receivers on either secret accept it.
    assert header == _expected_header(header, body, new, original)
    assert verify_signature(new, header, body) and verify_signature(original, header, body)
    assert first.stop() == 0

    # With no overlap the secret it replaces stops signing at once.
    _, api = isolated.start_gateway(WEBHOOK_SECRET_OVERLAP_SECONDS="0", **FAST)
    newest = api.post("/api/settings/webhook-secret").json()["secret"]
    assert api.get("/api/settings/webhook-secret").json()["previousValidUntil"] is None
    with Receiver() as receiver:
        _webhook_settled(api, _stopped_run(api, "no_overlap", receiver.url))
        ((headers, body, _),) = receiver.requests
    header = headers["X-Figranium-Signature"]
    assert header == _expected_header(header, body, newest)
    assert not verify_signature(new, header, body)


def _execution_row(stack: Stack, execution_id: str) -> dict[str, Any]:
    (row,) = _query(
        stack.env["DATABASE_URL"],
        "SELECT * FROM webhook_deliveries WHERE execution_id = %s",
        execution_id,
    )
    return row


@pytest.mark.stack
def test_scheduled_run_posts_to_the_schedule_webhook(isolated: Stack, site: str) -> None:
    _, api = isolated.start_gateway(**FAST)
    isolated.start_runner()
    secret = api.post("/api/settings/webhook-secret").json()["secret"]
    with Receiver() as hook:
        api.post(
            "/api/tasks",
            json={"id": "nightly", "url": f"{site}/form", "extractionScript": "return 'night'"},
        )
        saved = api.post(
            "/api/schedules/nightly", json={"cron": "0 0 1 1 *", "webhookUrl": hook.url}
        )
        assert saved.status_code == 200, saved.text
        assert saved.json()["schedule"]["webhookUrl"] == hook.url
        assert api.get("/api/tasks/nightly").json()["schedule"]["webhookUrl"] == hook.url
        # Due now: the scheduler claims it as soon as it starts.
        with psycopg.connect(isolated.env["DATABASE_URL"]) as conn:
            conn.execute("UPDATE schedules SET next_run = now() WHERE task_id = 'nightly'")
        isolated.start("scheduler").wait_for_log("schedule.fired", timeout=60)

        wait_until(lambda: len(hook.requests) >= 1, 90, "the scheduled run's webhook")
        (headers, body, _), *more = hook.requests
        payload = json.loads(body)
        assert payload["taskId"] == "nightly" and payload["outcome"] == "success"
        assert payload["result"]["data"] == "night"
        assert verify_signature(secret, headers["X-Figranium-Signature"], body)
        execution = _webhook_settled(api, payload["executionId"])
        assert execution["source"] == "scheduler" and execution["webhook"]["state"] == "delivered"
        assert more == []
