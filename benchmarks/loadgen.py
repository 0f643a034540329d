"""A small HTTP load generator, run as its own process so it does not share a loop (or a
GIL) with what it measures: ``python -m benchmarks.loadgen URL --connections 32 --duration 10``.

Prints one JSON object: requests, errors, rps (successful responses per second that arrived
in the measured window), and their latency percentiles in milliseconds. Responses that
arrive in the first second (warm-up) are not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import aiohttp

WARMUP_SECONDS = 1.0


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


async def run(
    url: str, connections: int, duration: float, headers: dict[str, str]
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors = 0
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(
        connector=connector, headers=headers, timeout=timeout
    ) as session:
        start = time.perf_counter()
        measure_from = start + WARMUP_SECONDS
        stop_at = measure_from + duration

        async def worker() -> None:
            nonlocal errors
            while True:
                sent = time.perf_counter()
                if sent >= stop_at:
                    return
                try:
                    async with session.get(url) as response:
                        await response.read()
                        status = response.status
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                done = time.perf_counter()
                # Every response that arrives inside the window counts, however long it took,
                # so an endpoint slower than the window still shows its latency.
                if done < measure_from or done > stop_at:
                    continue
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                if status == 200:
                    latencies.append((done - sent) * 1000)
                else:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(connections)))
    return {
        "requests": len(latencies),
        "errors": errors,
        "statuses": statuses,
        "rps": round(len(latencies) / duration, 1),
        "p50_ms": _round(percentile(latencies, 0.50)),
        "p90_ms": _round(percentile(latencies, 0.90)),
        "p99_ms": _round(percentile(latencies, 0.99)),
        "max_ms": _round(max(latencies) if latencies else None),
        "connections": connections,
        "duration_s": duration,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--header", action="append", default=[], help="Name: value")
    args = parser.parse_args()
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    result = asyncio.run(run(args.url, args.connections, args.duration, headers))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
