"""`make run` as a cluster: three NATS nodes, two gateways behind the balancer, every process
in stack.json, replicated streams, and a killed gateway restarted while PORT keeps serving."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import pytest

from figranium_common.nats import subjects
from figranium_devstack.ports import free_port
from figranium_devstack.stack_file import StackEntry, read_stack
from tests.integration.stack import API_KEY, wait_until

pytestmark = pytest.mark.stack  # starts a whole stack of its own

SIZES = {"NATS_NODES": "3", "GATEWAYS": "2", "RUNNERS": "1", "SCHEDULERS": "1"}
REPLICATED = (
    subjects.RUNS_STREAM,
    subjects.EVENTS_STREAM,
    subjects.DEAD_STREAM,
    subjects.STOPS_STREAM,
    *(f"OBJ_{b}" for b in (subjects.CAPTURES_BUCKET, subjects.RESULTS_BUCKET)),
    f"OBJ_{subjects.CABINETS_BUCKET}",
)


class Cluster:
    """`python -m figranium_devstack run` with the cluster's sizes, in its own process group."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.log_path = data_dir.parent / "cluster.log"
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NATS_URL")}
        env |= SIZES | {
            "PORT": str(self.port),
            "FIGRANIUM_DATA_DIR": str(data_dir),
            "FIGRANIUM_API_KEY": API_KEY,
            "RUNNER_ENGINE": "null",
            "ALLOW_PRIVATE_NETWORKS": "true",
            "SCHEDULER_METRICS_PORT": "0",
        }
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "figranium_devstack", "run"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}", headers={"x-api-key": API_KEY}, timeout=30
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def healthy(self) -> bool:
        assert self.proc.poll() is None, self.log()
        try:
            return self.client.get("/api/health").status_code == 200
        except httpx.TransportError:
            return False

    def processes(self) -> dict[str, StackEntry]:
        return {entry["name"]: entry for entry in read_stack(self.data_dir / "stack.json")}

    def stop(self) -> int:
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.client.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(tmp_path / "data")
    yield made
    if made.proc.poll() is None:
        made.stop()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def stream_replicas(servers: list[str], password: str) -> dict[str, int]:
    nc = await nats.connect(servers, user="admin", password=password)
    try:
        js = nc.jetstream()
        found = {}
        for name in REPLICATED:
            info = await js.stream_info(name)
            assert info.cluster is not None and info.cluster.leader, name
            found[name] = 1 + len(info.cluster.replicas or [])
        return found
    finally:
        await nc.close()


def test_cluster_runs_through_the_balancer_and_restarts_a_killed_gateway(
    cluster: Cluster,
) -> None:
    try:
        wait_until(cluster.healthy, 90, "the cluster's PORT to answer")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{cluster.log()}") from None
    wait_until(lambda: "runner.ready" in cluster.log_path.read_text(), 60, "the runner")

    processes = cluster.processes()
    roles = sorted(entry["role"] for entry in processes.values())
    expected = ["postgres", "balancer", "runner", "scheduler", *["nats"] * 3, *["gateway"] * 2]
    assert roles == sorted(expected), processes
    assert {n for n in processes if n.startswith(("nats", "gateway"))} == {
        "nats-1", "nats-2", "nats-3", "gateway-1", "gateway-2"
    }  # fmt: skip
    assert processes["balancer"]["port"] == cluster.port
    assert all(alive(entry["pid"]) for entry in processes.values())
    ports = [e["port"] for e in processes.values() if e["role"] != "scheduler"]
    assert len(set(ports)) == len(ports), "each process its own port"

    nats_ports = [processes[f"nats-{n}"]["port"] for n in (1, 2, 3)]
    password = json.loads((cluster.data_dir / "nats-users.json").read_text())["admin"]
    servers = [f"nats://127.0.0.1:{port}" for port in nats_ports]
    replicas = asyncio.run(stream_replicas(servers, password))
    assert replicas == dict.fromkeys(REPLICATED, 3)

    # The null engine opens no page: the run's URL is never fetched.
    task = {"id": "clustered", "url": "http://127.0.0.1:9/"}
    assert cluster.client.post("/api/tasks", json=task).status_code == 200
    run = cluster.client.post("/api/tasks/clustered/api", json={})
    assert run.status_code == 200, run.text
    assert "executionId" in run.json()["data"]

    old = processes["gateway-1"]["pid"]
    os.kill(old, signal.SIGKILL)
    answers = []

    def restarted() -> bool:
        # A new connection each time, as a new client comes: one kept alive across the
        # kill may be closed by the balancer, for its client to retry.
        answers.append(httpx.get(f"http://127.0.0.1:{cluster.port}/api/health").status_code)
        entry = cluster.processes().get("gateway-1")
        return entry is not None and entry["pid"] != old and alive(entry["pid"])

    wait_until(restarted, 30, "gateway-1 restarted with a new pid in stack.json")
    assert set(answers) == {200}, answers  # the balancer served PORT from gateway-2 meanwhile
    assert "gateway-1 restarts in" in cluster.log_path.read_text()
    wait_until(cluster.healthy, 30, "PORT to answer after the restart")
    again = cluster.client.post("/api/tasks/clustered/api", json={})
    assert again.status_code == 200, again.text

    assert cluster.stop() == 0
    assert not (cluster.data_dir / "stack.json").exists()
