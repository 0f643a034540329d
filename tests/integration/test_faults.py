"""Fault injection: runners, NATS, PostgreSQL and the gateway fail while runs are in
flight, and no accepted run is lost or finished twice.

Every scenario ends with the same invariant (:func:`assert_nothing_lost`): each accepted
run request has exactly one execution, finished, with exactly one result event stored,
and no execution is left unfinished.

Two module-scoped stacks keep the file within its time budget (starting a gateway and a
runner costs 10-20 s on two busy cores): ``steady`` (its own NATS and database) for the
runner kills, the poison messages, the flood and the queue limit, which leave NATS,
PostgreSQL and the gateway alone; ``fragile`` (its own NATS *and* its own PostgreSQL
server) for the restarts of NATS, PostgreSQL and the gateway, each of which leaves the
stack whole again and proves it through the invariant before the next one starts.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import nats
import psycopg
import pytest

from figranium_common.nats import RUNNERS_CONSUMER, RUNS_DEFAULT_SUBJECT, RUNS_STREAM
from figranium_devstack.natsserver import LocalNats
from figranium_devstack.ports import free_port
from figranium_devstack.postgres import LocalPostgres
from tests.integration.stack import API_KEY, Service, Stack, fresh_database
from tests.integration.test_resilience import wait_until

# The issue asks for 30 runs in flight per scenario; they fit the budget (a run of a
# short wait on a local page costs a runner about half a second of CPU).
IN_FLIGHT = 30
# The issue asks for a flood of 1,000. Submitting 1,000 takes seconds, but every run
# opens a browser context, screenshots and uploads, so one runner on two shared cores
# finishes 2-4 runs a second: draining 1,000 would take 4-8 minutes on its own, over the
# whole file's budget. The flood is 80 runs submitted at once (about 40 s of draining
# with a benchmark on the same cores); the drain, the absence of drops and the health
# latency are measured the same way.
FLOOD = 80
QUEUE_LIMIT = 20
# Generous: a benchmark may share the two cores; these bound hangs, they time nothing.
DRAIN_TIMEOUT = 150.0


@dataclass
class Faulty:
    """A stack whose pieces the tests break, with the handles to break them."""

    stack: Stack
    nats: LocalNats
    gateway: Service
    client: httpx.Client
    runners: list[Service] = field(default_factory=list)
    # A second gateway on the same stack with RUN_QUEUE_LIMIT set, started with the rest.
    limited: httpx.Client | None = None

    @property
    def database_url(self) -> str:
        return self.stack.env["DATABASE_URL"]

    def start_runner(self, **env: str) -> Service:
        runner = self.stack.start_runner(**env)
        self.runners.append(runner)
        return runner

    def live_runners(self) -> list[Service]:
        return [r for r in self.runners if r.proc.poll() is None]

    def start_gateway(self, **env: str) -> tuple[Service, httpx.Client]:
        return self.stack.start_gateway(**env)

    def execution_ids(self) -> set[str]:
        with psycopg.connect(self.database_url) as conn:
            return {str(row[0]) for row in conn.execute("SELECT id FROM executions")}

    def unfinished(self, ids: list[str] | None = None) -> int:
        query = "SELECT count(*) FROM executions WHERE phase <> 'finished'"
        with psycopg.connect(self.database_url) as conn:
            if ids is None:
                row = conn.execute(query).fetchone()
            else:
                row = conn.execute(query + " AND id = ANY(%s)", (ids,)).fetchone()
        assert row is not None
        return int(row[0])

    def finished_count(self, ids: list[str]) -> int:
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM executions WHERE phase = 'finished' AND id = ANY(%s)",
                (ids,),
            ).fetchone()
        assert row is not None
        return int(row[0])

    def running_on(self, runner: Service) -> int:
        """Executions running now whose current attempt ``runner`` started."""
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM executions e JOIN execution_events s"
                " ON s.execution_id = e.id AND s.type = 'started' AND s.attempt = e.attempts"
                " WHERE e.phase = 'running' AND s.payload->>'runner_id' LIKE %s",
                (f"%-{runner.proc.pid}",),
            ).fetchone()
        assert row is not None
        return int(row[0])

    def wait_drained(self, ids: list[str], timeout: float = DRAIN_TIMEOUT) -> None:
        wait_until(lambda: self.unfinished(ids) == 0, timeout, f"{len(ids)} runs to finish")

    def assert_nothing_lost(
        self,
        accepted: list[str],
        before: set[str],
        outcomes: frozenset[str] = frozenset({"success"}),
    ) -> None:
        """One finished execution per accepted request, one result event each, none left over."""
        assert len(set(accepted)) == len(accepted)
        assert self.execution_ids() - before == set(accepted)
        with psycopg.connect(self.database_url) as conn:
            unfinished = conn.execute(
                "SELECT id, phase FROM executions WHERE phase <> 'finished'"
            ).fetchall()
            results = dict(
                conn.execute(
                    "SELECT execution_id, count(*) FROM execution_events"
                    " WHERE type = 'result' GROUP BY 1"
                ).fetchall()
            )
            found = dict(
                conn.execute(
                    "SELECT id, outcome FROM executions WHERE id = ANY(%s)", (accepted,)
                ).fetchall()
            )
        assert unfinished == []
        assert all(count == 1 for count in results.values()), results
        assert {i: results.get(i, 0) for i in accepted} == dict.fromkeys(accepted, 1)
        assert set(found.values()) <= outcomes, found


def _runs_task(site: str, task_id: str, wait: float) -> dict[str, Any]:
    return {
        "id": task_id,
        "name": task_id,
        "url": f"{site}/slow",
        "actions": [{"type": "wait", "value": wait}],
        "extractionScript": "return document.querySelector('#p').textContent",
        "disableRecording": True,
    }


def _save(client: httpx.Client, task: dict[str, Any]) -> None:
    response = client.post("/api/tasks", json=task)
    assert response.status_code == 200, response.text


def _queue(client: httpx.Client, task_id: str, count: int, workers: int = 8) -> list[str]:
    def one(_: int) -> str:
        response = client.post(f"/api/tasks/{task_id}/api", json={"async": True})
        assert response.status_code == 202, response.text
        return str(response.json()["executionId"])

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(count)))


def _healthy(client: httpx.Client) -> bool:
    try:
        return client.get("/api/health").status_code == 200
    except httpx.TransportError:
        return False


def _log_events(service: Service, event: str) -> list[dict[str, Any]]:
    found = []
    for line in service.log_text().splitlines():
        if f'"{event}"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == event:
            found.append(entry)
    return found


@pytest.fixture(scope="module")
def steady(tmp_path_factory: pytest.TempPathFactory, postgres: LocalPostgres) -> Iterator[Faulty]:
    """NATS and a database of its own, a gateway and two runners."""
    workdir = tmp_path_factory.mktemp("faults-steady")
    database_url = fresh_database(postgres, f"faults_{uuid.uuid4().hex[:12]}")
    with LocalNats(workdir / "nats", free_port()) as nats_server:
        # Two kills cost a run at most two deliveries; the extra ones and the longer ack
        # wait keep a heartbeat delayed by a loaded machine from making a run `crashed`.
        stack = Stack(
            workdir,
            nats_server.url,
            database_url,
            RUNNER_CONCURRENCY="4",
            RUN_ACK_WAIT_SECONDS="6",
            RUN_MAX_DELIVER="5",
        )
        try:
            gateway, client = stack.start_gateway()
            # The rest side by side (each takes seconds of CPU to come up); the limited
            # gateway is only waited for by the test that uses it.
            limited_port = free_port()
            runners = [stack.start("runner"), stack.start("runner")]
            stack.start("gateway", PORT=str(limited_port), RUN_QUEUE_LIMIT=str(QUEUE_LIMIT))
            for runner in runners:
                runner.wait_for_log("runner.ready", timeout=120)
            limited = httpx.Client(
                base_url=f"http://127.0.0.1:{limited_port}",
                headers={"x-api-key": API_KEY},
                timeout=120,
            )
            stack.clients.append(limited)
            yield Faulty(stack, nats_server, gateway, client, runners, limited)
        finally:
            stack.close()


@pytest.fixture(scope="module")
def fragile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Faulty, LocalPostgres]]:
    """NATS and a PostgreSQL server of its own (both get restarted), a gateway, a runner."""
    workdir = tmp_path_factory.mktemp("faults-fragile")
    with (
        LocalPostgres(workdir / "pg", free_port(), fast=True) as database,
        LocalNats(workdir / "nats", free_port()) as nats_server,
    ):
        stack = Stack(workdir, nats_server.url, database.url, RUNNER_CONCURRENCY="4")
        try:
            gateway, client = stack.start_gateway()
            faulty = Faulty(stack, nats_server, gateway, client)
            faulty.start_runner()
            yield faulty, database
        finally:
            stack.close()


# --- 1. runners killed --------------------------------------------------------------


def test_runners_killed_twice_lose_and_repeat_nothing(steady: Faulty, site: str) -> None:
    _save(steady.client, _runs_task(site, "kills", 0.5))
    before = steady.execution_ids()
    accepted = _queue(steady.client, "kills", IN_FLIGHT)

    # First kill early, while the first runs are under way; the second once about a third
    # of the runs are done, on a runner that took over after the first kill.
    first = steady.live_runners()[0]
    wait_until(lambda: steady.running_on(first) > 0, 60, "a run on the first runner")
    first.kill()
    second = steady.start_runner()
    wait_until(
        lambda: steady.finished_count(accepted) >= IN_FLIGHT // 3 and steady.running_on(second) > 0,
        DRAIN_TIMEOUT,
        "a third of the runs done and one running on the replacement",
    )
    second.kill()
    steady.start_runner()

    steady.wait_drained(accepted)
    steady.assert_nothing_lost(accepted, before)
    with psycopg.connect(steady.database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM executions WHERE attempts >= 2 AND id = ANY(%s)", (accepted,)
        ).fetchone()
    assert row is not None and row[0] >= 2, "the kills interrupted no run"


# --- 5. poison messages -------------------------------------------------------------


async def _publish_poison(url: str) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.publish(RUNS_DEFAULT_SUBJECT, b"{not json")
        # Valid JSON, but not a RunRequest: no execution id, a task that is not an object.
        await js.publish(RUNS_DEFAULT_SUBJECT, json.dumps({"task": 42}).encode())
    finally:
        await nc.close()


async def _runs_consumer(url: str) -> tuple[int, int]:
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().consumer_info(RUNS_STREAM, RUNNERS_CONSUMER)
        return info.num_pending or 0, info.num_ack_pending or 0
    finally:
        await nc.close()


def test_poison_messages_are_terminated_and_block_nothing(steady: Faulty, site: str) -> None:
    _save(steady.client, _runs_task(site, "after-poison", 0.5))
    runners = steady.live_runners()
    assert runners
    logged_before = sum(len(_log_events(r, "run.bad_request")) for r in steady.runners)
    asyncio.run(_publish_poison(steady.nats.url))
    before = steady.execution_ids()
    accepted = _queue(steady.client, "after-poison", 10)

    steady.wait_drained(accepted)
    steady.assert_nothing_lost(accepted, before)
    # Terminated, not left for redelivery: nothing pending or unacknowledged in the queue,
    # and each poison message logged as an error once.
    wait_until(lambda: asyncio.run(_runs_consumer(steady.nats.url)) == (0, 0), 30, "an empty queue")
    logged = [e for r in steady.runners for e in _log_events(r, "run.bad_request")]
    assert len(logged) - logged_before == 2, logged
    assert {e["level"] for e in logged} == {"error"}


# --- 6. flood and queue limit ---------------------------------------------------------


class HealthProbe:
    """Asks /api/health in a loop on its own connection and keeps the latencies."""

    def __init__(self, base_url: str) -> None:
        self._client = httpx.Client(base_url=base_url, timeout=30)
        self._stop = threading.Event()
        self.latencies: list[float] = []
        self.statuses: list[int] = []
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                status = self._client.get("/api/health").status_code
            except httpx.TransportError:
                status = 0
            self.latencies.append(time.perf_counter() - started)
            self.statuses.append(status)
            self._stop.wait(0.05)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(40)
        self._client.close()

    def report(self) -> str:
        ordered = sorted(self.latencies)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return (
            f"health during the flood: {len(ordered)} probes,"
            f" p50 {statistics.median(ordered) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms,"
            f" max {ordered[-1] * 1000:.0f} ms, non-200 {sum(s != 200 for s in self.statuses)}"
        )


def _one_runner(faulty: Faulty) -> None:
    live = faulty.live_runners()
    for extra in live[1:]:
        extra.stop()
    if not live:
        faulty.start_runner()


def test_flood_drains_with_nothing_dropped(
    steady: Faulty, site: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _one_runner(steady)
    # The cheapest run there is: no page to load, no action.
    _save(steady.client, {"id": "tiny", "name": "tiny", "disableRecording": True})
    before = steady.execution_ids()
    started = time.monotonic()
    with HealthProbe(str(steady.client.base_url)) as probe:
        accepted = _queue(steady.client, "tiny", FLOOD, workers=32)
        submitted = time.monotonic() - started
        steady.wait_drained(accepted)
    drained = time.monotonic() - started
    with capsys.disabled():
        print(
            f"\n[faults] flood of {FLOOD}: submitted in {submitted:.1f} s,"
            f" drained in {drained:.1f} s; {probe.report()}"
        )
    steady.assert_nothing_lost(accepted, before)


def test_queue_limit_answers_429_and_keeps_what_it_accepted(steady: Faulty, site: str) -> None:
    _save(steady.client, _runs_task(site, "limited", 0.5))
    for runner in steady.live_runners():
        runner.stop()  # nothing drains: the queue only fills
    client = steady.limited
    assert client is not None
    wait_until(lambda: _healthy(client), 120, "the limited gateway to answer")
    before = steady.execution_ids()
    assert steady.unfinished() == 0

    calls: list[tuple[str, dict[str, Any]]] = [
        ("/api/tasks/limited/api", {"async": True}),
        ("/tasks/limited/api", {"async": True}),
        ("/agent", {"url": f"{site}/slow", "disableRecording": True, "async": True}),
        ("/scrape", {"url": f"{site}/slow", "disableRecording": True, "async": True}),
    ]
    workers = 4

    def call(index: int) -> httpx.Response:
        path, body = calls[index % len(calls)]
        return client.post(path, json=body)

    with ThreadPoolExecutor(workers) as pool:
        answers = list(pool.map(call, range(3 * QUEUE_LIMIT)))
    accepted = [str(a.json()["executionId"]) for a in answers if a.status_code == 202]
    refused = [a for a in answers if a.status_code != 202]
    # Calls that count at the same moment may all see room: at most workers - 1 over.
    assert QUEUE_LIMIT <= len(accepted) <= QUEUE_LIMIT + workers - 1
    assert {a.status_code for a in refused} == {429}
    for answer in refused:
        assert answer.json()["error"] == "QUEUE_FULL"
        assert int(answer.headers["Retry-After"]) > 0
    # A refused call saves nothing; every path refuses, the synchronous one at once too.
    assert steady.execution_ids() - before == set(accepted)
    for path, body in calls:
        answer = client.post(path, json={**body, "async": False})
        assert answer.status_code == 429, (path, answer.text)
    assert steady.execution_ids() - before == set(accepted)

    steady.start_runner()
    steady.wait_drained(accepted)
    steady.assert_nothing_lost(accepted, before)
    # Room again once they are done.
    again = client.post("/api/tasks/limited/api", json={})
    assert again.status_code == 200, again.text
    assert again.json()["data"] == "slow page"


# --- 2. NATS restarted ----------------------------------------------------------------


def test_nats_restart_keeps_queued_runs_and_connections(
    fragile: tuple[Faulty, LocalPostgres], site: str
) -> None:
    faulty, _ = fragile
    _save(faulty.client, _runs_task(site, "through-nats", 0.5))
    (runner,) = faulty.live_runners()
    pids = (faulty.gateway.proc.pid, runner.proc.pid)
    before = faulty.execution_ids()
    accepted = _queue(faulty.client, "through-nats", IN_FLIGHT)
    wait_until(lambda: faulty.finished_count(accepted) >= 2, 60, "the first runs to finish")
    assert faulty.unfinished(accepted) > IN_FLIGHT // 2  # most still queued or running

    faulty.nats.stop()  # the JetStream store stays in its directory
    wait_until(lambda: _log_events(runner, "nats.disconnected") != [], 20, "the runner to notice")
    faulty.nats.start()
    faulty.nats.wait_ready()

    faulty.wait_drained(accepted)
    # And new work goes through the same, reconnected processes.
    later = _queue(faulty.client, "through-nats", 3)
    faulty.wait_drained(later)
    faulty.assert_nothing_lost(accepted + later, before)
    assert (faulty.gateway.proc.pid, runner.proc.pid) == pids
    assert faulty.gateway.proc.poll() is None and runner.proc.poll() is None
    assert _log_events(faulty.gateway, "nats.reconnected")
    assert _log_events(runner, "nats.reconnected")


# --- 3. PostgreSQL restarted ----------------------------------------------------------


def test_postgres_restart_loses_and_repeats_no_result(
    fragile: tuple[Faulty, LocalPostgres], site: str
) -> None:
    faulty, database = fragile
    kept = {**_runs_task(site, "through-postgres", 0.5), "description": "saved before"}
    _save(faulty.client, kept)
    before = faulty.execution_ids()
    accepted = _queue(faulty.client, "through-postgres", IN_FLIGHT)
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
    _save(faulty.client, _runs_task(site, "through-gateway", 0.5))
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
