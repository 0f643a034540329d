"""The faults, each found through ``stack.json`` and each waiting until the supervisor has
put the broken process back (or the frozen node runs again)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from faults.cluster import Cluster
from faults.leader import runs_leader, wait_replicas_current

REPLICAS = 3


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Callable[[Cluster], None]


def _first(cluster: Cluster, role: str) -> tuple[str, int]:
    entries = cluster.processes(role)
    if not entries:
        raise RuntimeError(f"stack.json lists no {role}")
    return entries[0]["name"], entries[0]["pid"]


def kill_and_wait(cluster: Cluster, role: str, sig: signal.Signals = signal.SIGKILL) -> None:
    name, pid = _first(cluster, role)
    os.kill(pid, sig)
    cluster.wait_restarted(name, pid)


def kill_runs_leader(cluster: Cluster) -> None:
    """SIGKILL the node leading RUNS; the supervisor restarts it on its own store, and it
    catches up as a follower."""
    name = runs_leader(cluster)
    entry = cluster.process(name)
    assert entry is not None
    os.kill(entry["pid"], signal.SIGKILL)
    cluster.wait_restarted(name, entry["pid"])
    wait_replicas_current(cluster, REPLICAS, timeout=120)


def freeze_nats_node(seconds: float) -> Callable[[Cluster], None]:
    """SIGSTOP the node leading RUNS for ``seconds`` (cut off: its sockets stay open but
    nothing answers), then SIGCONT; waits until its replicas are current again."""

    def inject(cluster: Cluster) -> None:
        name = runs_leader(cluster)
        entry = cluster.process(name)
        assert entry is not None
        os.kill(entry["pid"], signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.kill(entry["pid"], signal.SIGCONT)
        wait_replicas_current(cluster, REPLICAS, timeout=120)

    return inject


def matrix(freeze_seconds: float = 30) -> list[Fault]:
    """The six faults of `make faults`, in order."""
    return [
        Fault("nats-leader-killed", kill_runs_leader),
        Fault("gateway-killed", lambda c: kill_and_wait(c, "gateway")),
        Fault("runner-killed", lambda c: kill_and_wait(c, "runner")),
        Fault("scheduler-killed", lambda c: kill_and_wait(c, "scheduler")),
        Fault("postgres-restarted", lambda c: kill_and_wait(c, "postgres", signal.SIGTERM)),
        Fault("nats-node-frozen", freeze_nats_node(freeze_seconds)),
    ]
