"""The console's speed: the server time of every page at 10,000 tasks and 100,000
executions (issue 33 asks for under 150 ms each).

The database is filled as the gateway benchmark fills it (``benchmarks.seed``); schedules
are saved through the API, and screenshots put in the captures bucket as a runner puts
them. The captures index holds a screenshot of every execution (pages read the index, not
the bucket, so its rows are what they pay for). A browser-like client signs in with the
key, then asks each page a number of times
after one warm-up request and reads the gateway's own ``Server-Timing`` header
(``figranium_gateway.console.timing``), so the figure is the gateway's time, not the
client's. A page answering 404 is recorded as missing (a page not built yet), any other
failure with its status; neither stops the benchmark.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from typing import Any

import aiohttp
import nats
import psycopg

from benchmarks.seed import fill_executions, fill_tasks
from benchmarks.stats import percentile
from figranium_common.nats.streams import captures_store

SIGN_IN = "/console/sign-in"
TIMING = re.compile(r"app;dur=([0-9.]+)")
# A 1x1 PNG: the bucket's listing, not the image, is what a page pays for.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)
TASK = "bench_gw_1"  # one of the 1,000 tasks the executions are spread over
SCHEDULED = "bench_gw_2"  # the first task given a schedule


def pages(cursor: str) -> dict[str, str]:
    """The pages measured, by label. Those of pages still to be built answer 404."""
    return {
        "tasks": "/",
        "tasks ?q=": "/?q=Task%2099",
        "executions": "/console/executions",
        "executions ?taskId=": f"/console/executions?taskId={TASK}",
        "executions cursor": f"/console/executions?cursor={cursor}",
        "execution": "/console/executions/exec_bench_1",
        "schedules": "/console/schedules",
        "schedule": f"/console/schedules/{SCHEDULED}",
        "task editor": f"/console/tasks/{TASK}",
        "task json": f"/console/tasks/{TASK}/json",
        "task versions": f"/console/tasks/{TASK}/versions",
        "task run": f"/console/tasks/{TASK}/run",
        "captures": "/console/captures",
        "cabinets": "/console/cabinets",
        "settings": "/console/settings",
        "settings proxies": "/console/settings/proxies",
        "settings credentials": "/console/settings/credentials",
    }


async def seed(
    api: aiohttp.ClientSession, base: str, database_url: str, nats_url: str, sizes: dict[str, int]
) -> dict[str, int]:
    """Fill the stack up to ``sizes`` (tasks, executions, schedules, captures) and say how
    many rows the tables then hold."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        await asyncio.to_thread(fill_tasks, conn, sizes["tasks"])
        await asyncio.to_thread(fill_executions, conn, sizes["executions"])
    # Every other one paused; each a cron of its own (the page describes each one), yearly,
    # so that the scheduler phase after this one finds none of them due.
    for n in range(sizes["schedules"]):
        cron = f"{n % 60} {n % 24} {1 + n % 28} {1 + n % 12} *"
        body = {"enabled": n % 2 == 0, "cron": cron, "timezone": "Europe/Berlin"}
        async with api.post(f"{base}/api/schedules/bench_gw_{2 + n * 7}", json=body) as answer:
            if answer.status != 200:
                raise RuntimeError(f"saving a schedule: {answer.status} {await answer.text()}")
    nc = await nats.connect(nats_url)
    try:
        bucket = await captures_store(nc.jetstream())
        stamp = int(time.time() * 1000)
        for n in range(1, sizes["captures"] + 1):
            await bucket.put(f"exec_bench_{n}_agent_{stamp + n}.png", PNG)
    finally:
        await nc.close()
    # Rows of the captures index, as the gateway adds them from runners' reports: those
    # screenshots, and one of every other execution.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO captures (name, execution_id, kind, size, created_at)"
            " SELECT 'exec_bench_' || n || '_agent_' || (%s + n) || '.png', 'exec_bench_' || n,"
            " 'screenshot', %s, %s + n FROM generate_series(1, %s) AS n ON CONFLICT DO NOTHING",
            (stamp, len(PNG), stamp, max(sizes["captures"], sizes["executions"])),
        )
    with psycopg.connect(database_url) as conn:
        counted = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            for table in ("tasks", "executions", "schedules", "captures")
        }
    return {table: int(row[0]) if row else 0 for table, row in counted.items()} | {
        "capture objects": sizes["captures"]
    }


