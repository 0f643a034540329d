"""`python -m figranium_devstack run`: the whole stack under one supervisor, for `make run`."""

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from figranium_devstack.balancer import HaproxyBalancer
from figranium_devstack.cluster import Sizes, instances, nats_nodes
from figranium_devstack.natsserver import LocalNats
from figranium_devstack.ports import free_port, port_is_free
from figranium_devstack.postgres import LocalPostgres
from figranium_devstack.stack_file import STACK_FILE
from figranium_devstack.supervisor import Program, Supervisor

SERVICES = ("gateway", "runner", "scheduler")
# The settings' defaults (figranium_common.config), which this tool does not import.
RUNNER_METRICS_PORT = 9466
NOVNC_PORT = 54311


class Service(NamedTuple):
    """One process of the stack: its name in the output, its module, its environment."""

    name: str
    module: str
    env: dict[str, str]


def headful_requested(environ: Mapping[str, str]) -> bool:
    """``HEADFUL=true`` (or ``1``): the same test as the Makefile's before `make run`."""
    return environ.get("HEADFUL", "").lower() in ("true", "1")


def _choose_ports(
    data_dir: Path, gateway_port: int, *, headful: bool = False, extra: Sequence[str] = ()
) -> dict[str, int]:
    """Reuse last run's ports when possible, so URLs stay stable across restarts.

    With ``headful``, also the noVNC port: its default when free, so a second stack side by
    side gets another one rather than a runner that cannot serve its viewer. ``extra``:
    the names of more ports to choose (a cluster's, :meth:`Sizes.port_names`).
    """
    state_file = data_dir / "devstack.json"
    try:
        saved = json.loads(state_file.read_text())
    except (FileNotFoundError, ValueError):
        saved = {}
    if not isinstance(saved, dict):
        saved = {}
    taken = {gateway_port}
    ports: dict[str, int] = {}
    preferred = {"novnc": NOVNC_PORT} if headful else {}
    for name in (*preferred, "postgres", "nats", *extra):
        candidates = [saved.get(name), preferred.get(name)]
        usable = [p for p in candidates if isinstance(p, int) and p not in taken]
        port = next((p for p in usable if port_is_free(p)), None)
        if port is None:
            port = free_port()
            while port in taken:
                port = free_port()
        ports[name] = port
        taken.add(port)
    # A run without the headful runner keeps the noVNC port chosen for the next one with it.
    state_file.write_text(json.dumps({**saved, **ports}, indent=2) + "\n")
    return ports


def stack_services(
    service_env: Mapping[str, str], *, headful: bool, novnc_port: int | None = None
) -> list[Service]:
    """The Figranium processes `make run` starts; with ``headful``, one headful runner too.

    The headful runner is the runner with RUNNER_HEADFUL=true, one run at a time, and an
    ops port of its own (the runner's + 1), so the two runners' /metrics do not collide.
    NOVNC_PORT is the environment's when set, else ``novnc_port``.
    """
    env = dict(service_env)
    services = [Service(name, f"figranium_{name}", env) for name in SERVICES]
    if not headful:
        return services
    # A RUNNER_HEADFUL=true left in the environment would make both runners fight over
    # the virtual display and the noVNC port.
    services[SERVICES.index("runner")] = Service(
        "runner", "figranium_runner", {**env, "RUNNER_HEADFUL": "false"}
    )
    runner_port = int(env.get("RUNNER_METRICS_PORT") or RUNNER_METRICS_PORT)
    headful_env = {
        **env,
        "RUNNER_HEADFUL": "true",
        "RUNNER_CONCURRENCY": "1",
        # 0 (off) stays off for both runners.
        "RUNNER_METRICS_PORT": str(runner_port + 1 if 0 < runner_port < 65535 else 0),
    }
    if not env.get("NOVNC_PORT"):
        headful_env["NOVNC_PORT"] = str(NOVNC_PORT if novnc_port is None else novnc_port)
    services.append(Service("runner-headful", "figranium_runner", headful_env))
    return services


def with_nats_user(service: Service, nats: LocalNats) -> Service:
    """``service`` connecting to the private NATS as its own user (the headful runner as a
    runner); its NATS_URL stays, as it may list every node of a cluster."""
    role = service.module.removeprefix("figranium_")
    own = {**nats.service_env(role), "NATS_URL": service.env.get("NATS_URL", nats.address)}
    return service._replace(env={**service.env, **own})


def derived_transit_key(service_env: Mapping[str, str]) -> str:
    """The transit key gateway and scheduler derive from the master key (made now in the
    data dir if it is not there yet), for the runners."""
    # Imported here: only `run` needs the services' own code.
    from figranium_common import transit
    from figranium_common.config import Config
    from figranium_common.secretbox import SecretBox

    names = ("FIGRANIUM_DATA_DIR", "FIGRANIUM_MASTER_KEY")
    values = {name: service_env[name] for name in names if service_env.get(name)}
    return transit.transit_key_text(SecretBox.from_config(Config.model_validate(values)))


def without_master_key(service: Service, transit_key: str) -> Service:
    """A runner gets the transit key, which opens only what travels through NATS, and
    never the master key; other services are left as they are."""
    if service.module != "figranium_runner":
        return service
    env = {k: v for k, v in service.env.items() if k != "FIGRANIUM_MASTER_KEY"}
    return service._replace(env={**env, "FIGRANIUM_TRANSIT_KEY": transit_key})


