"""Run the benchmarks and write ``benchmarks/results/latest.json``.

    python -m benchmarks [--quick]
                         [--only overhead,throughput,memory,gateway,console,scheduler,capacity]
                         [--runs N] [--repeats N] [--output PATH]

Everything is started here and stopped at the end (also on Ctrl-C or an error): a private
PostgreSQL and NATS under a temporary directory, the page the runs open, the services as
processes, and a Chromium of our own for the raw Playwright baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import nats
import psutil
import psycopg
from playwright.async_api import Browser, async_playwright
from psycopg.types.json import Jsonb

from benchmarks import capacity, console
from benchmarks.machine import git_commit, load_average, machine_info
from benchmarks.page import ITEMS
from benchmarks.seed import fill_executions, fill_tasks
from benchmarks.stack import API_KEY, BenchStack, Service, own_cpu_s, tree_cpu_s, tree_memory_mb
from benchmarks.stats import percentile
from figranium_common.config import Config
from figranium_common.nats import RUNS_DEFAULT_SUBJECT, SCHEDULES_NOTIFY_SUBJECT
from figranium_devstack.ports import free_port
from figranium_runner.browser import CHROMIUM_ARGS, find_headless_chromium

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
PHASES = ("overhead", "throughput", "memory", "gateway", "console", "scheduler", "capacity")

# The extraction step, once as the task's script (a function body) and once for raw Playwright.
EXTRACT_BODY = "return Array.from(document.querySelectorAll('#items li')).map(li => li.textContent)"
EXTRACT_FN = f"() => {{ {EXTRACT_BODY} }}"
TYPED = "hello benchmark"
# What the runner gives every context (figranium_runner.browser.new_context), so both sides
# render and screenshot the same viewport.
CONTEXT_OPTIONS: dict[str, Any] = {
    "viewport": {"width": 1280, "height": 800},
    "bypass_csp": True,
    "accept_downloads": True,
}


@dataclass
class Plan:
    quick: bool
    runs: int
    overhead_warmup: int
    overhead_pairs: int
    gateway_seconds: float
    gateway_connections: int
    task_sizes: list[int]
    execution_sizes: list[int]
    schedules: int
    memory_slots: int
    memory_wait_s: float
    throughput_repeats: int = 5
    # The console phase: rows it fills the database up to, and requests per page.
    console_sizes: dict[str, int] = field(
        default_factory=lambda: {
            "tasks": 10000,
            "executions": 100000,
            "schedules": 100,
            "captures": 1000,
        }
    )
    console_repeats: int = 50

    @classmethod
    def make(cls, quick: bool, runs: int | None) -> Plan:
        if quick:
            small = {"tasks": 1000, "executions": 10000, "schedules": 20, "captures": 100}
            return cls(
                True, runs or 16, 2, 5, 1, 32, [1000], [1000, 10000], 200, 4, 12, 1, small, 5
            )
        return cls(False, runs or 200, 10, 60, 10, 32, [1000], [1000, 10000, 100000], 2000, 4, 20)


@dataclass
class Bench:
    plan: Plan
    stack: BenchStack
    session: aiohttp.ClientSession
    browser: Browser
    page_url: str
    results: dict[str, Any] = field(default_factory=dict)
    gateway: Service | None = None
    runner: Service | None = None

    @property
    def api(self) -> str:
        return self.stack.gateway_url

    def restart_runner(self, concurrency: int) -> Service:
        if self.runner is not None:
            self.stack.stop(self.runner)
            self.runner = None
        self.runner = self.stack.start_runner(concurrency)
        return self.runner


# --- statistics -----------------------------------------------------------------------


def settings_from_environment(given: dict[str, str]) -> dict[str, str]:
    """The service settings in this process's environment that reach the services as they
    are (``given``: what the stack passes them), not set by the stack itself."""
    aliases = {str(field.alias) for field in Config.model_fields.values()}
    return {
        name: value
        for name in sorted(aliases)
        if (value := os.environ.get(name)) is not None and given.get(name) == value
    }


def summary(values: list[float], digits: int = 1) -> dict[str, Any]:
    return {
        "n": len(values),
        "median": round(statistics.median(values), digits),
        "p90": round(percentile(values, 0.90), digits),
        "p99": round(percentile(values, 0.99), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 3)


# --- the 5-step task, both ways -----------------------------------------------------------


def bench_task(task_id: str, page_url: str, *, wait_s: float | None = None) -> dict[str, Any]:
    actions: list[dict[str, Any]] = [
        {"type": "type", "selector": "#q", "value": TYPED},
        {"type": "click", "selector": "#go"},
    ]
    if wait_s is not None:
        actions.append({"type": "wait", "value": str(wait_s)})
    # navigate (the task's url), type, click, extract, and the final screenshot every
    # run takes (figranium_runner.engine._run_task).
    return {
        "id": task_id,
        "name": task_id,
        "url": page_url,
        "actions": actions,
        "extractionScript": EXTRACT_BODY,
        "disableRecording": True,
        "statelessExecution": True,
    }


async def raw_run(browser: Browser, page_url: str) -> None:
    context = await browser.new_context(**CONTEXT_OPTIONS)
    try:
        page = await context.new_page()
        await page.goto(page_url, wait_until="load")
        await page.locator("#q").first.fill(TYPED)
        await page.click("#go")
        data = await page.evaluate(EXTRACT_FN)
        await page.screenshot(full_page=False)
    finally:
        await context.close()
    if len(data) != ITEMS:
        raise RuntimeError(f"raw run extracted {len(data)} items")


async def platform_run(bench: Bench, task_id: str) -> None:
    async with bench.session.post(f"{bench.api}/api/tasks/{task_id}/api", json={}) as response:
        body = await response.json()
        if response.status != 200:
            raise RuntimeError(f"platform run answered {response.status}: {body}")
    if len(body.get("data") or []) != ITEMS:
        raise RuntimeError(f"platform run extracted {body.get('data')!r}")


async def save_task(bench: Bench, task: dict[str, Any]) -> None:
    async with bench.session.post(f"{bench.api}/api/tasks", json=task) as response:
        if response.status >= 300:
            raise RuntimeError(f"saving {task['id']}: {response.status} {await response.text()}")


async def timed(work: Awaitable[None]) -> float:
    start = time.perf_counter()
    await work
    return (time.perf_counter() - start) * 1000


# --- 1. run overhead ----------------------------------------------------------------------


async def overhead(bench: Bench) -> None:
    plan = bench.plan
    await save_task(bench, bench_task("bench_overhead", bench.page_url))
    for _ in range(plan.overhead_warmup):
        await platform_run(bench, "bench_overhead")
        await raw_run(bench.browser, bench.page_url)
    platform: list[float] = []
    raw: list[float] = []
    for i in range(plan.overhead_pairs):
        # A/B then B/A: neither side always runs right after the other.
        order = ("platform", "raw") if i % 2 == 0 else ("raw", "platform")
        for side in order:
            if side == "platform":
                platform.append(await timed(platform_run(bench, "bench_overhead")))
            else:
                raw.append(await timed(raw_run(bench.browser, bench.page_url)))
    p, r = summary(platform), summary(raw)
    bench.results["run_overhead_ratio"] = ratio(p["median"], r["median"])
    bench.results["run_overhead_p90_ratio"] = ratio(p["p90"], r["p90"])
    bench.results["overhead"] = {
        "what": "navigate local page, type, click, extract 50 items, screenshot; wall ms per run",
        "platform_ms": p,
        "raw_ms": r,
        "platform": "POST /api/tasks/:id/api (sync), disableRecording, statelessExecution",
        "raw": "Playwright on a warm browser, fresh context per run, same Chromium and flags",
        "runner_concurrency": 4,
        "warmup_runs_each": plan.overhead_warmup,
    }


# --- 2. throughput ------------------------------------------------------------------------


async def platform_batch(bench: Bench, task_id: str, n: int) -> dict[str, Any]:
    started = time.time()
    ids: list[str] = []
    submit_limit = asyncio.Semaphore(16)

    async def submit() -> None:
        async with (
            submit_limit,
            bench.session.post(
                f"{bench.api}/api/tasks/{task_id}/api", json={"async": True}
            ) as response,
        ):
            body = await response.json()
            if response.status != 202:
                raise RuntimeError(f"async run answered {response.status}: {body}")
            ids.append(body["executionId"])

    await asyncio.gather(*(submit() for _ in range(n)))
    submitted = time.time()
    # Watched in PostgreSQL, not through the API: the raw side has no observer either, so
    # the watching must cost the platform next to nothing. One connection for the whole
    # batch: a new one per look would have PostgreSQL start a backend process each time.
    deadline = time.monotonic() + 600 + n * 5
    async with await psycopg.AsyncConnection.connect(
        bench.stack.database_url, autocommit=True
    ) as conn:
        while True:
            await asyncio.sleep(0.5)
            done, ok, last = await _finished(conn, ids)
            if done == n:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{n - done} of {n} runs never finished")
            if bench.runner is not None:
                bench.runner.check_alive()
    # The last finishing time as PostgreSQL stored it, not when our poll happened to look.
    wall = last - started
    return {
        "runs": n,
        "succeeded": ok,
        "wall_s": round(wall, 2),
        "submit_s": round(submitted - started, 2),
        "runs_per_min": round(n / wall * 60, 1),
    }


async def _finished(conn: psycopg.AsyncConnection[Any], ids: list[str]) -> tuple[int, int, float]:
    """How many of ``ids`` finished, how many succeeded, and the last finishing time."""
    cursor = await conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE outcome = 'success'),"
        " EXTRACT(EPOCH FROM max(finished_at))::float8"
        " FROM executions WHERE id = ANY(%s) AND phase = 'finished'",
        (ids,),
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), float(row[2] or 0.0)


async def raw_batch(bench: Bench, n: int, concurrency: int) -> dict[str, Any]:
    limit = asyncio.Semaphore(concurrency)
    failures = 0

    async def one() -> None:
        nonlocal failures
        async with limit:
            try:
                await raw_run(bench.browser, bench.page_url)
            except Exception:
                failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    wall = time.perf_counter() - started
    return {
        "runs": n,
        "succeeded": n - failures,
        "wall_s": round(wall, 2),
        "runs_per_min": round(n / wall * 60, 1),
    }


# The runs of each side are split into this many batches, the sides alternating
# (platform, raw, raw, platform, ...): this VM's speed drifts by 10-20 % within minutes,
# and two back-to-back batches would put the whole drift into the ratio.
THROUGHPUT_ROUNDS = 4


def batches_per_repeat(runs: int) -> int:
    return THROUGHPUT_ROUNDS if runs >= 4 * THROUGHPUT_ROUNDS else 1


async def throughput_repeat(bench: Bench, concurrency: int) -> dict[str, list[dict[str, Any]]]:
    """One measurement of ``plan.runs`` runs per side, in alternating batches."""
    batches: dict[str, list[dict[str, Any]]] = {"platform": [], "raw": []}
    n = bench.plan.runs
    rounds = batches_per_repeat(n)
    for i in range(rounds):
        size = n // rounds + (1 if i < n % rounds else 0)
        for side in ("platform", "raw") if i % 2 == 0 else ("raw", "platform"):
            if side == "platform":
                before = platform_cpu(bench)
                batch = await platform_batch(bench, "bench_throughput", size)
                batch["cpu_s"] = delta(before, platform_cpu(bench))
            else:
                before = raw_cpu()
                batch = await raw_batch(bench, size, concurrency)
                batch["cpu_s"] = delta(before, raw_cpu())
            batches[side].append(batch)
    return batches


async def throughput(bench: Bench) -> None:
    n, repeats = bench.plan.runs, bench.plan.throughput_repeats
    await save_task(bench, bench_task("bench_throughput", bench.page_url))
    out: dict[str, Any] = {
        "what": f"{repeats} x {n} runs of the 5-step task per side, each {n} in"
        f" {batches_per_repeat(n)} alternating batches;"
        " runs/min = runs / summed batch wall time over all of them; repeat_ratios: the ratio"
        " of each repeat; pair_ratios: of each platform batch to the raw batch next to it"
    }
    for concurrency in (4, 8):
        await asyncio.to_thread(bench.restart_runner, concurrency)
        # Warm-up: one batch as wide as the slots, each side, not counted.
        await platform_batch(bench, "bench_throughput", concurrency)
        await raw_batch(bench, concurrency, concurrency)
        batches: dict[str, list[dict[str, Any]]] = {"platform": [], "raw": []}
        repeat_ratios: list[float] = []
        for _ in range(repeats):
            repeat = await throughput_repeat(bench, concurrency)
            for side, found in repeat.items():
                batches[side].extend(found)
            one = {side: combined(found) for side, found in repeat.items()}
            repeat_ratios.append(
                ratio(one["platform"]["runs_per_min"], one["raw"]["runs_per_min"]) or 0.0
            )
        platform, raw = combined(batches["platform"]), combined(batches["raw"])
        pairs = [
            p["runs_per_min"] / r["runs_per_min"]
            for p, r in zip(batches["platform"], batches["raw"], strict=True)
        ]
        out[f"c{concurrency}"] = {
            "platform": platform,
            "raw": raw,
            "repeat_ratios": repeat_ratios,
            "pair_ratios": summary(pairs, 3),
        }
        bench.results[f"throughput_ratio_c{concurrency}"] = ratio(
            platform["runs_per_min"], raw["runs_per_min"]
        )
    out["platform"] = (
        "async submissions (202), one runner at RUNNER_CONCURRENCY=c (one Chromium for the"
        " whole batch, no recycling); wall = last finishedAt - first submission"
    )
    out["raw"] = "asyncio.Semaphore(c), fresh context per run, same Chromium and flags"
    out["cpu"] = (
        "CPU ms per run (user + system, process trees) while the batch ran: on the platform"
        " side the runner's Python, its Playwright driver (node) and the Chromium under it, the"
        " gateway, PostgreSQL, NATS and the client submitting the runs (this process); on the"
        " raw side the script (this process), its Playwright driver and its Chromium"
    )
    bench.results["throughput"] = out


def platform_cpu(bench: Bench) -> dict[str, float]:
    runner = bench.runner
    assert runner is not None and bench.gateway is not None
    stack = bench.stack
    return {
        "client": own_cpu_s(os.getpid()),
        "runner_python": own_cpu_s(runner.pid),
        **driver_cpu(runner.pid),
        "gateway": tree_cpu_s(bench.gateway.pid),
        "postgres": tree_cpu_s(None if stack.postgres is None else stack.postgres.pid),
        "nats": tree_cpu_s(None if stack.nats is None else stack.nats.pid),
    }


def driver_cpu(pid: int) -> dict[str, float]:
    """CPU of the Playwright drivers (node) under ``pid``, apart from their Chromiums."""
    try:
        drivers = [c for c in psutil.Process(pid).children() if "node" in c.name()]
    except psutil.NoSuchProcess:
        drivers = []
    driver = sum(own_cpu_s(d.pid) for d in drivers)
    return {"driver": driver, "chromium": sum(tree_cpu_s(d.pid) for d in drivers) - driver}


def raw_cpu() -> dict[str, float]:
    # The script (this process), its Playwright driver (node) and the Chromium under it.
    return {"client": own_cpu_s(os.getpid()), **driver_cpu(os.getpid())}


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {key: after[key] - before[key] for key in after}


def combined(batches: list[dict[str, Any]]) -> dict[str, Any]:
    """One side's batches as one figure: runs over summed wall time, CPU per run."""
    runs = sum(batch["runs"] for batch in batches)
    wall = sum(batch["wall_s"] for batch in batches)
    cpu = {key: sum(batch["cpu_s"][key] for batch in batches) for key in batches[0]["cpu_s"]}
    per_run = {key: round(value / runs * 1000, 1) for key, value in cpu.items()}
    per_run["total"] = round(sum(per_run.values()), 1)
    return {
        "runs": runs,
        "succeeded": sum(batch["succeeded"] for batch in batches),
        "wall_s": round(wall, 2),
        "runs_per_min": round(runs / wall * 60, 1),
        "batch_runs_per_min": [batch["runs_per_min"] for batch in batches],
        "cpu_ms_per_run": per_run,
    }


