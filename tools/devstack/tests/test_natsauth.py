"""The private NATS server refuses anonymous clients and holds each service to its subjects."""

import asyncio
import json
import socket
import stat
from collections.abc import Mapping
from pathlib import Path

import nats
import pytest
from nats.js.api import StreamConfig

from figranium_common import transit
from figranium_common.config import Config
from figranium_common.nats import inbox_prefix
from figranium_common.secretbox import SecretBox
from figranium_devstack import natsauth
from figranium_devstack.__main__ import (
    derived_transit_key,
    stack_services,
    with_nats_user,
    without_master_key,
)
from figranium_devstack.natsserver import LocalNats
from figranium_devstack.ports import free_port


def _hello(port: int, connect: Mapping[str, object]) -> bytes:
    """The server's answer to CONNECT then PING, spoken over a plain socket."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        stream = sock.makefile("rwb")
        assert stream.readline().startswith(b"INFO ")
        stream.write(b"CONNECT " + json.dumps({"verbose": False, **connect}).encode() + b"\r\n")
        stream.write(b"PING\r\n")
        stream.flush()
        return stream.readline()


async def test_anonymous_clients_and_wrong_passwords_are_refused(tmp_path: Path) -> None:
    with LocalNats(tmp_path / "nats", free_port()) as server:
        assert _hello(server.port, {}).startswith(b"-ERR 'Authorization Violation'")
        wrong = {"user": "runner", "pass": "wrong"}
        assert _hello(server.port, wrong).startswith(b"-ERR 'Authorization Violation'")
        right = {"user": "runner", "pass": server.passwords["runner"]}
        assert _hello(server.port, right) == b"PONG\r\n"


def test_passwords_are_kept_private_and_outside_the_store(tmp_path: Path) -> None:
    first = LocalNats(tmp_path / "nats", free_port())
    first.prepare()
    for path in (first.users_file, first.config_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert not path.is_relative_to(first.store_dir)
    # The same passwords on the next start, so a restarted server admits the services.
    assert LocalNats(tmp_path / "nats", free_port()).passwords == first.passwords
    env = first.service_env("runner")
    assert env == {
        "NATS_URL": first.address,
        "NATS_USER": "runner",
        "NATS_PASSWORD": first.passwords["runner"],
    }


async def test_a_runner_cannot_queue_runs_declare_streams_nor_read_other_replies(
    tmp_path: Path,
) -> None:
    with LocalNats(tmp_path / "nats", free_port()) as server:
        admin = await nats.connect(server.url)
        admin_js = admin.jetstream()
        await admin_js.add_stream(StreamConfig(name="RUNS", subjects=["figranium.runs.v1.>"]))
        errors: list[Exception] = []

        async def on_error(exc: Exception) -> None:
            errors.append(exc)

        runner = await nats.connect(
            server.address,
            user="runner",
            password=server.passwords["runner"],
            error_cb=on_error,
            allow_reconnect=False,
            inbox_prefix=inbox_prefix("runner"),
        )
        scheduler = await nats.connect(
            server.url_for("scheduler"), inbox_prefix=inbox_prefix("scheduler")
        )
        try:
            js = runner.jetstream(timeout=1)
            with pytest.raises(nats.errors.TimeoutError):
                await js.publish("figranium.runs.v1.default", b'{"executionId": "x"}')
            with pytest.raises(nats.errors.TimeoutError):
                await js.add_stream(StreamConfig(name="MINE", subjects=["figranium.runs.v2.>"]))
            # Nor read the replies the gateway gets (pulled messages, objects, API answers).
            await runner.subscribe(f"{inbox_prefix('gateway')}.>")
            await runner.flush()
            # The server's refusals come before the flush's answer; their callbacks are tasks.
            for _ in range(200):
                if len(errors) >= 3:
                    break
                await asyncio.sleep(0.05)
            violations = [
                str(e).lower() for e in errors if "permissions violation" in str(e).lower()
            ]
            assert any('"figranium.runs.v1.default"' in v for v in violations), errors
            assert any("$js.api.stream.create.mine" in v for v in violations), errors
            assert any('subscription to "_inbox_gateway.>"' in v for v in violations), errors
            assert (await admin_js.stream_info("RUNS")).state.messages == 0
            # The scheduler may queue runs: the positive control.
            await scheduler.jetstream().publish("figranium.runs.v1.default", b"{}")
            assert (await admin_js.stream_info("RUNS")).state.messages == 1
        finally:
            for client in (runner, scheduler, admin):
                await client.close()


def test_the_authorization_block_names_every_role_once() -> None:
    block = natsauth.authorization_block({role: f"${role.upper()}" for role in natsauth.ROLES})
    for role in natsauth.ROLES:
        assert block.count(f'{{user: "{role}", password: ${role.upper()},') == 1


def test_make_run_gives_each_service_its_nats_user_and_runners_no_master_key(
    tmp_path: Path,
) -> None:
    env = {
        "NATS_URL": "nats://127.0.0.1:5998",
        "FIGRANIUM_DATA_DIR": str(tmp_path),
        "FIGRANIUM_MASTER_KEY": "m" * 40,
    }
    nats_server = LocalNats(tmp_path / "nats", free_port())
    key = derived_transit_key(env)
    services = [
        without_master_key(with_nats_user(service, nats_server), key)
        for service in stack_services(env, headful=True, novnc_port=0)
    ]
    users = {service.name: service.env["NATS_USER"] for service in services}
    assert users == {
        "gateway": "gateway",
        "runner": "runner",
        "scheduler": "scheduler",
        "runner-headful": "runner",
    }
    for service in services:
        assert service.env["NATS_PASSWORD"] == nats_server.passwords[users[service.name]]
        runner = service.module == "figranium_runner"
        assert ("FIGRANIUM_MASTER_KEY" in service.env) is not runner, service.name
        assert ("FIGRANIUM_TRANSIT_KEY" in service.env) is runner, service.name
    master = SecretBox.from_config(Config.model_validate(env))
    assert key == transit.transit_key_text(master)