async def sign_in(session: aiohttp.ClientSession, base: str, key: str) -> None:
    async with session.get(f"{base}{SIGN_IN}") as answer:
        await answer.read()
    token = next(c.value for c in session.cookie_jar if c.key == "figranium_csrf")
    form = {"apiKey": key, "csrf_token": token}
    async with session.post(f"{base}{SIGN_IN}", data=form, allow_redirects=False) as answer:
        if answer.status != 303:
            raise RuntimeError(f"console sign-in answered {answer.status}")


async def later_cursor(api: aiohttp.ClientSession, base: str, executions: int) -> str:
    """The API's cursor into the middle of the executions (seeded ten seconds apart)."""
    middle_ms = int((time.time() - executions * 5) * 1000)
    async with api.get(f"{base}/api/executions?limit=50&to={middle_ms}") as answer:
        cursor = (await answer.json()).get("nextCursor")
    if not isinstance(cursor, str):
        raise RuntimeError("no cursor into the middle of the executions")
    return cursor


async def time_page(session: aiohttp.ClientSession, url: str, repeats: int) -> dict[str, Any]:
    """One warm-up request, then ``repeats`` more: the server time of each, in ms."""
    server: list[float] = []
    wall: list[float] = []
    for i in range(repeats + 1):
        started = time.perf_counter()
        async with session.get(url, allow_redirects=False) as answer:
            await answer.read()
            took = (time.perf_counter() - started) * 1000
            if answer.status == 404:
                return {"missing": True, "status": 404}
            if answer.status != 200:
                return {"status": answer.status}
            found = TIMING.fullmatch(answer.headers.get("Server-Timing", ""))
            if found is None:
                raise RuntimeError(f"{url}: no Server-Timing header")
        if i:
            server.append(float(found.group(1)))
            wall.append(took)
    return {
        "n": repeats,
        "p50": round(statistics.median(server), 1),
        "p99": round(percentile(server, 0.99), 1),
        "max": round(max(server), 1),
        "wall_p50": round(statistics.median(wall), 1),
    }


async def measure(
    api: aiohttp.ClientSession,
    base: str,
    key: str,
    database_url: str,
    nats_url: str,
    sizes: dict[str, int],
    repeats: int,
) -> dict[str, Any]:
    """Seed, sign in and time every page: ``{"rows": ..., "pages": {label: figures}}``."""
    rows = await seed(api, base, database_url, nats_url, sizes)
    cursor = await later_cursor(api, base, sizes["executions"])
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True),  # cookies of 127.0.0.1 kept
        timeout=aiohttp.ClientTimeout(total=120),
    ) as browser:
        await sign_in(browser, base, key)
        measured = {
            label: await time_page(browser, f"{base}{path}", repeats)
            for label, path in pages(cursor).items()
        }
    return {"rows": rows, "pages": measured}


def worst_p99(measured: dict[str, dict[str, Any]]) -> float | None:
    p99s = [page["p99"] for page in measured.values() if "p99" in page]
    return max(p99s) if p99s else None


def table_rows(measured: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, str, str]]:
    """The printed table's rows: one per page."""
    rows = []
    for label, page in measured.items():
        if "p99" in page:
            rows.append(
                (
                    f"console {label} (server ms)",
                    f"p50 {page['p50']}",
                    f"p99 {page['p99']}",
                    f"max {page['max']}",
                    "< 150",
                )
            )
        else:
            state = "missing (404)" if page.get("missing") else f"answered {page['status']}"
            rows.append((f"console {label}", state, "", "", ""))
    return rows