# --- 5. memory ----------------------------------------------------------------------------


async def sample_memory(pid: int, seconds: float, every: float = 0.5) -> list[dict[str, float]]:
    samples = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        samples.append(await asyncio.to_thread(tree_memory_mb, pid))
        await asyncio.sleep(every)
    return samples


def median_of(samples: list[dict[str, float]], key: str) -> float:
    return round(statistics.median(s[key] for s in samples), 1)


async def memory(bench: Bench) -> None:
    slots = bench.plan.memory_slots
    runner = await asyncio.to_thread(bench.restart_runner, slots)
    await save_task(bench, bench_task("bench_overhead", bench.page_url))
    await save_task(
        bench, bench_task("bench_memory", bench.page_url, wait_s=bench.plan.memory_wait_s)
    )
    # Chromium launched and every code path touched once, as on a runner that has served.
    await platform_batch(bench, "bench_overhead", slots)
    await asyncio.sleep(3)
    idle = await sample_memory(runner.pid, 3)
    started = time.time()
    ids: list[str] = []
    for _ in range(slots):
        async with bench.session.post(
            f"{bench.api}/api/tasks/bench_memory/api", json={"async": True}
        ) as response:
            ids.append((await response.json())["executionId"])
    # Busy: every slot has opened its page and sits in the `wait` action.
    while True:
        async with bench.session.get(f"{bench.api}/api/executions?limit=50") as response:
            listed = {e["id"]: e for e in (await response.json())["executions"]}
        if all(listed.get(i, {}).get("phase") == "running" for i in ids):
            break
        if time.time() - started > bench.plan.memory_wait_s:
            raise RuntimeError("the memory runs never all ran at once")
        await asyncio.sleep(0.2)
    await asyncio.sleep(2)
    busy = await sample_memory(runner.pid, min(4.0, bench.plan.memory_wait_s / 3))
    idle_rss, busy_rss = median_of(idle, "rss_mb"), median_of(busy, "rss_mb")
    idle_pss, busy_pss = median_of(idle, "pss_mb"), median_of(busy, "pss_mb")
    bench.results["runner_rss_idle_mb"] = idle_rss
    bench.results["runner_rss_per_slot_mb"] = round((busy_rss - idle_rss) / slots, 1)
    bench.results["memory"] = {
        "what": "runner Python process + its whole Chromium tree; medians of samples every 0.5 s",
        "slots": slots,
        "runner_idle": {
            "rss_mb": idle_rss,
            "pss_mb": idle_pss,
            "python_rss_mb": median_of(idle, "python_rss_mb"),
            "processes": idle[-1]["processes"],
        },
        "runner_busy": {
            "rss_mb": busy_rss,
            "pss_mb": busy_pss,
            "python_rss_mb": median_of(busy, "python_rss_mb"),
            "processes": busy[-1]["processes"],
        },
        "runner_pss_per_slot_mb": round((busy_pss - idle_pss) / slots, 1),
    }
    await asyncio.sleep(max(0.0, bench.plan.memory_wait_s - (time.time() - started)) + 2)


