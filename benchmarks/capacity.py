"""The control plane's capacity: runs per second through gateways, PostgreSQL and NATS with
runners that complete runs without a browser (``RUNNER_ENGINE=null``), and what each run
costs them.

- Steps: K closed-loop clients post async runs (``POST /api/tasks/:id/api``) for a window,
  K doubling until the runs finished per second stop rising; with 1 and then 2 gateways
  (the clients spread their calls over both). Each step reports runs/s, the p99 from
  enqueue to start (the execution's created/started times in PostgreSQL) and every
  component's CPU% over the window (psutil, process trees), hence which saturates first.
- Per run, over a fixed number of runs through one gateway: gateway, PostgreSQL, runner
  and NATS CPU ms; rows (pg_stat_database) and WAL bytes written; NATS messages and bytes
  (/varz) and stream storage (/jsz).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import psutil
import psycopg

from benchmarks.stack import BenchStack, Service, tree_cpu_s
from benchmarks.stats import percentile

TASK_ID = "bench_capacity"
RUNNER_SLOTS = 64  # per null runner: the runners are never what limits the rate
NULL_RUNNERS = 2
# A PostgreSQL backend sends its table statistics at most every second, and an idle one
# only after 10 s: pg_stat_database is read once they are all in.
PG_STATS_SETTLE_S = 11.0


@dataclass(frozen=True)
class CapacityPlan:
    step_seconds: float
    clients: Sequence[int]  # the K of each step, tried in order while throughput rises
    per_run_runs: int
    per_run_clients: int
    stats_settle_s: float

    @classmethod
    def make(cls, quick: bool) -> CapacityPlan:
        if quick:
            return cls(1.5, (16,), 30, 8, 2.0)
        return cls(8.0, (2, 4, 8, 16, 32, 64, 128), 1000, 16, PG_STATS_SETTLE_S)


@dataclass
class Topology:
    """The processes whose CPU is measured, by component."""

    stack: BenchStack
    gateways: list[Service]
    urls: list[str]  # the gateways' base URLs
    runners: list[Service]

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each component (process trees)."""
        assert self.stack.postgres is not None and self.stack.nats is not None
        seconds = {f"gateway_{i + 1}": tree_cpu_s(g.pid) for i, g in enumerate(self.gateways)}
        seconds["gateway"] = sum(seconds.values())
        seconds["runner"] = sum(tree_cpu_s(r.pid) for r in self.runners)
        seconds["postgres"] = tree_cpu_s(self.stack.postgres.pid)
        seconds["nats"] = tree_cpu_s(self.stack.nats.pid)
        times = psutil.Process().cpu_times()
        seconds["client"] = times.user + times.system
        return seconds


async def measure(
    stack: BenchStack, session: aiohttp.ClientSession, gateway: Service, quick: bool
) -> dict[str, Any]:
    """The capacity figures: ``{gateways_1, gateways_2, per_run}``."""
    plan = CapacityPlan.make(quick)
    runners = list(
        await asyncio.gather(
            *(
                asyncio.to_thread(stack.start_runner, RUNNER_SLOTS, RUNNER_ENGINE="null")
                for _ in range(NULL_RUNNERS)
            )
        )
    )
    first_url = stack.gateway_url
    topology = Topology(stack, [gateway], [first_url], runners)
    second: Service | None = None
    try:
        await _save_task(session, first_url)
        async with await psycopg.AsyncConnection.connect(
            stack.database_url, autocommit=True
        ) as conn:
            per_run = await _per_run(plan, topology, session, conn)
            one = await _steps(plan, topology, session, conn)
            second = await asyncio.to_thread(stack.start_gateway)
            topology.gateways.append(second)
            topology.urls.append(stack.gateway_url)
            two = await _steps(plan, topology, session, conn)
    finally:
        for service in [*runners, *([second] if second else [])]:
            await asyncio.to_thread(stack.stop, service)
        stack.gateway_url = first_url  # what later phases call
    return {
        "what": (
            f"async runs on {NULL_RUNNERS} runners with RUNNER_ENGINE=null ({RUNNER_SLOTS}"
            " slots each); K closed-loop clients per step, doubled while runs/s rises"
        ),
        "gateways_1": one,
        "gateways_2": two,
        "per_run": per_run,
    }


async def _save_task(session: aiohttp.ClientSession, url: str) -> None:
    task = {
        "id": TASK_ID,
        "name": TASK_ID,
        "url": "http://127.0.0.1:9/",  # never opened: the null engine has no browser
        "disableRecording": True,
        "statelessExecution": True,
    }
    async with session.post(f"{url}/api/tasks", json=task) as response:
        if response.status >= 300:
            raise RuntimeError(f"saving {TASK_ID}: {response.status} {await response.text()}")


