"""Fault injection on a steady stack: runners killed, poison messages, a flood, the queue
limit. No accepted run is lost or finished twice (:mod:`tests.integration.faults`).

One module-scoped stack (its own NATS and database, a gateway, two runners and a gateway
with a queue limit) keeps the file within its time budget: these scenarios leave NATS,
PostgreSQL and the gateway alone. The restarts are in ``test_faults_restarts.py``.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import nats
import psycopg
import pytest

from figranium_common.nats import RUNNERS_CONSUMER, RUNS_DEFAULT_SUBJECT, RUNS_STREAM
from figranium_devstack.ports import free_port
from figranium_devstack.postgres import LocalPostgres
from tests.integration.faults import (
    DRAIN_TIMEOUT,
    IN_FLIGHT,
    Faulty,
    healthy,
    log_events,
    queue_runs,
    runs_task,
    save_task,
)
from tests.integration.stack import API_KEY, own_stack, wait_until

pytestmark = pytest.mark.stack  # every test here starts services of its own

# The flood: 1,000 run requests at once at a gateway whose queue holds FLOOD_LIMIT
# unfinished runs, with one runner draining it. What fits is accepted and runs exactly
# once; the rest is refused with 429 and Retry-After and leaves nothing behind. (Accepting
# all 1,000 would only measure how fast one runner on two shared cores empties a queue,
# 2-4 runs a second: minutes, not a property of the gateway.)
FLOOD = 1000
FLOOD_LIMIT = 100
QUEUE_LIMIT = 20
# How long the runners here wait before they announce a start (RUN_LOG_LINGER_SECONDS).
LINGER_SECONDS = 1.0


@pytest.fixture(scope="module")
def steady(tmp_path_factory: pytest.TempPathFactory, postgres: LocalPostgres) -> Iterator[Faulty]:
    """NATS and a database of its own, a gateway and two runners."""
    # Two kills cost a run at most two deliveries; the extra ones and the longer ack
    # wait keep a heartbeat delayed by a loaded machine from making a run `crashed`.
    with own_stack(
        tmp_path_factory.mktemp("faults-steady"),
        postgres,
        RUNNER_CONCURRENCY="4",
        RUN_ACK_WAIT_SECONDS="6",
        RUN_MAX_DELIVER="5",
        RUN_LOG_LINGER_SECONDS=str(LINGER_SECONDS),
    ) as stack:
        assert stack.nats is not None
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
        yield Faulty(stack, stack.nats, gateway, client, runners, limited)


# --- 1. runners killed --------------------------------------------------------------


def test_runners_killed_twice_lose_and_repeat_nothing(steady: Faulty, site: str) -> None:
    # Longer than a runner waits before it announces a start: a shorter run shows as
    # running only in its result, and there would be no run "under way" to wait for.
    save_task(steady.client, runs_task(site, "kills", LINGER_SECONDS + 0.5))
    before = steady.execution_ids()
    accepted = queue_runs(steady.client, "kills", IN_FLIGHT)

    # First kill early, while the first runs are under way; the second once about a third
    # of the runs are done, on a runner with runs under way then if one has any (on a
    # loaded machine the replacement may still be starting, or between runs), else on
    # the newest runner.
    first = steady.live_runners()[0]
    wait_until(lambda: steady.running_on(first) > 0, 60, "a run on the first runner")
    first.kill()
    steady.start_runner()
    wait_until(
        lambda: steady.finished_count(accepted) >= IN_FLIGHT // 3,
        DRAIN_TIMEOUT,
        "a third of the runs to finish",
    )
    live = steady.live_runners()
    busy = [runner for runner in live if steady.running_on(runner)]
    (busy or live[-1:])[0].kill()
    steady.start_runner()

    steady.wait_drained(accepted)
    steady.assert_nothing_lost(accepted, before)
    with psycopg.connect(steady.database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM executions WHERE attempts >= 2 AND id = ANY(%s)", (accepted,)
        ).fetchone()
    # The first kill hit at least one run under way: it ran again, once.
    assert row is not None and row[0] >= 1, "the kills interrupted no run"


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
    save_task(steady.client, runs_task(site, "after-poison", 0.5))
    runners = steady.live_runners()
    assert runners
    logged_before = sum(len(log_events(r, "run.bad_request")) for r in steady.runners)
    asyncio.run(_publish_poison(steady.nats.url))
    before = steady.execution_ids()
    accepted = queue_runs(steady.client, "after-poison", 10)

    steady.wait_drained(accepted)
    steady.assert_nothing_lost(accepted, before)
    # Terminated, not left for redelivery: nothing pending or unacknowledged in the queue,
    # and each poison message logged as an error once.
    wait_until(lambda: asyncio.run(_runs_consumer(steady.nats.url)) == (0, 0), 30, "an empty queue")
    logged = [e for r in steady.runners for e in log_events(r, "run.bad_request")]
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


_REFUSALS = {(429, "QUEUE_FULL"), (503, "SERVER_BUSY")}


def _kept(answer: httpx.Response) -> bool:
    """A run call that saved its run: queued (202), or saved while the queue was out of
    reach (503 QUEUE_UNAVAILABLE names the execution, which is published again shortly)."""
    if answer.status_code == 202:
        return True
    return answer.status_code == 503 and answer.json().get("error") == "QUEUE_UNAVAILABLE"


def test_flood_drains_with_nothing_dropped(
    steady: Faulty, site: str, record_property: Callable[[str, object], None]
) -> None:
    _one_runner(steady)
    # The cheapest run there is: no page to load, no action.
    save_task(steady.client, {"id": "tiny", "name": "tiny", "disableRecording": True})
    port = free_port()
    steady.stack.start("gateway", PORT=str(port), RUN_QUEUE_LIMIT=str(FLOOD_LIMIT))
    flooded = httpx.Client(
        base_url=f"http://127.0.0.1:{port}", headers={"x-api-key": API_KEY}, timeout=120
    )
    steady.stack.clients.append(flooded)
    wait_until(lambda: healthy(flooded), 120, "the flooded gateway to answer")
    before = steady.execution_ids()
    workers = 32

    def call(_: int) -> httpx.Response:
        return flooded.post("/api/tasks/tiny/api", json={"async": True})

    started = time.monotonic()
    with HealthProbe(str(flooded.base_url)) as probe:
        with ThreadPoolExecutor(workers) as pool:
            answers = list(pool.map(call, range(FLOOD)))
        submitted = time.monotonic() - started
        accepted = [str(a.json()["executionId"]) for a in answers if _kept(a)]
        steady.wait_drained(accepted)
    drained = time.monotonic() - started
    refused = [a for a in answers if not _kept(a)]
    codes = Counter(f"{a.status_code} {a.json().get('error', '')}".strip() for a in answers)
    # Reported, not asserted: printed in the figures section at the end of the run.
    record_property(
        "figures",
        f"flood of {FLOOD} at a queue limit of {FLOOD_LIMIT}: {len(accepted)} accepted,"
        f" {len(refused)} refused ({', '.join(f'{n} {c}' for c, n in sorted(codes.items()))}),"
        f" submitted in {submitted:.1f} s, accepted runs drained in {drained:.1f} s;"
        f" {probe.report()}",
    )
    # The queue filled (the runner frees room while the flood lasts, so more than the
    # limit may get in over the whole flood), and the rest was refused as it should be:
    # the queue full, or, on a machine too loaded for the burst, every database connection
    # busy; either way with a time to come back.
    assert len(accepted) >= FLOOD_LIMIT
    assert refused, "a flood ten times the queue limit must meet a full queue"
    other = [
        (a.status_code, a.text[:300])
        for a in refused
        if (a.status_code, a.json().get("error")) not in _REFUSALS
    ]
    assert not other, f"refused otherwise than with QUEUE_FULL or SERVER_BUSY: {other[:5]}"
    assert any(a.status_code == 429 for a in refused)
    assert all(int(a.headers["Retry-After"]) > 0 for a in refused)
    # Refused calls saved nothing; every accepted one finished exactly once.
    assert steady.execution_ids() - before == set(accepted)
    steady.assert_nothing_lost(accepted, before)


def test_queue_limit_answers_429_and_keeps_what_it_accepted(steady: Faulty, site: str) -> None:
    save_task(steady.client, runs_task(site, "limited", 0.5))
    for runner in steady.live_runners():
        runner.stop()  # nothing drains: the queue only fills
    client = steady.limited
    assert client is not None
    wait_until(lambda: healthy(client), 120, "the limited gateway to answer")
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