# --- 3. gateway ---------------------------------------------------------------------------


def explain(conn: psycopg.Connection[Any], query: str) -> dict[str, Any]:
    rows = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {query}").fetchall()
    lines = [r[0] for r in rows]
    took = next((ln for ln in lines if ln.startswith("Execution Time")), "")
    return {"execution_time": took.split(":", 1)[-1].strip(), "plan": lines}


async def load(bench: Bench, path: str) -> dict[str, Any]:
    assert bench.gateway is not None
    argv = [sys.executable, "-m", "benchmarks.loadgen", f"{bench.api}{path}"]
    argv += ["--connections", str(bench.plan.gateway_connections)]
    argv += ["--duration", str(bench.plan.gateway_seconds), "--header", f"x-api-key: {API_KEY}"]
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    sampler = asyncio.create_task(
        sample_memory(bench.gateway.pid, bench.plan.gateway_seconds + 1, every=1.0)
    )
    try:
        stdout, stderr = await proc.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        raise
    finally:
        samples = await sampler
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen failed: {stderr.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(stdout)
    result["gateway_rss_mb_max"] = max(s["rss_mb"] for s in samples)
    return result


async def one_at_a_time(bench: Bench, path: str, n: int = 5) -> dict[str, Any]:
    """Latency of one request with nothing else in flight: how the work grows with size."""
    took = []
    for _ in range(n + 1):
        start = time.perf_counter()
        async with bench.session.get(f"{bench.api}{path}") as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"{path} answered {response.status}")
        took.append((time.perf_counter() - start) * 1000)
    return summary(took[1:])  # the first one warms caches