async def _push(
    session: aiohttp.ClientSession,
    urls: list[str],
    clients: int,
    *,
    seconds: float | None = None,
    runs: int | None = None,
) -> list[str]:
    """``clients`` closed-loop clients posting async runs round-robin over ``urls``, for
    ``seconds`` or until ``runs`` were accepted: the execution ids."""
    ids: list[str] = []
    targets = itertools.cycle(urls)
    stop_at = time.monotonic() + (seconds if seconds is not None else 3600)
    posted = 0

    async def client() -> None:
        nonlocal posted
        while time.monotonic() < stop_at and (runs is None or posted < runs):
            posted += 1
            url = f"{next(targets)}/api/tasks/{TASK_ID}/api"
            async with session.post(url, json={"async": True}) as response:
                body = await response.json()
                if response.status != 202:
                    raise RuntimeError(f"async run answered {response.status}: {body}")
                ids.append(body["executionId"])

    await asyncio.gather(*(client() for _ in range(clients)))
    return ids


async def _wait_finished(
    conn: psycopg.AsyncConnection[Any], ids: list[str], topology: Topology
) -> None:
    deadline = time.monotonic() + 300
    while True:
        cursor = await conn.execute(
            "SELECT count(*) FROM executions WHERE id = ANY(%s) AND phase = 'finished'", (ids,)
        )
        row = await cursor.fetchone()
        if row is not None and row[0] == len(ids):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(ids) - (row[0] if row else 0)} capacity runs never finished")
        for service in [*topology.gateways, *topology.runners]:
            service.check_alive()
        await asyncio.sleep(0.2)


async def _timings(
    conn: psycopg.AsyncConnection[Any], ids: list[str], start: float, end: float
) -> tuple[list[float], int]:
    """Enqueue→start seconds of ``ids``, and how many finished between ``start`` and
    ``end`` (epoch seconds)."""
    cursor = await conn.execute(
        "SELECT EXTRACT(EPOCH FROM started_at - created_at)::float8,"
        " EXTRACT(EPOCH FROM finished_at)::float8"
        " FROM executions WHERE id = ANY(%s)",
        (ids,),
    )
    rows = await cursor.fetchall()
    waits = [row[0] for row in rows if row[0] is not None]
    finished = sum(1 for row in rows if row[1] is not None and start <= row[1] <= end)
    return waits, finished


async def _steps(
    plan: CapacityPlan,
    topology: Topology,
    session: aiohttp.ClientSession,
    conn: psycopg.AsyncConnection[Any],
) -> dict[str, Any]:
    """K doubling while runs/s rises (by 5 % at least): each step's figures, the best."""
    steps: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    for clients in plan.clients:
        cpu_before, busy_before = topology.cpu(), psutil.cpu_times()
        start = time.time()
        ids = await _push(session, topology.urls, clients, seconds=plan.step_seconds)
        end = time.time()
        cpu = _cpu_percent(cpu_before, topology.cpu(), end - start)
        machine = _machine_busy_percent(busy_before, psutil.cpu_times())
        await _wait_finished(conn, ids, topology)
        waits, finished = await _timings(conn, ids, start, end)
        step = {
            "clients": clients,
            "accepted_per_s": round(len(ids) / (end - start), 1),
            "runs_per_s": round(finished / (end - start), 1),
            "enqueue_to_start_ms": {
                "p50": round(percentile(waits, 0.5) * 1000, 1),
                "p99": round(percentile(waits, 0.99) * 1000, 1),
            },
            "cpu_percent": cpu,
            "machine_busy_percent": machine,
            "saturates_first": _saturated(cpu),
        }
        steps.append(step)
        if best is not None and step["runs_per_s"] < best["runs_per_s"] * 1.05:
            break
        if best is None or step["runs_per_s"] > best["runs_per_s"]:
            best = step
    assert best is not None
    return {
        "gateways": len(topology.gateways),
        "step_seconds": plan.step_seconds,
        "runs_per_s": best["runs_per_s"],
        "p99_enqueue_to_start_ms": best["enqueue_to_start_ms"]["p99"],
        "saturates_first": steps[-1]["saturates_first"],
        "steps": steps,
    }


def _cpu_percent(
    before: dict[str, float], after: dict[str, float], wall: float
) -> dict[str, float]:
    return {key: round((after[key] - before[key]) / wall * 100, 1) for key in after}


def _machine_busy_percent(before: Any, after: Any) -> float:
    """Of all cores, the share busy between the two ``psutil.cpu_times()``."""
    idle = (after.idle + getattr(after, "iowait", 0)) - (before.idle + getattr(before, "iowait", 0))
    total = sum(after) - sum(before)
    return round((1 - idle / total) * 100, 1) if total > 0 else 0.0


def _saturated(cpu: dict[str, float]) -> str:
    """The component nearest its ceiling: one core for each Python service and for NATS
    (GOMAXPROCS=1), every core for PostgreSQL's processes together."""
    cores = psutil.cpu_count() or 1
    ceilings = {key: 100.0 for key in cpu if key.startswith("gateway_")}
    ceilings |= {"postgres": 100.0 * cores, "nats": 100.0}
    return max(ceilings, key=lambda key: cpu[key] / ceilings[key])


