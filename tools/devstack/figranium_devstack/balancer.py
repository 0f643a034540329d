"""HAProxy in front of several gateways: what serves PORT when `make run` starts more than one.

The issue's requirements, each met by a line of the configuration below:

- Active health checks: ``GET /api/health`` every second, which answers 200 only while the
  gateway's PostgreSQL answers; two failures take a gateway out of rotation (a killed one
  is gone within about two seconds, as its refused connections fail at once), one success
  brings it back.
- No request lost to a dead gateway: a failed connection is retried on another gateway
  (``retries`` with ``option redispatch``). Only connection failures are retried, never a
  request a gateway may have started on, which could start a run twice.
- Streams pass through unbuffered (HAProxy forwards as data arrives; no compression is
  configured), and the idle timeouts outlast both a synchronous run and the SSE stream's
  heartbeat.
- ``X-Forwarded-For`` carries the client's address as its last entry, in one header line,
  so gateways started with ``TRUST_FORWARDED_FOR=true`` count wrong keys per client, not per
  balancer. HAProxy's own ``option forwardfor`` would add a second header line beside one
  the client sent, and a gateway reads the first line: the client could choose its address.
- ``balance leastconn``: synchronous runs and SSE streams hold a connection for minutes, so
  the gateway with the fewest open connections takes the next one; among equally loaded
  gateways HAProxy takes turns, so short requests still alternate.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
from collections.abc import Mapping
from pathlib import Path

from figranium_common.config import Config
from figranium_devstack.process import ServerProcess

HEALTH_PATH = "/api/health"
# Beyond RUN_TIMEOUT_SECONDS: a synchronous run's answer comes at most 15 s after it
# (routes/runs.py), and the margin covers that with room to spare.
SYNC_MARGIN_SECONDS = 60
# The stream's heartbeat (routes/stream.py) is 15 s; this is far above it.
TUNNEL_SECONDS = 3600
# A check waits this long for /api/health, above its own database probe's timeout.
CHECK_TIMEOUT_SECONDS = 3
WILDCARDS = ("0.0.0.0", "::", "")


def _default(setting: str) -> object:
    return Config.model_fields[setting].default


def _quoted(path: Path) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _address(host: str, port: int) -> str:
    # HAProxy takes everything after the last colon as the port; ipv6@ says what the rest is.
    return f"ipv6@{host}:{port}" if ":" in host else f"{host}:{port}"


class HaproxyBalancer(ServerProcess):
    """HAProxy serving ``port`` and spreading requests over the gateways on 127.0.0.1 at
    ``backends``; its configuration, stats socket and log under ``data_dir``.

    ``env`` (default: this process's environment) gives the gateways' settings the
    balancer follows: ``HOST``, where it listens as a gateway would, and
    ``RUN_TIMEOUT_SECONDS``, which its timeouts outlast.
    """

    name = "haproxy"

    def __init__(
        self,
        data_dir: Path,
        port: int,
        backends: list[int],
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        super().__init__(self.data_dir / "haproxy.log")
        if not backends:
            raise ValueError("the balancer needs at least one gateway port")
        self.port = port
        self.backends = list(backends)
        settings = os.environ if env is None else env
        self.host = settings.get("HOST") or str(_default("host"))
        self.run_timeout = float(
            settings.get("RUN_TIMEOUT_SECONDS") or str(_default("run_timeout_seconds"))
        )
        self.config_file = self.data_dir / "haproxy.cfg"
        self.stats_socket = _socket_path(self.data_dir)

    @staticmethod
    def binary() -> str:
        # Debian installs it in /usr/sbin, which an unprivileged user's PATH may lack.
        found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
        if found is None:
            raise RuntimeError(
                "haproxy not found (needed for more than one gateway): run `make install`"
            )
        return found

    @property
    def server_timeout_seconds(self) -> int:
        """How long a gateway may stay silent on a request: longer than a synchronous run."""
        return int(self.run_timeout) + SYNC_MARGIN_SECONDS

    def server_names(self) -> list[str]:
        """The gateways' names in the configuration, as in stack.json (gateway-1, ...)."""
        return [f"gateway-{number}" for number in range(1, len(self.backends) + 1)]

    def config(self) -> str:
        timeout = f"{self.server_timeout_seconds}s"
        servers = [
            f"    server {name} 127.0.0.1:{port}"
            for name, port in zip(self.server_names(), self.backends, strict=True)
        ]
        lines = [
            "global",
            "    log stdout format raw local0 info",
            f"    stats socket {_quoted(self.stats_socket)} mode 600 level admin",
            "    maxconn 4096",
            # One thread: it shares the machine's cores with every other service.
            "    nbthread 1",
            "",
            "defaults",
            "    mode http",
            "    log global",
            "    option httplog",
            # Only errors, retries and redispatches, not every request.
            "    option dontlog-normal",
            "    option dontlognull",
            "    timeout connect 2s",
            "    timeout http-request 30s",
            f"    timeout client {timeout}",
            f"    timeout server {timeout}",
            f"    timeout tunnel {TUNNEL_SECONDS}s",
            f"    timeout check {CHECK_TIMEOUT_SECONDS}s",
            "    retries 2",
            "    option redispatch 1",
            "",
            "frontend figranium",
            f"    bind {_address(self.host, self.port)}",
            # The address this balancer saw, appended to what the client sent, in one line.
            "    http-request set-header X-Forwarded-For"
            ' "%[req.fhdr(X-Forwarded-For)], %[src]" if { req.fhdr(X-Forwarded-For) -m found }',
            "    http-request set-header X-Forwarded-For %[src]"
            " unless { req.fhdr(X-Forwarded-For) -m found }",
            "    default_backend gateways",
            "",
            "backend gateways",
            "    balance leastconn",
            f"    option httpchk GET {HEALTH_PATH}",
            "    http-check expect status 200",
            "    default-server check inter 1s fall 2 rise 1",
            *servers,
            "",
        ]
        return "\n".join(lines)

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.stats_socket.parent.mkdir(mode=0o700, exist_ok=True)
        self.config_file.write_text(self.config())

    def command(self) -> list[str]:
        """HAProxy in the foreground (``-db``), so a supervisor sees it exit."""
        return [self.binary(), "-db", "-f", str(self.config_file)]

    def is_ready(self) -> bool:
        host = "127.0.0.1" if self.host in WILDCARDS else self.host
        try:
            with socket.create_connection((host, self.port), timeout=1):
                return True
        except OSError:
            return False

    def server_stats(self) -> dict[str, dict[str, str]]:
        """Each gateway's row of HAProxy's statistics, from its stats socket: ``status``
        (``UP``, ``DOWN``, ...), ``stot`` (requests sent to it so far) and the rest of
        ``show stat``'s columns."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.stats_socket))
            sock.sendall(b"show stat\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        header, *rows = answer.decode().removeprefix("# ").splitlines()
        columns = header.split(",")
        stats = {}
        for row in rows:
            fields = dict(zip(columns, row.split(","), strict=False))
            if fields.get("pxname") == "gateways" and fields.get("svname") in self.server_names():
                stats[fields["svname"]] = fields
        return stats


# HAProxy refuses a stats socket path longer than this (a Unix socket's address, less the
# room it needs for the temporary name it binds first).
_MAX_SOCKET_PATH = 97


def _socket_path(data_dir: Path) -> Path:
    """``haproxy.sock`` in ``data_dir``; for a data folder deep enough that the path would
    be too long, in a private folder of the temporary directory named after it."""
    path = data_dir / "haproxy.sock"
    if len(str(path)) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"figranium-haproxy-{digest}" / "haproxy.sock"