def _row(result: dict[str, Any]) -> dict[str, Any]:
    keep = ("rps", "p50_ms", "p90_ms", "p99_ms", "max_ms", "errors", "requests")
    return {k: result[k] for k in keep} | {"gateway_rss_mb_max": result["gateway_rss_mb_max"]}


async def gateway(bench: Bench) -> None:
    assert bench.gateway is not None
    if bench.runner is not None:
        await asyncio.to_thread(bench.stack.stop, bench.runner)
        bench.runner = None
    plan = bench.plan
    rps: dict[str, dict[str, Any]] = {"health": {}, "tasks_list": {}, "executions_limit50": {}}
    plans: dict[str, dict[str, Any]] = {"tasks_list": {}, "executions_limit50": {}}
    single: dict[str, dict[str, Any]] = {"tasks_list": {}, "executions_limit50": {}}
    conn = psycopg.connect(bench.stack.database_url, autocommit=True)
    try:
        conn.execute("TRUNCATE executions, tasks CASCADE")
        await asyncio.sleep(2)
        gw_idle = await sample_memory(bench.gateway.pid, 2)
        rps["health"]["-"] = _row(await load(bench, "/api/health"))
        for size in plan.task_sizes:
            await asyncio.to_thread(fill_tasks, conn, size)
            single["tasks_list"][str(size)] = await one_at_a_time(bench, "/api/tasks/list")
            rps["tasks_list"][str(size)] = _row(await load(bench, "/api/tasks/list"))
            plans["tasks_list"][str(size)] = explain(
                conn, "SELECT id, body, updated_at FROM tasks ORDER BY updated_at DESC, id"
            )
        # Past the load-tested sizes, one request at a time only: at 32 connections a
        # request would take longer than the whole load window.
        for size in (10000,):
            if size not in plan.task_sizes:
                await asyncio.to_thread(fill_tasks, conn, size)
                single["tasks_list"][str(size)] = await one_at_a_time(bench, "/api/tasks/list")
        for size in plan.execution_sizes:
            await asyncio.to_thread(fill_executions, conn, size)
            single["executions_limit50"][str(size)] = await one_at_a_time(
                bench, "/api/executions?limit=50"
            )
            rps["executions_limit50"][str(size)] = _row(
                await load(bench, "/api/executions?limit=50")
            )
            plans["executions_limit50"][str(size)] = explain(
                conn,
                "SELECT id, task_id, task_name, mode, source, url, method, path, phase, status,"
                " outcome, created_at, started_at, finished_at, duration_ms, attempts"
                " FROM executions ORDER BY created_at DESC, id DESC LIMIT 50",
            )
    finally:
        conn.close()
    loads = [row["gateway_rss_mb_max"] for table in rps.values() for row in table.values()]
    bench.results["gateway_rps"] = rps
    bench.results["gateway_rss_idle_mb"] = median_of(gw_idle, "rss_mb")
    bench.results["gateway_rss_load_mb"] = max(loads)
    bench.results["gateway"] = {
        "what": (
            f"separate load-generator process, {plan.gateway_connections} connections,"
            f" {plan.gateway_seconds:g} s after 1 s warm-up; keys are table sizes (rows)"
        ),
        "single_request_ms": single,
        "explain": plans,
    }


