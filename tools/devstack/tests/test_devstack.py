import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nats
import psycopg

from figranium_devstack.__main__ import _choose_ports
from figranium_devstack.natsserver import LocalNats
from figranium_devstack.ports import ephemeral_range, free_port
from figranium_devstack.postgres import LocalPostgres


def test_postgres_keeps_data_across_restarts(tmp_path: Path) -> None:
    data_dir = tmp_path / "pgdata"
    first = LocalPostgres(data_dir, free_port(), fast=True)
    with first, psycopg.connect(first.url, autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        conn.execute("CREATE TABLE kept (value text)")
        conn.execute("INSERT INTO kept VALUES ('hello')")

    with LocalPostgres(data_dir, free_port(), fast=True) as pg, psycopg.connect(pg.url) as conn:
        assert conn.execute("SELECT value FROM kept").fetchall() == [("hello",)]


def test_postgres_reports_startup_failure(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        pg = LocalPostgres(tmp_path / "pgdata", blocker.getsockname()[1], fast=True)
        pg.ensure_initialised()
        pg.start()
        try:
            pg.wait_ready(timeout=15)
        except RuntimeError as exc:
            assert "postgres exited" in str(exc)
        else:
            raise AssertionError("postgres started on a port that was taken")
        finally:
            pg.stop()


async def test_nats_with_jetstream(tmp_path: Path) -> None:
    with LocalNats(tmp_path / "nats", free_port()) as server:
        client = await nats.connect(server.url)
        try:
            info = await client.jetstream().account_info()
            assert info.streams == 0
        finally:
            await client.close()


def test_nats_runs_on_one_go_processor_unless_told_otherwise(tmp_path: Path) -> None:
    assert LocalNats.environment({"PATH": "/bin"}) == {"PATH": "/bin", "GOMAXPROCS": "1"}
    assert LocalNats.environment({"GOMAXPROCS": "4"})["GOMAXPROCS"] == "4"
    with LocalNats(tmp_path / "nats", free_port()) as server:
        assert server.pid is not None
        environ = Path(f"/proc/{server.pid}/environ").read_bytes().split(b"\0")
    assert f"GOMAXPROCS={os.environ.get('GOMAXPROCS') or 1}".encode() in environ


def test_free_port_returns_distinct_usable_ports_outside_the_outgoing_range() -> None:
    ports = {free_port() for _ in range(5)}
    assert len(ports) == 5
    low, high = ephemeral_range()
    for port in ports:
        assert not low <= port <= high  # no outgoing connection can take it meanwhile
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_the_outgoing_range_is_read_or_defaults(tmp_path: Path) -> None:
    given = tmp_path / "range"
    given.write_text("40000\t50000\n")
    assert ephemeral_range(given) == (40000, 50000)
    assert ephemeral_range(tmp_path / "missing") == (32768, 60999)


def test_postgres_cli_stops_on_sigterm_despite_idle_client(tmp_path: Path) -> None:
    # The supervisor stops processes with SIGTERM and SIGKILLs them 5 s later; an idle
    # client must not hold PostgreSQL's smart shutdown open that long.
    pg = LocalPostgres(tmp_path / "pgdata", free_port(), fast=True)
    argv = [sys.executable, "-m", "figranium_devstack", "postgres", "--fast"]
    argv += ["--data", str(pg.data_dir), "--port", str(pg.port)]
    quiet = subprocess.DEVNULL
    with subprocess.Popen(argv, stdout=quiet, stderr=quiet, start_new_session=True) as proc:
        try:
            deadline = time.monotonic() + 30
            while not pg.is_ready():
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
            with psycopg.connect(pg.url):  # stays idle through the shutdown
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=4.5) == 0
        finally:
            if proc.poll() is None:  # the postmaster shares the wrapper's process group
                os.killpg(proc.pid, signal.SIGKILL)


def test_devstack_ports_are_kept_between_runs(tmp_path: Path) -> None:
    first = _choose_ports(tmp_path, gateway_port=11345)
    assert len({*first.values(), 11345}) == 3
    assert _choose_ports(tmp_path, gateway_port=11345) == first
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", first["nats"]))
        busy.listen()
        moved = _choose_ports(tmp_path, gateway_port=11345)
    assert moved["postgres"] == first["postgres"]
    assert moved["nats"] != first["nats"]
