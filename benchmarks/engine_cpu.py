"""The runner's action engine against the raw Playwright script, in one process.

    python -m benchmarks.engine_cpu [--runs N] [--rounds N] [--concurrency C] [--kinds K,...]

Both drive the same Chromium, one run at a time, on the benchmark's page: ``raw`` is the
raw script of ``make bench``, ``engine`` is ``figranium_runner.engine.execute`` on the
same task in a context opened as a runner opens it (behind its egress proxy), and
``unchecked`` the same without the egress proxy. Printed: CPU ms per run (this process,
Playwright's driver and Chromium, not the page server) for each round, rounds interleaved,
and their medians, with the median split between them. ``--concurrency`` runs that many at
once, as a runner's slots do; ``--kinds`` measures only some of them. It tells the engine's
own cost apart from everything else a platform run pays (messaging, the services' CPU),
which ``make bench`` measures.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from collections.abc import Awaitable, Callable

import psutil
from playwright.async_api import Browser, async_playwright

from benchmarks.bench import CONTEXT_OPTIONS, bench_task, page_server, raw_run
from benchmarks.stack import own_cpu_s, tree_cpu_s
from figranium_common.models import Task
from figranium_runner.browser import CHROMIUM_ARGS, find_headless_chromium
from figranium_runner.egress import EgressPolicy, EgressProxy
from figranium_runner.engine import Limits, execute


async def _ignore(line: str) -> None:
    pass


async def engine_run(browser: Browser, url: str, *, check: str) -> None:
    proxy = await EgressProxy.start(EgressPolicy(allow_private=True)) if check == "egress" else None
    options = (
        CONTEXT_OPTIONS if proxy is None else {**CONTEXT_OPTIONS, "proxy": proxy.browser_proxy}
    )
    context = await browser.new_context(**options)
    try:
        page = await context.new_page()
        task = Task.model_validate(bench_task("engine_cpu", url))
        limits = Limits(allow_private=True, default_timeout_ms=30_000)
        result, _ = await execute(
            page, task, {}, execution_id="engine_cpu", limits=limits, emit=_ignore
        )
    finally:
        await context.close()
        if proxy is not None:
            await proxy.close()
    if result.outcome != "success":
        raise RuntimeError(f"engine run failed: {result.error}")


def _cpu_s() -> dict[str, float]:
    """This process, Playwright's driver and its Chromium; not the page server."""
    me = psutil.Process()
    drivers = [child for child in me.children() if "node" in child.name()]
    driver = sum(own_cpu_s(d.pid) for d in drivers)
    return {
        "python": own_cpu_s(me.pid),
        "driver": driver,
        "chromium": sum(tree_cpu_s(d.pid) for d in drivers) - driver,
    }


async def _batch(run: Callable[[], Awaitable[None]], runs: int, concurrency: int) -> None:
    slots = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with slots:
            await run()

    await asyncio.gather(*(one() for _ in range(runs)))


KINDS = ("raw", "engine", "unchecked")


async def measure(
    port: int, runs: int, rounds: int, concurrency: int = 1, only: tuple[str, ...] = KINDS
) -> dict[str, list[dict[str, float]]]:
    url = f"http://127.0.0.1:{port}/"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=find_headless_chromium(None, None), args=CHROMIUM_ARGS
        )
        kinds: dict[str, Callable[[], Awaitable[None]]] = {
            "raw": lambda: raw_run(browser, url),
            "engine": lambda: engine_run(browser, url, check="egress"),
            "unchecked": lambda: engine_run(browser, url, check="none"),
        }
        kinds = {kind: run for kind, run in kinds.items() if kind in only}
        for run in kinds.values():  # warm-up
            await _batch(run, max(3, concurrency), concurrency)
        spent: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
        for _ in range(rounds):
            for kind, run in kinds.items():
                before = _cpu_s()
                await _batch(run, runs, concurrency)
                after = _cpu_s()
                spent[kind].append({k: (after[k] - before[k]) / runs * 1000 for k in after})
        await browser.close()
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.engine_cpu")
    parser.add_argument("--runs", type=int, default=15, help="runs per round and kind")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=1, help="runs at once")
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help=f"comma-separated: {','.join(KINDS)}"
    )
    args = parser.parse_args()
    only = tuple(kind.strip() for kind in args.kinds.split(",") if kind.strip())
    if unknown := set(only) - set(KINDS):
        parser.error(f"unknown kinds: {', '.join(sorted(unknown))}")
    with page_server() as port:
        spent = asyncio.run(measure(port, args.runs, args.rounds, args.concurrency, only))
    for kind, rounds in spent.items():
        totals = [sum(parts.values()) for parts in rounds]
        each = ", ".join(f"{value:.0f}" for value in totals)
        split = " / ".join(
            f"{part} {statistics.median(parts[part] for parts in rounds):.1f}" for part in rounds[0]
        )
        print(
            f"{kind:10s} CPU ms per run: {each}; median {statistics.median(totals):.0f} ({split})"
        )


if __name__ == "__main__":
    main()