# --- console ------------------------------------------------------------------------------


async def console_pages(bench: Bench) -> None:
    if bench.runner is not None:  # pages only: no Chromium competing
        await asyncio.to_thread(bench.stack.stop, bench.runner)
        bench.runner = None
    measured = await console.measure(
        bench.session,
        bench.api,
        API_KEY,
        bench.stack.database_url,
        bench.stack.nats_url,
        bench.plan.console_sizes,
        bench.plan.console_repeats,
    )
    bench.results["console_page_ms"] = measured["pages"]
    bench.results["console_page_worst_p99_ms"] = console.worst_p99(measured["pages"])
    bench.results["console"] = {
        "what": (
            f"Server-Timing (app;dur) of each console page, {bench.plan.console_repeats}"
            " sequential requests after one warm-up, signed in as a browser; rows: what the"
            " tables held"
        ),
        "rows": measured["rows"],
    }


# --- 4. scheduler -------------------------------------------------------------------------


async def scheduler(bench: Bench) -> None:
    n = bench.plan.schedules
    if bench.runner is not None:  # the scheduled runs just queue: no Chromium competing
        await asyncio.to_thread(bench.stack.stop, bench.runner)
        bench.runner = None
    service = await asyncio.to_thread(bench.stack.start_scheduler)
    arrivals: dict[str, float] = {}
    requested: dict[str, float] = {}
    nc = await nats.connect(bench.stack.nats_url)
    try:

        async def on_run(msg: Any) -> None:
            now = time.time()
            request = json.loads(msg.data)
            task_id = request["task"]["id"]
            if task_id.startswith("bench_sched_") and task_id not in arrivals:
                arrivals[task_id] = now
                requested[task_id] = request["requested_at"] / 1000

        sub = await nc.subscribe(RUNS_DEFAULT_SUBJECT, cb=on_run)
        await nc.flush()
        lead = 6.0 if bench.plan.quick else 10.0
        sched_body = {"url": bench.page_url, "disableRecording": True, "statelessExecution": True}
        due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=lead)
        with psycopg.connect(bench.stack.database_url) as conn, conn.transaction():
            conn.execute(
                "INSERT INTO tasks (id, body)"
                " SELECT 'bench_sched_' || g,"
                "  %s::jsonb || jsonb_build_object('name', 'Sched ' || g)"
                " FROM generate_series(1, %s) g",
                (Jsonb(sched_body), n),
            )
            conn.execute(
                "INSERT INTO schedules (task_id, cron, timezone, next_run, enabled)"
                " SELECT 'bench_sched_' || g, '* * * * *', 'UTC', %s, true"
                " FROM generate_series(1, %s) g",
                (due, n),
            )
        # As the gateway does when a schedule is saved through the API.
        await nc.publish(SCHEDULES_NOTIFY_SUBJECT, b"")
        await nc.flush()
        deadline = time.monotonic() + lead + 120
        while len(arrivals) < n and time.monotonic() < deadline:
            service.check_alive()
            await asyncio.sleep(0.2)
        await sub.unsubscribe()
    finally:
        await nc.close()
        with psycopg.connect(bench.stack.database_url, autocommit=True) as conn:
            conn.execute("UPDATE schedules SET enabled = false WHERE task_id LIKE 'bench_sched_%'")
        await asyncio.to_thread(bench.stack.stop, service)
    due_s = due.timestamp()
    late = [t - due_s for t in arrivals.values()]
    claim_late = [t - due_s for t in requested.values()]
    bench.results["schedule_lateness_p99_s"] = round(percentile(late, 0.99), 3) if late else None
    bench.results["scheduler"] = {
        "what": (
            f"{n} schedules due at the same instant, one scheduler; lateness = arrival of the"
            " run request on a core-NATS subscription to the runs subject - due time"
        ),
        "schedules": n,
        "published": len(arrivals),
        "lateness_s": summary(late, 3) if late else None,
        "requested_at_lateness_s": summary(claim_late, 3) if claim_late else None,
        "last_published_after_due_s": round(max(late), 3) if late else None,
        "batch_size": Config.model_fields["scheduler_batch_size"].default,
    }


