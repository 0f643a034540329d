"""The sizes of `make run` (NATS_NODES, GATEWAYS, RUNNERS, SCHEDULERS) and what they mean:
the ports each process needs, the NATS nodes of a cluster, the settings of each service.

One of each is the plain stack; any size above one is the cluster, where each process has
a numbered name (gateway-1, ...), the gateways sit behind a balancer on PORT when there are
several, and every runner and scheduler gets metrics ports of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from figranium_devstack.natsserver import ClusterNode, LocalNats

NATS_NODE_COUNTS = (1, 3)
# Each service's metrics port setting and its default (figranium_common.config, which this
# tool does not import).
_METRICS = {
    "gateway": ("GATEWAY_METRICS_PORT", 9465),
    "runner": ("RUNNER_METRICS_PORT", 9466),
    "scheduler": ("SCHEDULER_METRICS_PORT", 9464),
}


def _count(environ: Mapping[str, str], name: str) -> int:
    text = environ.get(name) or "1"
    try:
        value = int(text)
    except ValueError:
        raise SystemExit(f"{name}={text!r}: a whole number is needed") from None
    if value < 1:
        raise SystemExit(f"{name}={value}: at least 1 is needed")
    return value


@dataclass(frozen=True)
class Sizes:
    """How many of each process `make run` starts."""

    nats_nodes: int = 1
    gateways: int = 1
    runners: int = 1
    schedulers: int = 1

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Sizes:
        sizes = cls(
            *(_count(environ, name) for name in ("NATS_NODES", "GATEWAYS", "RUNNERS", "SCHEDULERS"))
        )
        if sizes.nats_nodes not in NATS_NODE_COUNTS:
            raise SystemExit(f"NATS_NODES={sizes.nats_nodes}: 1 or 3")
        return sizes

    @property
    def cluster(self) -> bool:
        return max(self.nats_nodes, self.gateways, self.runners, self.schedulers) > 1

    def count(self, role: str) -> int:
        counts = {"gateway": self.gateways, "runner": self.runners}
        return counts.get(role, self.schedulers)

    def names(self, role: str) -> list[str]:
        """The processes of ``role`` (gateway, runner, scheduler): numbered in a cluster."""
        if not self.cluster:
            return [role]
        return [f"{role}-{number}" for number in range(1, self.count(role) + 1)]

    def port_names(self) -> list[str]:
        """The ports to choose besides PostgreSQL's and the first NATS node's (``nats``)."""
        names = []
        if self.nats_nodes > 1:
            names += [f"nats-{n}" for n in range(2, self.nats_nodes + 1)]
            names += [f"nats-route-{n}" for n in range(1, self.nats_nodes + 1)]
        if self.cluster:
            for role in _METRICS:
                names += [f"{name}-metrics" for name in self.names(role)]
        if self.gateways > 1:
            names += self.names("gateway")
        return names


def nats_nodes(data_dir: Path, sizes: Sizes, ports: Mapping[str, int]) -> list[LocalNats]:
    """The private NATS: one server in ``data_dir/nats``, or a cluster's nodes in
    ``nats-1``... sharing one users file, each routed to the others."""
    if sizes.nats_nodes == 1:
        return [LocalNats(data_dir / "nats", ports["nats"])]
    client = [ports["nats"], *(ports[f"nats-{n}"] for n in range(2, sizes.nats_nodes + 1))]
    routes = [ports[f"nats-route-{n}"] for n in range(1, sizes.nats_nodes + 1)]
    nodes = []
    for index, (port, route) in enumerate(zip(client, routes, strict=True)):
        name = f"nats-{index + 1}"
        peers = [p for p in routes if p != route]
        nodes.append(
            LocalNats(
                data_dir / name,
                port,
                log_file=data_dir / f"{name}.log",
                cluster=ClusterNode(name, route, peers),
                users_file=data_dir / "nats-users.json",
            )
        )
    return nodes


@dataclass(frozen=True)
class Instance:
    """One process of a service: its name, its settings beyond the shared ones, its port
    in stack.json (a gateway's PORT, a runner's or scheduler's metrics port)."""

    role: str
    name: str
    env: dict[str, str]
    port: int | None


def instances(
    sizes: Sizes, ports: Mapping[str, int], env: Mapping[str, str], gateway_port: int
) -> list[Instance]:
    """Every service process of the stack. In a cluster, each gets metrics ports of its own
    (off stays off: a setting of 0), and several gateways their own PORT, trusting the
    balancer's X-Forwarded-For."""
    made = []
    for role, (setting, default) in _METRICS.items():
        for name in sizes.names(role):
            own: dict[str, str] = {}
            if sizes.cluster and env.get(setting) != "0":
                own[setting] = str(ports[f"{name}-metrics"])
            if role == "gateway" and sizes.gateways > 1:
                own |= {"PORT": str(ports[name]), "TRUST_FORWARDED_FOR": "true"}
            metrics = int(own.get(setting) or env.get(setting) or default)
            port = int(own.get("PORT", gateway_port)) if role == "gateway" else metrics
            made.append(Instance(role, name, own, port or None))
    return made
