"""Private PostgreSQL and NATS, and the services as processes, all stopped at the end.

Each service is ``python -m figranium_<name>`` with its settings in environment variables
(``figranium_devstack.service``, as the whole-stack tests start them).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Self

import httpx
import psutil
import psycopg

from figranium_devstack.natsserver import LocalNats
from figranium_devstack.ports import free_port
from figranium_devstack.postgres import LocalPostgres
from figranium_devstack.service import Service

API_KEY = "bench-key-0123456789abcdef"


def tree_memory_mb(pid: int) -> dict[str, float]:
    """RSS and PSS of a process and all its descendants, in MiB.

    RSS summed over a process tree counts shared pages (Chromium's binary, shared memory)
    once per process, so PSS, which splits shared pages between their users, is given too.
    """
    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    own_rss = rss = pss = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            info = proc.memory_full_info()
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
            if proc.pid == pid:
                own_rss = info.rss
    mib = 1024 * 1024
    return {
        "rss_mb": round(rss / mib, 1),
        "pss_mb": round(pss / mib, 1),
        "python_rss_mb": round(own_rss / mib, 1),
        "processes": len(procs),
    }


def tree_cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) a process and its descendants have used so far,
    including descendants that already exited and were waited for (Chromium's renderers)."""
    if pid is None:
        return 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            times = proc.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


def own_cpu_s(pid: int) -> float:
    """CPU seconds one process has used so far, without its children."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return float(times.user + times.system)


class MonitoredNats(LocalNats):
    """The bench's NATS server with its HTTP monitoring port (/varz, /jsz) on 127.0.0.1,
    which the capacity phase reads message and storage counts from."""

    def __init__(self, store_dir: Path, port: int, *, log_file: Path) -> None:
        super().__init__(store_dir, port, log_file=log_file)
        self.monitor_port = free_port()

    @property
    def monitor_url(self) -> str:
        return f"http://127.0.0.1:{self.monitor_port}"

    def command(self) -> list[str]:
        # The monitoring port binds to the client address (-a 127.0.0.1).
        return [*super().command(), "-m", str(self.monitor_port)]


class BenchStack:
    """PostgreSQL, NATS and the services of one benchmark run, under ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._exit = contextlib.ExitStack()
        self.services: list[Service] = []
        self._count = 0
        self.postgres: LocalPostgres | None = None
        self.nats: MonitoredNats | None = None
        self.gateway_url = ""

    def __enter__(self) -> Self:
        try:
            # Default durability (fsync on), as `make run` starts it.
            self.postgres = self._exit.enter_context(
                LocalPostgres(self.workdir / "pg", free_port(), log_file=self.workdir / "pg.log")
            )
            self.nats = self._exit.enter_context(
                MonitoredNats(
                    self.workdir / "nats", free_port(), log_file=self.workdir / "nats.log"
                )
            )
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            for service in reversed(self.services):
                with contextlib.suppress(Exception):
                    service.stop(timeout=20)
            self.services.clear()
        finally:
            self._exit.close()

    @property
    def database_url(self) -> str:
        assert self.postgres is not None
        return self.postgres.url

    @property
    def nats_url(self) -> str:
        assert self.nats is not None
        return self.nats.url

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "NATS_URL": self.nats_url,
            "FIGRANIUM_DATA_DIR": str(self.workdir),
            "FIGRANIUM_API_KEY": API_KEY,
            "ALLOW_PRIVATE_NETWORKS": "true",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
            "GATEWAY_METRICS_PORT": "0",
            "RUNNER_METRICS_PORT": "0",
            "SCHEDULER_METRICS_PORT": "0",
            # The gateway benchmark inserts old executions: retention must not delete them.
            "RETENTION_DAYS": "0",
            # One Chromium for a whole batch, as on the raw side: a recycled Chromium's
            # processes leave the runner's process tree, and their CPU with them.
            "RUNNER_BROWSER_MAX_CONTEXTS": "100000",
            **extra,
        }

    def _start(self, name: str, **extra: str) -> Service:
        self._count += 1
        service = Service(name, self.env(**extra), self.workdir / f"{name}-{self._count}.log")
        self.services.append(service)
        return service

    def stop(self, service: Service) -> None:
        service.stop()
        if service in self.services:
            self.services.remove(service)

    def start_gateway(self, **extra: str) -> Service:
        port = free_port()
        service = self._start("gateway", PORT=str(port), HOST="127.0.0.1", **extra)
        self.gateway_url = f"http://127.0.0.1:{port}"
        _wait_http(service, f"{self.gateway_url}/api/health", timeout=90)
        return service

    def start_runner(self, concurrency: int, **extra: str) -> Service:
        # A metrics port of its own only to learn when it is ready: at LOG_LEVEL=WARNING it
        # does not log `runner.ready`, and /readyz also waits for its Chromium.
        port = free_port()
        service = self._start(
            "runner", RUNNER_CONCURRENCY=str(concurrency), RUNNER_METRICS_PORT=str(port), **extra
        )
        _wait_http(service, f"http://127.0.0.1:{port}/readyz", timeout=90)
        return service

    def start_scheduler(self) -> Service:
        service = self._start("scheduler")
        deadline = time.monotonic() + 60
        while True:
            service.check_alive()
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM scheduler_heartbeats WHERE replica_id LIKE %s",
                    (f"%-{service.pid}-%",),
                ).fetchone()
            if row is not None and row[0] > 0:
                return service
            if time.monotonic() > deadline:
                raise RuntimeError(f"scheduler never sent a heartbeat:\n{service.log_tail()}")
            time.sleep(0.2)


def _wait_http(service: Service, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        service.check_alive()
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=5).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{service.name} not ready at {url}:\n{service.log_tail()}")
        time.sleep(0.2)
