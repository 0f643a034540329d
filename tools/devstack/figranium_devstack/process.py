import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self, TypedDict


class PopenOptions(TypedDict, total=False):
    """What a server's process starts with besides its command and output."""

    cwd: Path
    env: dict[str, str]
    user: int
    group: int
    extra_groups: list[int]


class ServerProcess:
    """A server binary run as a child process, with its output appended to a log file."""

    name = "server"
    stop_signal = signal.SIGTERM
    stop_timeout = 10.0

    def __init__(self, log_file: Path) -> None:
        self.log_file = log_file
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Get on-disk state ready before the first start."""

    def is_ready(self) -> bool:
        raise NotImplementedError

    def _popen_options(self) -> PopenOptions:
        return {}

    def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError(f"{self.name} already started")
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_file.open("ab")
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            **self._popen_options(),
        )

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {self._proc.returncode}\n{self.log_tail()}"
                )
            if self.is_ready():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready after {timeout:g}s\n{self.log_tail()}")
            time.sleep(0.1)

    @property
    def pid(self) -> int | None:
        """The process's id while it has been started."""
        return None if self._proc is None else self._proc.pid

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(self.stop_signal)
            try:
                self._proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._reap()

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        self._reap()

    def _reap(self) -> None:
        if self._proc is not None:
            self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, max_bytes: int = 4000) -> str:
        try:
            with self.log_file.open("rb") as log:
                log.seek(max(0, log.seek(0, 2) - max_bytes))
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return f"(no log at {self.log_file})"

    def __enter__(self) -> Self:
        self.prepare()
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