# --- 5. capacity of the control plane -------------------------------------------------------


async def capacity_phase(bench: Bench) -> None:
    if bench.runner is not None:  # browserless runners only: no Chromium competing
        await asyncio.to_thread(bench.stack.stop, bench.runner)
        bench.runner = None
    assert bench.gateway is not None
    bench.results["capacity"] = await capacity.measure(
        bench.stack, bench.session, bench.gateway, bench.plan.quick
    )


# --- the run ------------------------------------------------------------------------------


# The headline figures of latest.json, present in every run (None when their phase was
# left out with --only).
FIGURES = (
    "run_overhead_ratio",
    "throughput_ratio_c4",
    "throughput_ratio_c8",
    "gateway_rps",
    "schedule_lateness_p99_s",
    "runner_rss_idle_mb",
    "runner_rss_per_slot_mb",
    "gateway_rss_idle_mb",
    "gateway_rss_load_mb",
    "console_page_ms",
    "console_page_worst_p99_ms",
    "capacity",
)


async def run(plan: Plan, only: list[str], stack: BenchStack, page_port: int) -> dict[str, Any]:
    chromium = find_headless_chromium(
        os.environ.get("CHROMIUM_HEADLESS_PATH"), os.environ.get("CHROMIUM_PATH")
    )
    results: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_commit(REPO),
        "options": {"quick": plan.quick, "only": only, "runs": plan.runs},
        # Service settings given to this run through the environment (the stack passes
        # the environment on), which change what the figures measure.
        "settings_from_environment": settings_from_environment(stack.env()),
        "machine": machine_info(chromium),
    }
    for key in FIGURES:
        results[key] = None
    bench_gateway = await asyncio.to_thread(stack.start_gateway)
    async with (
        async_playwright() as playwright,
        aiohttp.ClientSession(
            headers={"x-api-key": API_KEY}, timeout=aiohttp.ClientTimeout(total=600)
        ) as session,
    ):
        browser = await playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        results["machine"]["chromium_version_playwright"] = browser.version
        bench = Bench(plan, stack, session, browser, f"http://127.0.0.1:{page_port}/")
        bench.results = results
        bench.gateway = bench_gateway
        steps: dict[str, Callable[[Bench], Awaitable[None]]] = {
            "overhead": overhead,
            "throughput": throughput,
            "memory": memory,
            "gateway": gateway,
            "console": console_pages,
            "scheduler": scheduler,
            "capacity": capacity_phase,
        }
        for name in PHASES:
            if name not in only:
                continue
            if name in ("overhead", "throughput") and bench.runner is None:
                await asyncio.to_thread(bench.restart_runner, 4)
            print(f"[bench] {name} ...", flush=True)
            started = time.monotonic()
            await steps[name](bench)
            print(f"[bench] {name} done in {time.monotonic() - started:.0f}s", flush=True)
        await browser.close()
    results["machine"]["load_average_at_end"] = load_average()
    return results