def headful_note(gateway_port: int, novnc_port: str) -> str:
    """How to watch the headful runner, printed when the stack starts."""
    where = "a free port" if novnc_port == "0" else f"port {novnc_port}"
    ticket = f"http://localhost:{gateway_port}/api/headful/ticket"
    return (
        f"Headful runner: watch its runs through noVNC, served on {where}.\n"
        "  While a headful run is on, get a single-use viewer link for it (KEY:\n"
        "  FIGRANIUM_API_KEY, or the key the gateway wrote to api-key in the data folder on\n"
        '  its first start), then open the "url" it answers in a browser:\n'
        f'    curl -s -X POST -H "x-api-key: $KEY" {ticket}'
    )


def numbered(services: list[Service], sizes: Sizes, ports: Mapping[str, int]) -> list[Program]:
    """The services as the processes to run: as many of each as ``sizes`` asks (numbered in
    a cluster), each with its own ports; the headful runner once, as it is."""
    gateway_port = int(services[0].env["PORT"])
    made = []
    by_name = {service.name: service for service in services}
    for instance in instances(sizes, ports, services[0].env, gateway_port):
        service = by_name[instance.role]
        argv = [sys.executable, "-m", service.module]
        env = {**service.env, **instance.env}
        made.append(Program(instance.role, instance.name, argv, env, instance.port))
    for service in services:
        if service.name == "runner-headful":
            argv = [sys.executable, "-m", service.module]
            metrics = int(service.env["RUNNER_METRICS_PORT"]) or None
            made.append(Program("runner", service.name, argv, service.env, metrics))
    return made


def run() -> int:
    port = int(os.environ.get("PORT") or 11345)
    data_dir = Path(os.environ.get("FIGRANIUM_DATA_DIR") or ".data").resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    headful = headful_requested(os.environ)
    sizes = Sizes.from_environ(os.environ)
    novnc = headful and not os.environ.get("NOVNC_PORT")
    ports = _choose_ports(data_dir, port, headful=novnc, extra=sizes.port_names())
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    programs: list[Program] = []

    database_url = os.environ.get("DATABASE_URL")
    if not database_url:
        postgres = LocalPostgres(data_dir / "postgres", ports["postgres"])
        # Done up front so a first-time initdb failure is reported plainly, not mid-stack.
        postgres.ensure_initialised()
        database_url = postgres.url
        argv = [sys.executable, "-m", "figranium_devstack", "postgres"]
        argv += ["--data", str(postgres.data_dir), "--port", str(postgres.port)]
        programs.append(Program("postgres", "postgres", argv, env, postgres.port))

    nats_url = os.environ.get("NATS_URL")
    nodes: list[LocalNats] = []
    if not nats_url:
        # Its users' passwords are made on the first start and kept, 0600, in the data dir.
        nodes = nats_nodes(data_dir, sizes, ports)
        for node in nodes:
            node.prepare()
            name = "nats" if node.cluster is None else node.cluster.name
            nats_env = LocalNats.environment(env)
            programs.append(Program("nats", name, node.command(), nats_env, node.port))
        nats_url = ",".join(node.address for node in nodes)

    service_env = {
        "LOG_FORMAT": "console",
        **env,
        "DATABASE_URL": database_url,
        "NATS_URL": nats_url,
        "PORT": str(port),
        "FIGRANIUM_DATA_DIR": str(data_dir),
    }
    if len(nodes) > 1:
        service_env["NATS_REPLICAS"] = str(len(nodes))
    services = stack_services(service_env, headful=headful, novnc_port=ports.get("novnc"))
    if nodes:
        services = [with_nats_user(service, nodes[0]) for service in services]
    transit_key = os.environ.get("FIGRANIUM_TRANSIT_KEY") or derived_transit_key(service_env)
    services = [without_master_key(service, transit_key) for service in services]
    if sizes.gateways > 1:
        backends = [ports[name] for name in sizes.names("gateway")]
        balancer = HaproxyBalancer(data_dir / "balancer", port, backends, env=service_env)
        balancer.prepare()
        programs.append(Program("balancer", "balancer", balancer.command(), env, port))
    programs += numbered(services, sizes, ports)

    print(f"Figranium gateway will be at http://localhost:{port} (data in {data_dir})", flush=True)
    for service in services:
        if service.name == "runner-headful":
            print(headful_note(port, service.env["NOVNC_PORT"]), flush=True)
    return Supervisor(programs, data_dir / STACK_FILE, restart=sizes.cluster).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m figranium_devstack")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run PostgreSQL, NATS and all services (make run)")
    postgres = commands.add_parser("postgres", help="initialise, then run PostgreSQL")
    postgres.add_argument("--data", type=Path, required=True, help="PGDATA directory")
    postgres.add_argument("--port", type=int, required=True)
    postgres.add_argument("--fast", action="store_true", help="no fsync: for throwaway data")
    args = parser.parse_args(argv)

    if args.command == "postgres":
        return LocalPostgres(args.data, args.port, fast=args.fast).serve()
    return run()


if __name__ == "__main__":
    sys.exit(main())