async def _per_run(
    plan: CapacityPlan,
    topology: Topology,
    session: aiohttp.ClientSession,
    conn: psycopg.AsyncConnection[Any],
) -> dict[str, Any]:
    """What ``plan.per_run_runs`` runs through one gateway cost, divided by their number."""
    monitor = topology.stack.nats
    assert monitor is not None
    async with aiohttp.ClientSession(base_url=monitor.monitor_url) as nats_http:
        before = (topology.cpu(), await _pg_counters(conn), await _nats_counters(nats_http))
        ids = await _push(session, topology.urls, plan.per_run_clients, runs=plan.per_run_runs)
        await _wait_finished(conn, ids, topology)
        cpu_after, nats_after = topology.cpu(), await _nats_counters(nats_http)
        await asyncio.sleep(plan.stats_settle_s)  # pg_stat_database: see PG_STATS_SETTLE_S
        pg_after = await _pg_counters(conn)
    n = len(ids)

    def per(after: dict[str, float], first: dict[str, float], key: str, scale: float = 1) -> float:
        return round((after[key] - first[key]) * scale / n, 2)

    cpu, pg, nats = before
    return {
        "runs": n,
        "gateway_cpu_ms": per(cpu_after, cpu, "gateway", 1000),
        "postgres_cpu_ms": per(cpu_after, cpu, "postgres", 1000),
        "runner_cpu_ms": per(cpu_after, cpu, "runner", 1000),
        "nats_cpu_ms": per(cpu_after, cpu, "nats", 1000),
        "rows_inserted": per(pg_after, pg, "inserted"),
        "rows_updated": per(pg_after, pg, "updated"),
        "rows_deleted": per(pg_after, pg, "deleted"),
        "rows_written": per(pg_after, pg, "written"),
        "transactions": per(pg_after, pg, "commits"),
        "wal_bytes": per(pg_after, pg, "wal"),
        "nats_msgs_in": per(nats_after, nats, "in_msgs"),
        "nats_msgs_out": per(nats_after, nats, "out_msgs"),
        "nats_bytes_in": per(nats_after, nats, "in_bytes"),
        "nats_bytes_out": per(nats_after, nats, "out_bytes"),
        "stream_bytes": {
            key.removeprefix("stream:"): per(nats_after, nats, key)
            for key in nats_after
            if key.startswith("stream:")
        },
        "stream_bytes_total": per(nats_after, nats, "stored"),
    }


async def _pg_counters(conn: psycopg.AsyncConnection[Any]) -> dict[str, float]:
    cursor = await conn.execute(
        "SELECT sum(tup_inserted)::float8, sum(tup_updated)::float8, sum(tup_deleted)::float8,"
        " sum(xact_commit)::float8, pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8"
        " FROM pg_stat_database"
    )
    row = await cursor.fetchone()
    assert row is not None
    inserted, updated, deleted, commits, wal = row
    return {
        "inserted": inserted,
        "updated": updated,
        "deleted": deleted,
        "written": inserted + updated + deleted,
        "commits": commits,
        "wal": wal,
    }


async def _nats_counters(http: aiohttp.ClientSession) -> dict[str, float]:
    """/varz message and byte counts, and each stream's stored bytes (/jsz)."""
    async with http.get("/varz") as response:
        varz = await response.json()
    async with http.get("/jsz", params={"accounts": "true", "streams": "true"}) as response:
        jsz = await response.json()
    counters = {key: float(varz[key]) for key in ("in_msgs", "out_msgs", "in_bytes", "out_bytes")}
    for account in jsz.get("account_details") or []:
        for stream in account.get("stream_detail") or []:
            key = f"stream:{stream['name']}"
            counters[key] = counters.get(key, 0.0) + float(stream["state"]["bytes"])
    counters["stored"] = float(jsz.get("storage", 0)) + float(jsz.get("memory", 0))
    return counters


def table_rows(measured: dict[str, Any] | None) -> list[tuple[str, str, str, str, str]]:
    """The printed table's rows: each gateway count's ceiling, then the per-run costs."""
    if not measured:
        return []
    rows = []
    for key in ("gateways_1", "gateways_2"):
        figures = measured[key]
        rows.append(
            (
                f"capacity {figures['gateways']} gateway(s) (runs/s)",
                f"{figures['runs_per_s']}",
                f"p99 start {figures['p99_enqueue_to_start_ms']} ms",
                f"K={figures['steps'][-1]['clients']}",
                f"saturates: {figures['saturates_first']}",
            )
        )
    cost = measured["per_run"]
    rows.append(
        (
            "per run CPU ms (gw / pg / nats)",
            f"{cost['gateway_cpu_ms']}",
            f"{cost['postgres_cpu_ms']}",
            f"{cost['nats_cpu_ms']}",
            f"runner {cost['runner_cpu_ms']}",
        )
    )
    rows.append(
        (
            "per run rows / WAL bytes",
            f"{cost['rows_written']}",
            f"{cost['wal_bytes']}",
            f"NATS msgs {cost['nats_msgs_in']}+{cost['nats_msgs_out']}",
            f"bytes {cost['nats_bytes_in']}+{cost['nats_bytes_out']}",
        )
    )
    return rows
