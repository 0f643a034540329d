"""A cluster started as `make run` starts it (``python -m figranium_devstack run`` with the
sizes in its environment), in a data folder of its own, and its processes as ``stack.json``
lists them: the only way the faults find what to break."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

import httpx
import nats

from figranium_common.nats import SCHEDULES_NOTIFY_SUBJECT
from figranium_devstack.ports import free_port
from figranium_devstack.stack_file import STACK_FILE, StackEntry, read_stack

API_KEY = "faults-key-0123456789abcdef"
# Settings every fault stack shares: the browserless runner, loopback webhooks and pages,
# and a runner's run redelivered within seconds of its runner dying.
BASE_ENV = {
    "RUNNER_ENGINE": "null",
    "ALLOW_PRIVATE_NETWORKS": "true",
    "RUN_ACK_WAIT_SECONDS": "6",
    "RUN_MAX_DELIVER": "5",
    "RUN_TIMEOUT_SECONDS": "20",
    "WEBHOOK_POLL_SECONDS": "0.5",
    "SCHEDULER_METRICS_PORT": "0",
    "LOG_LEVEL": "WARNING",
}


class Cluster:
    """One `make run` stack under ``data_dir``, stopped (its whole process group) on exit."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.env = env
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}", headers={"x-api-key": API_KEY}, timeout=60
        )

    def __enter__(self) -> Self:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        inherited = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NATS_URL")}
        env = {
            **inherited,
            **BASE_ENV,
            "PORT": str(self.port),
            "FIGRANIUM_DATA_DIR": str(self.data_dir),
            "FIGRANIUM_API_KEY": API_KEY,
            **self.env,
        }
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "figranium_devstack", "run"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.client.close()
        if self.proc is None or self.proc.poll() is not None:
            return
        # Ctrl-C as a terminal sends it; then whatever is left of the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def processes(self, role: str | None = None) -> list[StackEntry]:
        path = self.data_dir / STACK_FILE
        try:
            entries = read_stack(path)
        except (FileNotFoundError, ValueError, KeyError):
            return []
        return [e for e in entries if role is None or e["role"] == role]

    def process(self, name: str) -> StackEntry | None:
        return next((e for e in self.processes() if e["name"] == name), None)

    def wait_ready(self, roles: dict[str, int], timeout: float = 180) -> None:
        """Until the gateway answers through PORT and ``stack.json`` lists ``roles``' counts."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"make run exited:\n{self.log_tail()}")
            listed = all(len(self.processes(r)) >= n for r, n in roles.items())
            if listed and healthy(self.client):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster not ready in {timeout:g} s:\n{self.log_tail()}")
            time.sleep(0.5)

    def wait_restarted(self, name: str, old_pid: int, timeout: float = 120) -> float:
        """Seconds until ``stack.json`` lists ``name`` with a pid other than ``old_pid``."""
        started = time.monotonic()
        while True:
            entry = self.process(name)
            if entry is not None and entry["pid"] != old_pid and pid_alive(entry["pid"]):
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"{name} was not restarted in {timeout:g} s")
            time.sleep(0.2)

    @property
    def database_url(self) -> str:
        (postgres,) = self.processes("postgres")
        return f"postgresql://postgres@127.0.0.1:{postgres['port']}/postgres"

    def admin_password(self) -> str:
        """The NATS ``admin`` user's password, from the users file `make run` keeps in the
        data folder."""
        for path in sorted(self.data_dir.glob("*users.json")):
            users = json.loads(path.read_text())
            if isinstance(users, dict) and isinstance(users.get("admin"), str):
                return str(users["admin"])
        raise RuntimeError(f"no NATS users file with an admin in {self.data_dir}")

    def nats_urls(self, exclude: frozenset[str] = frozenset()) -> list[str]:
        password = self.admin_password()
        return [
            f"nats://admin:{password}@127.0.0.1:{e['port']}"
            for e in self.processes("nats")
            if e["name"] not in exclude
        ]

    def notify_schedules(self) -> None:
        """Wake the schedulers, as the gateway does after a schedule changes."""
        asyncio.run(_publish(self.nats_urls(), SCHEDULES_NOTIFY_SUBJECT))


async def _publish(servers: list[str], subject: str) -> None:
    nc = await nats.connect(servers=servers, connect_timeout=2, max_reconnect_attempts=2)
    try:
        await nc.publish(subject, b"")
        await nc.flush(timeout=5)
    finally:
        await nc.close()


def healthy(client: httpx.Client) -> bool:
    try:
        return client.get("/api/health", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
