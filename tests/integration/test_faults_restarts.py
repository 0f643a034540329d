"""Fault injection by restarts: NATS, PostgreSQL and the gateway go away while runs are in
flight, and no accepted run is lost or finished twice (:mod:`tests.integration.faults`).

One module-scoped stack with its own NATS *and* its own PostgreSQL server (both get
restarted); each scenario leaves the stack whole again and proves it through the
invariant before the next one starts.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from figranium_devstack.natsserver import LocalNats
from figranium_devstack.ports import free_port
from figranium_devstack.postgres import LocalPostgres
from tests.integration.faults import (
    IN_FLIGHT,
    Faulty,
    log_events,
    queue_runs,
    runs_task,
    save_task,
)
from tests.integration.stack import Stack, wait_until

pytestmark = pytest.mark.stack  # every test here starts services of its own


@pytest.fixture(scope="module")
def fragile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Faulty, LocalPostgres]]:
    """NATS and a PostgreSQL server of its own (both get restarted), a gateway, a runner."""
    workdir = tmp_path_factory.mktemp("faults-fragile")
    with (
        LocalPostgres(workdir / "pg", free_port(), fast=True) as database,
        LocalNats(workdir / "nats", free_port()) as nats_server,
    ):
        stack = Stack(workdir, nats_server, database.url, RUNNER_CONCURRENCY="4")
        try:
            gateway, client = stack.start_gateway()
            faulty = Faulty(stack, nats_server, gateway, client)
            faulty.start_runner()
            yield faulty, database
        finally:
            stack.close()


# --- 2. NATS restarted ----------------------------------------------------------------


def test_nats_restart_keeps_queued_runs_and_connections(
    fragile: tuple[Faulty, LocalPostgres], site: str
) -> None:
    faulty, _ = fragile
    save_task(faulty.client, runs_task(site, "through-nats", 0.5))
    (runner,) = faulty.live_runners()
    pids = (faulty.gateway.proc.pid, runner.proc.pid)
    before = faulty.execution_ids()
    accepted = queue_runs(faulty.client, "through-nats", IN_FLIGHT)
    wait_until(lambda: faulty.finished_count(accepted) >= 2, 60, "the first runs to finish")
    assert faulty.unfinished(accepted) > IN_FLIGHT // 2  # most still queued or running

    faulty.nats.stop()  # the JetStream store stays in its directory
    wait_until(lambda: log_events(runner, "nats.disconnected") != [], 20, "the runner to notice")
    faulty.nats.start()
    faulty.nats.wait_ready()

    faulty.wait_drained(accepted)
    # And new work goes through the same, reconnected processes.
    later = queue_runs(faulty.client, "through-nats", 3)
    faulty.wait_drained(later)
    faulty.assert_nothing_lost(accepted + later, before)
    assert (faulty.gateway.proc.pid, runner.proc.pid) == pids
    assert faulty.gateway.proc.poll() is None and runner.proc.poll() is None
    assert log_events(faulty.gateway, "nats.reconnected")
    assert log_events(runner, "nats.reconnected")


# --- 3. PostgreSQL restarted ----------------------------------------------------------


def test_postgres_restart_loses_and_repeats_no_result(
    fragile: tuple[Faulty, LocalPostgres], site: str
) -> None:
    faulty, database = fragile
    kept = {**runs_task(site, "through-postgres", 0.5), "description": "saved before"}
    save_task(faulty.client, kept)
    before = faulty.execution_ids()
    accepted = queue_runs(faulty.client, "through-postgres", IN_FLIGHT)
    wait_until(lambda: faulty.finished_count(accepted) >= 2, 60, "the first runs to finish")

    database.stop()
    try:
        wait_until(
            lambda: faulty.client.get("/api/health").status_code == 503, 20, "health to fail"
        )
        # Runs go on meanwhile; their results wait in NATS for the ingester.
        time.sleep(3)
        assert faulty.client.get("/api/health").status_code == 503
    finally:
        database.start()
        database.wait_ready()
    wait_until(lambda: faulty.client.get("/api/health").status_code == 200, 30, "health back")

    faulty.wait_drained(accepted)
    faulty.assert_nothing_lost(accepted, before)
    assert faulty.gateway.proc.poll() is None
    stored = faulty.client.get("/api/tasks/through-postgres")
    assert stored.status_code == 200
    assert stored.json()["description"] == "saved before"


# --- 4. gateway restarted -------------------------------------------------------------


def test_gateway_restart_drops_waiting_calls_but_no_run(
    fragile: tuple[Faulty, LocalPostgres], site: str
) -> None:
    faulty, _ = fragile
    save_task(faulty.client, runs_task(site, "through-gateway", 0.5))
    before = faulty.execution_ids()
    run_ids = [f"gw-{i}-{uuid.uuid4().hex[:8]}" for i in range(IN_FLIGHT)]
    answers: dict[str, int | str] = {}

    def call(run_id: str) -> None:
        try:
            response = faulty.client.post("/api/tasks/through-gateway/api", json={"runId": run_id})
            answers[run_id] = response.status_code
        except httpx.TransportError as exc:
            answers[run_id] = type(exc).__name__

    threads = [threading.Thread(target=call, args=(r,), daemon=True) for r in run_ids]
    for thread in threads:
        thread.start()
    wait_until(
        lambda: len(faulty.execution_ids() - before) == IN_FLIGHT,
        60,
        "every call to have saved its run",
    )
    wait_until(lambda: faulty.finished_count(run_ids) >= 1, 60, "a first run to finish")
    faulty.gateway.kill()
    for thread in threads:
        thread.join(30)

    dropped = [r for r, answer in answers.items() if not isinstance(answer, int)]
    assert len(answers) == IN_FLIGHT
    assert dropped, answers  # the calls still waiting lost their connection
    assert all(answer == 200 for answer in answers.values() if isinstance(answer, int)), answers

    faulty.gateway, faulty.client = faulty.start_gateway()
    faulty.wait_drained(run_ids)
    faulty.assert_nothing_lost(run_ids, before)
    for run_id in dropped:
        detail = faulty.client.get(f"/api/executions/{run_id}")
        assert detail.status_code == 200
        assert detail.json()["execution"]["outcome"] == "success"
