"""Which NATS node leads the RUNS stream, and whether every replica is current again: from
the JetStream API's stream info, read as the ``admin`` user."""

from __future__ import annotations

import asyncio
import time

import nats

from faults.cluster import Cluster
from figranium_common.nats import RUNS_STREAM


async def _server_name(url: str) -> str:
    nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
    try:
        return str(nc._server_info.get("server_name", ""))
    finally:
        await nc.close()


async def _stream_cluster(servers: list[str]) -> tuple[str | None, list[tuple[str, bool]]]:
    nc = await nats.connect(servers=servers, connect_timeout=2, max_reconnect_attempts=2)
    try:
        info = await nc.jetstream(timeout=5).stream_info(RUNS_STREAM)
        cluster = info.cluster
        if cluster is None:
            return None, []
        peers = [(str(p.name), bool(p.current) and not p.offline) for p in cluster.replicas or []]
        return cluster.leader, peers
    finally:
        await nc.close()


def runs_leader(cluster: Cluster) -> str:
    """The stack.json name of the NATS node leading RUNS."""
    leader, _ = asyncio.run(_stream_cluster(cluster.nats_urls()))
    for entry, url in zip(cluster.processes("nats"), cluster.nats_urls(), strict=True):
        if asyncio.run(_server_name(url)) == leader:
            return entry["name"]
    raise RuntimeError(f"no node of stack.json is the RUNS leader {leader!r}")


def wait_replicas_current(
    cluster: Cluster, replicas: int, timeout: float, exclude: frozenset[str] = frozenset()
) -> float:
    """Seconds until RUNS has a leader and ``replicas - 1`` current followers."""
    started = time.monotonic()
    while True:
        try:
            leader, peers = asyncio.run(_stream_cluster(cluster.nats_urls(exclude)))
        except Exception:  # no node answered yet, or no leader elected yet
            leader, peers = None, []
        if leader and len(peers) == replicas - 1 and all(ok for _, ok in peers):
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"RUNS replicas not current in {timeout:g} s: {leader} {peers}")
        time.sleep(0.5)
