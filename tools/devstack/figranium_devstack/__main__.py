"""`python -m figranium_devstack run`: the whole stack under one supervisor, for `make run`."""

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from honcho.manager import Manager

from figranium_devstack.natsserver import LocalNats
from figranium_devstack.ports import free_port, port_is_free
from figranium_devstack.postgres import LocalPostgres

SERVICES = ("gateway", "runner", "scheduler")


def _choose_ports(data_dir: Path, gateway_port: int) -> dict[str, int]:
    """Reuse last run's ports when possible, so URLs stay stable across restarts."""
    state_file = data_dir / "devstack.json"
    try:
        saved = json.loads(state_file.read_text())
    except (FileNotFoundError, ValueError):
        saved = {}
    taken = {gateway_port}
    ports: dict[str, int] = {}
    for name in ("postgres", "nats"):
        port = saved.get(name) if isinstance(saved, dict) else None
        if not isinstance(port, int) or port in taken or not port_is_free(port):
            port = free_port()
            while port in taken:
                port = free_port()
        ports[name] = port
        taken.add(port)
    state_file.write_text(json.dumps(ports, indent=2) + "\n")
    return ports


def _shell(*argv: str) -> str:
    # honcho runs commands through sh; exec lets its signals reach our process, not just the shell.
    return "exec " + shlex.join(argv)


def run() -> int:
    port = int(os.environ.get("PORT") or 11345)
    data_dir = Path(os.environ.get("FIGRANIUM_DATA_DIR") or ".data").resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    ports = _choose_ports(data_dir, port)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    manager = Manager()

    database_url = os.environ.get("DATABASE_URL")
    if not database_url:
        postgres = LocalPostgres(data_dir / "postgres", ports["postgres"])
        # Done up front so a first-time initdb failure is reported plainly, not mid-stack.
        postgres.ensure_initialised()
        database_url = postgres.url
        argv = [sys.executable, "-m", "figranium_devstack", "postgres"]
        argv += ["--data", str(postgres.data_dir), "--port", str(postgres.port)]
        manager.add_process("postgres", _shell(*argv), env=env)

    nats_url = os.environ.get("NATS_URL")
    if not nats_url:
        nats = LocalNats(data_dir / "nats", ports["nats"])
        nats.prepare()
        nats_url = nats.url
        manager.add_process("nats", _shell(*nats.command()), env=env)

    service_env = {
        "LOG_FORMAT": "console",
        **env,
        "DATABASE_URL": database_url,
        "NATS_URL": nats_url,
        "PORT": str(port),
        "FIGRANIUM_DATA_DIR": str(data_dir),
    }
    for service in SERVICES:
        manager.add_process(
            service, _shell(sys.executable, "-m", f"figranium_{service}"), env=service_env
        )

    print(f"Figranium gateway will be at http://localhost:{port} (data in {data_dir})", flush=True)
    manager.loop()
    return int(manager.returncode or 0)


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