def table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str, str]] = []

    def fmt(value: Any, unit: str = "") -> str:
        return "-" if value is None else f"{value}{unit}"

    over = results.get("overhead")
    if over:
        p, r = over["platform_ms"], over["raw_ms"]
        rows.append(
            (
                "run overhead median (ms)",
                fmt(p["median"]),
                fmt(r["median"]),
                fmt(results["run_overhead_ratio"]),
                "<= 1.10",
            )
        )
        rows.append(
            (
                "run overhead p90 (ms)",
                fmt(p["p90"]),
                fmt(r["p90"]),
                fmt(results.get("run_overhead_p90_ratio")),
                "",
            )
        )
    thr = results.get("throughput")
    if thr:
        for c in (4, 8):
            if f"c{c}" in thr:
                rows.append(
                    (
                        f"throughput c{c} (runs/min)",
                        fmt(thr[f"c{c}"]["platform"]["runs_per_min"]),
                        fmt(thr[f"c{c}"]["raw"]["runs_per_min"]),
                        fmt(results[f"throughput_ratio_c{c}"]),
                        ">= 0.90",
                    )
                )
                if spread := thr[f"c{c}"].get("pair_ratios"):
                    repeats = ", ".join(str(x) for x in thr[f"c{c}"]["repeat_ratios"])
                    rows.append(
                        (
                            f"throughput c{c} spread",
                            f"repeats {repeats}",
                            "",
                            f"pairs median {spread['median']}",
                            f"min {spread['min']} p90 {spread['p90']}",
                        )
                    )
                cpu = {
                    side: thr[f"c{c}"][side].get("cpu_ms_per_run") for side in ("platform", "raw")
                }
                if cpu["platform"] and cpu["raw"]:
                    rows.append(
                        (
                            f"CPU per run c{c} (ms)",
                            fmt(cpu["platform"]["total"]),
                            fmt(cpu["raw"]["total"]),
                            f"chromium {fmt(cpu['platform']['chromium'])}"
                            f" / {fmt(cpu['raw']['chromium'])}",
                            f"driver {fmt(cpu['platform']['driver'])}"
                            f" / {fmt(cpu['raw']['driver'])}",
                        )
                    )
    for endpoint, by_size in (results.get("gateway_rps") or {}).items():
        for size, row in by_size.items():
            label = f"{endpoint} @{size}" if size != "-" else endpoint
            rows.append(
                (
                    f"gateway {label}",
                    f"{row['rps']} rps",
                    f"p50 {row['p50_ms']} ms",
                    f"p99 {row['p99_ms']} ms",
                    f"err {row['errors']}",
                )
            )
    sched = results.get("scheduler")
    if sched and sched.get("lateness_s"):
        lat = sched["lateness_s"]
        rows.append(
            (
                f"schedule lateness ({sched['published']}/{sched['schedules']}) s",
                f"p50 {lat['median']}",
                f"p90 {lat['p90']}",
                f"p99 {lat['p99']}",
                "p99 < 1",
            )
        )
    mem = results.get("memory")
    if mem:
        rows.append(
            (
                "runner RSS idle / busy (MB)",
                fmt(mem["runner_idle"]["rss_mb"]),
                fmt(mem["runner_busy"]["rss_mb"]),
                f"{results['runner_rss_per_slot_mb']}/slot",
                f"{mem['slots']} slots",
            )
        )
        rows.append(
            (
                "runner PSS idle / busy (MB)",
                fmt(mem["runner_idle"]["pss_mb"]),
                fmt(mem["runner_busy"]["pss_mb"]),
                f"{mem['runner_pss_per_slot_mb']}/slot",
                "",
            )
        )
    if results.get("gateway_rss_idle_mb") is not None:
        rows.append(
            (
                "gateway RSS idle / load (MB)",
                fmt(results["gateway_rss_idle_mb"]),
                fmt(results["gateway_rss_load_mb"]),
                "",
                "",
            )
        )
    rows.extend(console.table_rows(results.get("console_page_ms") or {}))
    rows.extend(capacity.table_rows(results.get("capacity")))
    header = ("figure", "platform", "raw", "ratio", "target")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(5)]
    lines = [
        " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="few repetitions: a smoke check")
    parser.add_argument(
        "--only", default=",".join(PHASES), help=f"comma-separated: {','.join(PHASES)}"
    )
    parser.add_argument(
        "--runs", type=int, default=None, help="runs per throughput batch (default 200)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="throughput measurements per concurrency, each of --runs runs (default 5)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="JSON file (default results/latest.json, results/quick.json with --quick, "
        "results/only-<phases>.json with --only)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = parser.parse_args(argv)
    args.only = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(args.only) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    if args.runs is not None and not 1 <= args.runs <= 900:
        parser.error("--runs must be between 1 and 900")
    if args.repeats is not None and not 1 <= args.repeats <= 20:
        parser.error("--repeats must be between 1 and 20")
    return args


@contextlib.contextmanager
def page_server() -> Iterator[int]:
    """The page the runs open, in a process of its own; yields its port."""
    port = free_port()
    page = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.page", str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert page.stdout is not None
        if page.stdout.readline().strip() != b"ready":
            raise RuntimeError("the page server did not start")
        yield port
    finally:
        page.terminate()
        page.wait(10)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _default_output(quick: bool, only: list[str]) -> Path:
    """results/latest.json for a whole run; a run of some phases only goes to a file of
    its own (results/only-console.json), so it never replaces a whole run's figures."""
    if set(only) != set(PHASES):
        return RESULTS / f"only-{'-'.join(only)}{'-quick' if quick else ''}.json"
    return RESULTS / ("quick.json" if quick else "latest.json")


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    plan = Plan.make(args.quick, args.runs)
    if args.repeats is not None:
        plan.throughput_repeats = args.repeats
    output = args.output or _default_output(args.quick, args.only)
    workdir = Path(tempfile.mkdtemp(prefix="figranium-bench-"))
    keep = args.keep
    try:
        with (
            _sigterm_as_interrupt(),
            page_server() as page_port,
            BenchStack(workdir) as stack,
        ):
            results = asyncio.run(run(plan, args.only, stack, page_port))
    except KeyboardInterrupt:
        print("[bench] interrupted; everything stopped", file=sys.stderr)
        return 130
    except BaseException:
        keep = True  # the services' logs say what went wrong
        raise
    finally:
        if keep:
            print(f"[bench] logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nwritten to {output}")
    return 0
