"""NATS_PING_INTERVAL_SECONDS and NATS_MAX_OUTSTANDING_PINGS: a service gives up a server
that stopped answering (frozen with SIGSTOP, as a node cut off from the network) after a
few unanswered pings, rather than the client's default of minutes."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from figranium_common import nats as topology
from figranium_common.config import Config
from figranium_devstack.natsserver import LocalNats
from figranium_devstack.ports import free_port


def test_the_settings_reach_the_connection_options() -> None:
    config = Config.model_validate(
        {"NATS_PING_INTERVAL_SECONDS": "2", "NATS_MAX_OUTSTANDING_PINGS": "3"}
    )
    auth = topology.NatsAuth.from_config(config)
    assert (auth.ping_interval_seconds, auth.max_outstanding_pings) == (2, 3)
    default = topology.NatsAuth.from_config(Config.model_validate({}))
    assert (default.ping_interval_seconds, default.max_outstanding_pings) == (120, 2)


async def test_a_frozen_server_is_given_up_after_the_unanswered_pings(tmp_path: Path) -> None:
    with LocalNats(tmp_path / "nats", free_port()) as server:
        config = Config.model_validate(
            {"NATS_PING_INTERVAL_SECONDS": "1", "NATS_MAX_OUTSTANDING_PINGS": "1"}
        )
        auth = topology.NatsAuth.from_config(config)
        nc = await topology.connect(server.url, name="test", wait_seconds=5, auth=auth)
        pid = server.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            async with asyncio.timeout(15):
                while nc.is_connected:  # noqa: ASYNC110 - the client's own state
                    await asyncio.sleep(0.1)
        finally:
            os.kill(pid, signal.SIGCONT)
        # Back once the server answers again.
        async with asyncio.timeout(15):
            while not nc.is_connected:  # noqa: ASYNC110 - the client's own state
                await asyncio.sleep(0.1)
        await topology.close(nc)
