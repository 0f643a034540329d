"""The processes of `make run` under one parent: their output interleaved with a name before
each line, all stopped on Ctrl-C (SIGINT) or SIGTERM, and ``stack.json`` kept current.

Two behaviours: with ``restart`` (the cluster), a process that exits is started again after
a short pause that doubles while it keeps failing, as Kubernetes restarts a pod; without
(one of each), the first process to exit stops the others.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

from figranium_devstack.stack_file import StackEntry, write_stack

# Before the first restart, doubled for each exit in a row up to the cap; a process that
# ran for RESET_AFTER seconds starts again from the first pause.
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 10.0
RESET_AFTER = 30.0
# After SIGTERM, the processes still running this much later are killed.
STOP_TIMEOUT = 5.0


@dataclass
class Program:
    """One process to keep running: its role and name in ``stack.json``, its command,
    its environment, its main port."""

    role: str
    name: str
    argv: list[str]
    env: dict[str, str]
    port: int | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None


def backoff(failures: int) -> float:
    """The pause before restarting a process that exited ``failures`` times in a row."""
    return float(min(FIRST_BACKOFF * 2 ** max(failures - 1, 0), MAX_BACKOFF))


class Supervisor:
    """Runs ``programs`` until a signal (or, without ``restart``, until one exits)."""

    def __init__(
        self,
        programs: list[Program],
        stack_file: Path,
        *,
        restart: bool,
        out: IO[str] | None = None,
    ) -> None:
        self.programs = programs
        self.stack_file = stack_file
        self.restart = restart
        self.out = out or sys.stdout
        self.width = max(len(p.name) for p in [*programs, Program("", "system", [], {})])
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._readers: list[threading.Thread] = []

    def print(self, name: str, line: str) -> None:
        with self._lock:
            self.out.write(f"{time.strftime('%H:%M:%S')} {name:<{self.width}} | {line}\n")
            self.out.flush()

    def start(self, program: Program) -> None:
        program.proc = subprocess.Popen(
            program.argv,
            env=program.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Ctrl-C reaches only this process, which stops the others in its own way.
            start_new_session=True,
        )
        program.started_at = time.monotonic()
        program.restart_at = None
        reader = threading.Thread(target=self._relay, args=(program, program.proc), daemon=True)
        reader.start()
        self._readers.append(reader)
        self.print("system", f"{program.name} started (pid={program.proc.pid})")
        self.write_stack()

    def _relay(self, program: Program, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        with proc.stdout:
            for raw in proc.stdout:
                self.print(program.name, raw.decode(errors="replace").rstrip("\n"))

    def write_stack(self) -> None:
        entries: list[StackEntry] = [
            {"role": p.role, "name": p.name, "pid": p.proc.pid, "port": p.port}
            for p in self.programs
            if p.proc is not None and p.proc.poll() is None
        ]
        write_stack(self.stack_file, entries)

    def stop(self, signum: int = signal.SIGTERM, _frame: FrameType | None = None) -> None:
        """Ask the loop to stop every process (a signal handler)."""
        self._stopping.set()

    def run(self) -> int:
        """Start everything, supervise, stop everything; the exit code of the stack."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self.stop)
        returncode = 0
        try:
            for program in self.programs:
                self.start(program)
            while not self._stopping.wait(0.1):
                exited = self._reap()
                if exited is not None and not self.restart:
                    returncode = exited
                    break
                self._restart_due()
        finally:
            self._stop_all()
        return returncode

    def _reap(self) -> int | None:
        """Note processes that exited; the code of the last one, None when none did."""
        code = None
        for program in self.programs:
            if program.proc is None or (rc := program.proc.poll()) is None:
                continue
            program.proc = None
            code = rc
            self.print("system", f"{program.name} stopped (rc={rc})")
            if time.monotonic() - program.started_at >= RESET_AFTER:
                program.failures = 0
            program.failures += 1
            if self.restart:
                pause = backoff(program.failures)
                program.restart_at = time.monotonic() + pause
                self.print("system", f"{program.name} restarts in {pause:g}s")
            self.write_stack()
        return code

    def _restart_due(self) -> None:
        now = time.monotonic()
        for program in self.programs:
            if program.restart_at is not None and program.restart_at <= now:
                self.start(program)

    def _stop_all(self) -> None:
        running = [p for p in self.programs if p.proc is not None and p.proc.poll() is None]
        for program in running:
            assert program.proc is not None
            program.proc.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for program in self.programs:
            if program.proc is None:
                continue
            try:
                rc = program.proc.wait(max(deadline - time.monotonic(), 0))
            except subprocess.TimeoutExpired:
                program.proc.kill()
                rc = program.proc.wait()
            self.print("system", f"{program.name} stopped (rc={rc})")
            program.proc = None
        for reader in self._readers:
            reader.join(timeout=5)
        self.stack_file.unlink(missing_ok=True)
