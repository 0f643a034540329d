"""Operability: metrics and probes of every service, drains that lose nothing, and a
supervised Chromium (replaced after a crash, recycled after its maximum contexts)."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from typing import Any

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from figranium_devstack.ports import free_port
from tests.integration.stack import Service, Stack, result_rows, wait_until

pytestmark = pytest.mark.stack  # every test here starts services of its own

RUN_ROUTE = "/api/tasks/{task_id}/api"


def quick_task(site: str, task_id: str = "quick") -> dict[str, Any]:
    return {
        "id": task_id,
        "name": task_id,
        "url": f"{site}/slow",
        "extractionScript": "return document.querySelector('#p').textContent",
    }


def waiting_task(site: str, seconds: float, task_id: str = "waiting") -> dict[str, Any]:
    return {**quick_task(site, task_id), "actions": [{"type": "wait", "value": seconds}]}


class Ops:
    """One service's ops port."""

    def __init__(self, port: int) -> None:
        self.base_url = f"http://127.0.0.1:{port}"

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.base_url + path, timeout=10)

    def status(self, path: str) -> int:
        return self.get(path).status_code

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        response = self.get("/metrics")
        assert response.status_code == 200
        return [
            (sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples whose labels include ``labels`` (0 when none)."""
        return sum(
            value
            for sample, found, value in self.samples()
            if sample == name and labels.items() <= found.items()
        )

    def names(self) -> set[str]:
        return {name for name, _, _ in self.samples()}


def start_gateway(stack: Stack, **env: str) -> tuple[Service, httpx.Client, Ops]:
    port = free_port()
    service, client = stack.start_gateway(GATEWAY_METRICS_PORT=str(port), **env)
    return service, client, Ops(port)


def start_runner(stack: Stack, **env: str) -> tuple[Service, Ops]:
    port = free_port()
    service = stack.start_runner(RUNNER_METRICS_PORT=str(port), **env)
    return service, Ops(port)


def queue(client: httpx.Client, task_id: str) -> str:
    response = client.post(f"/api/tasks/{task_id}/api", json={"async": True})
    assert response.status_code == 202, response.text
    return str(response.json()["executionId"])


def execution(client: httpx.Client, execution_id: str) -> dict[str, Any]:
    detail: dict[str, Any] = client.get(f"/api/executions/{execution_id}").json()["execution"]
    return detail


def finished(client: httpx.Client, execution_id: str) -> bool:
    return execution(client, execution_id)["phase"] == "finished"


def assert_finished_once(stack: Stack, client: httpx.Client, execution_id: str) -> dict[str, Any]:
    detail = execution(client, execution_id)
    assert detail["phase"] == "finished"
    assert detail["outcome"] == "success", detail
    assert result_rows(stack.env["DATABASE_URL"], execution_id) == 1
    return detail


def test_metrics_and_probes_follow_runs(isolated: Stack, site: str) -> None:
    gateway, client, gateway_ops = start_gateway(isolated)
    runner, runner_ops = start_runner(isolated)
    for ops in (gateway_ops, runner_ops):
        assert ops.status("/livez") == 200
        wait_until(lambda ops=ops: ops.status("/readyz") == 200, 20, "readiness")
    assert client.post("/api/tasks", json=quick_task(site)).status_code == 200

    before = gateway_ops.value("figranium_runs_finished_total", outcome="success")
    for _ in range(2):
        answer = client.post("/api/tasks/quick/api", json={})
        assert answer.status_code == 200, answer.text
        assert answer.json()["data"] == "slow page"

    # The ingester counts a result right after storing it, which may be just after the
    # synchronous caller was answered.
    wait_until(
        lambda: gateway_ops.value("figranium_runs_finished_total", outcome="success") == before + 2,
        10,
        "the gateway to count both results",
    )
    assert gateway_ops.value("figranium_runs_requested_total", source="api") == 2
    assert gateway_ops.value("figranium_run_duration_seconds_count") == 2
    assert (
        gateway_ops.value(
            "figranium_http_requests_total", method="POST", route=RUN_ROUTE, status="200"
        )
        == 2
    )
    assert (
        gateway_ops.value(
            "figranium_http_request_duration_seconds_count", method="POST", route=RUN_ROUTE
        )
        == 2
    )
    routes = {
        labels["route"]
        for name, labels, _ in gateway_ops.samples()
        if name == "figranium_http_requests_total"
    }
    assert not any("quick" in route for route in routes), routes  # templates, not paths
    client.get("/no/such/path")
    assert gateway_ops.value("figranium_http_requests_total", route="unmatched", status="404") >= 1
    assert "figranium_queue_pending" in gateway_ops.names()

    assert runner_ops.value("figranium_runner_runs_started_total") == 2
    assert runner_ops.value("figranium_runner_runs_finished_total", outcome="success") == 2
    assert runner_ops.value("figranium_runner_run_duration_seconds_count") == 2
    assert runner_ops.value("figranium_runner_slots", state="free") == 2
    assert runner_ops.value("figranium_runner_slots", state="busy") == 0
    assert {"figranium_browser_restarts_total"} <= runner_ops.names()

    assert runner.stop(signal.SIGTERM, timeout=30) == 0
    assert gateway.stop(signal.SIGTERM, timeout=30) == 0


def test_refused_browser_connections_are_logged_with_their_run_and_counted(
    isolated: Stack, site: str
) -> None:
    gateway, client, _ = start_gateway(isolated)
    runner, runner_ops = start_runner(isolated)
    # One fetch at a time, more of them than a run's log lists.
    probe = (
        "for (let i = 0; i < 25; i++) {"
        " await fetch('http://169.254.169.254/latest/meta-data/').catch(() => null); }"
        " return 'done'"
    )
    task = {
        **quick_task(site, "probe"),
        "actions": [{"type": "javascript", "value": probe}],
        "extractionScript": "return null",
    }
    assert client.post("/api/tasks", json=task).status_code == 200
    answer = client.post("/api/tasks/probe/api", json={})
    assert answer.status_code == 200, answer.text
    execution_id = answer.json()["executionId"]

    lines = [
        json.loads(text)
        for text in runner.log_text().splitlines()
        if "run.connection_blocked" in text
    ]
    assert len(lines) >= 25  # Chromium may try a request again
    assert runner_ops.value("figranium_runner_connections_blocked_total") == len(lines)
    assert {line["execution_id"] for line in lines} == {execution_id}
    assert {line["target"] for line in lines} == {"169.254.169.254:80"}
    assert "cloud metadata endpoint" in lines[0]["reason"]
    # The run's own log lists the first MAX_BLOCKED_LINES (20), then says there were more.
    blocked = [entry for entry in execution(client, execution_id)["logs"] if "[BLOCKED]" in entry]
    assert len(blocked) == 21, blocked
    assert all(
        entry.startswith("[BLOCKED] Connection to 169.254.169.254:80 refused: ")
        for entry in blocked[:20]
    )
    assert blocked[20].startswith("[BLOCKED] More connections were refused")
    assert runner.stop(signal.SIGTERM, timeout=30) == 0
    assert gateway.stop(signal.SIGTERM, timeout=30) == 0


def test_scheduler_serves_metrics_and_probes(isolated: Stack) -> None:
    port = free_port()
    scheduler = isolated.start("scheduler", SCHEDULER_METRICS_PORT=str(port))
    scheduler.wait_for_log("scheduler.ready", timeout=60)
    ops = Ops(port)
    assert ops.status("/livez") == 200
    wait_until(lambda: ops.status("/readyz") == 200, 20, "readiness")
    assert {"figranium_schedules_fired_total", "figranium_schedule_lateness_seconds_count"} <= (
        ops.names()
    )
    assert scheduler.stop(signal.SIGTERM, timeout=15) == 0


def test_sigterm_hands_running_runs_back_and_loses_none(isolated: Stack, site: str) -> None:
    # A long ack wait: only a nak can hand the runs back quickly enough for this test.
    isolated.env.update(RUN_ACK_WAIT_SECONDS="60", RUNNER_DRAIN_SECONDS="1")
    _, client, _ = start_gateway(isolated)
    first, first_ops = start_runner(isolated)
    wait_until(lambda: first_ops.status("/readyz") == 200, 20, "the runner to be ready")
    assert client.post("/api/tasks", json=waiting_task(site, 5)).status_code == 200
    executions = [queue(client, "waiting") for _ in range(3)]
    # Two slots: two run, the third waits in the queue.
    wait_until(
        lambda: sum(execution(client, e)["phase"] == "running" for e in executions) == 2,
        30,
        "two runs to start",
    )

    first.proc.send_signal(signal.SIGTERM)
    seen_not_ready = False
    while first.proc.poll() is None:
        try:
            if first_ops.status("/readyz") == 503:
                seen_not_ready = True
                break
        except httpx.TransportError:
            break
        time.sleep(0.05)
    assert seen_not_ready
    assert first.proc.wait(30) == 0
    assert first.log_text().count('"run.handed_back"') == 2

    start_runner(isolated)
    wait_until(lambda: all(finished(client, e) for e in executions), 60, "every run to finish")
    attempts = [assert_finished_once(isolated, client, e)["attempts"] for e in executions]
    # The two that were running were handed back and ran again. The queued one ran once,
    # unless a loaded machine let the draining runner receive it just before it stopped
    # pulling, in which case it was handed back unstarted.
    assert sorted(attempts)[1:] == [2, 2]
    assert all(count in (1, 2) for count in attempts)


def _chromium_processes(pid: int) -> list[psutil.Process]:
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            name = child.name().lower()
        except psutil.NoSuchProcess:
            continue
        if "chrom" in name or "headless_shell" in name:
            found.append(child)
    return found


def test_a_killed_chromium_is_replaced_and_its_run_redelivered(isolated: Stack, site: str) -> None:
    isolated.env.update(RUN_ACK_WAIT_SECONDS="60")
    _, client, _ = start_gateway(isolated)
    runner, runner_ops = start_runner(isolated)
    task = waiting_task(site, 0.5)
    task["actions"].append({"type": "wait", "value": 4})
    assert client.post("/api/tasks", json=task).status_code == 200
    assert client.post("/api/tasks", json=quick_task(site)).status_code == 200
    execution_id = queue(client, "waiting")

    def in_long_wait() -> bool:  # a wait's log line comes when it is over
        return any("Waiting: 500ms" in line for line in execution(client, execution_id)["logs"])

    wait_until(in_long_wait, 30, "the run to be in its long wait")

    chromium = _chromium_processes(runner.proc.pid)
    assert chromium, "no Chromium under the runner"
    for process in chromium:
        with contextlib.suppress(psutil.NoSuchProcess):  # gone with its parent already
            process.kill()

    wait_until(lambda: finished(client, execution_id), 60, "the run to finish")
    detail = assert_finished_once(isolated, client, execution_id)
    assert detail["attempts"] >= 2
    assert runner.proc.poll() is None
    assert runner_ops.value("figranium_browser_restarts_total", reason="crash") >= 1
    assert runner_ops.value("figranium_runner_runs_finished_total", outcome="handed_back") >= 1
    assert '"browser.crashed"' in runner.log_text()

    answer = client.post("/api/tasks/quick/api", json={})
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"] == "slow page"
    assert runner_ops.status("/readyz") == 200


def test_chromium_is_recycled_after_its_contexts(isolated: Stack, site: str) -> None:
    _, client, _ = start_gateway(isolated)
    runner, runner_ops = start_runner(isolated, RUNNER_BROWSER_MAX_CONTEXTS="2")
    assert client.post("/api/tasks", json=quick_task(site)).status_code == 200
    executions = [queue(client, "quick") for _ in range(5)]
    wait_until(lambda: all(finished(client, e) for e in executions), 60, "every run to finish")
    for execution_id in executions:
        assert_finished_once(isolated, client, execution_id)
    assert runner_ops.value("figranium_browser_restarts_total", reason="recycle") >= 2
    assert runner_ops.value("figranium_browser_restarts_total", reason="crash") == 0
    assert '"browser.recycled"' in runner.log_text()
    # The Chromiums it replaced are closed once their runs are done.
    wait_until(
        lambda: runner.log_text().count('"browser.retired_closed"') >= 2,
        20,
        "the replaced Chromiums to close",
    )
