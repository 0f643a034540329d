"""``make run``'s supervisor: the whole stack from one command, side by side, restartable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from figranium_devstack.ports import free_port
from tests.integration.stack import API_KEY

pytestmark = pytest.mark.stack  # every test here starts services of its own


class DevStack:
    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self.log_path = data_dir.parent / f"{data_dir.name}-{port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"x-api-key": API_KEY}, timeout=60
        )

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NATS_URL")} | {
            "PORT": str(self.port),
            "FIGRANIUM_DATA_DIR": str(self.data_dir),
            "FIGRANIUM_API_KEY": API_KEY,
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

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 120) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()[-4000:]
            try:
                if self.client.get("/api/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"stack never became healthy:\n{self.log()[-4000:]}")

    def wait_started(self, timeout: float = 60) -> None:
        """Every service up, not only the gateway: Ctrl-C comes after start-up here."""
        deadline = time.monotonic() + timeout
        while not all(f"{name}.ready" in self.log() for name in ("runner", "scheduler")):
            assert time.monotonic() < deadline, self.log()[-4000:]
            time.sleep(0.2)

    def interrupt(self) -> int:
        """Ctrl-C, as a terminal sends it: SIGINT to the whole process group."""
        assert self.proc is not None
        self.wait_started()
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)

    def leftovers(self) -> list[str]:
        """Processes still running with this stack's data folder or port in their arguments."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(self.data_dir) in cmdline and "pytest" not in cmdline:
                found.append(cmdline)
        return found


@pytest.fixture
def stacks(tmp_path: Path) -> Iterator[list[DevStack]]:
    made = [DevStack(tmp_path / "a", free_port()), DevStack(tmp_path / "b", free_port())]
    yield made
    for stack in made:
        if stack.proc is not None and stack.proc.poll() is None:
            stack.interrupt()
        stack.client.close()


def test_two_stacks_side_by_side_and_data_survives_restart(
    stacks: list[DevStack], site: str
) -> None:
    first, second = stacks
    first.start()
    second.start()
    first.wait_healthy()
    second.wait_healthy()

    task = {
        "id": "persisted",
        "url": f"{site}/form",
        "extractionScript": "return document.title",
    }
    assert first.client.post("/api/tasks", json=task).status_code == 200
    run = first.client.post("/api/tasks/persisted/api", json={})
    assert run.status_code == 200, run.text
    assert run.json()["data"] == "Form"
    assert second.client.get("/api/tasks/persisted").status_code == 404  # separate data

    log = first.log()
    for name in ("postgres", "nats", "gateway", "runner", "scheduler"):
        assert f" {name} " in log and f"{name} started" in log, f"no prefixed output of {name}"

    for stack in (first, second):
        assert stack.interrupt() == 0
        for name in ("postgres", "nats", "gateway", "runner", "scheduler"):
            assert f"{name} stopped (rc=0)" in stack.log(), stack.log()[-3000:]
    deadline = time.monotonic() + 10
    while (first.leftovers() or second.leftovers()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert first.leftovers() == [] and second.leftovers() == []

    first.start()
    first.wait_healthy()
    assert first.client.get("/api/tasks/persisted").json()["id"] == "persisted"
    first.interrupt()
