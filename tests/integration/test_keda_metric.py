"""KEDA's runner trigger, checked against the metric a running NATS really exposes.

The ScaledObject in deploy/k8s/base/runner.yaml names an account, a stream and a consumer;
KEDA's nats-jetstream scaler (kedacore/keda, pkg/scalers/nats_jetstream_scaler.go) looks
them up by name in the monitoring endpoint's ``/jsz`` and scales on the consumer's lag.
A misspelt name does not fail loudly there: a missing consumer makes the scaler fall back
to the stream's last sequence, which only ever grows. So the test starts NATS as `make run`
does (its users and permissions), declares the topology as the gateway does, queues runs
as the gateway does, and reads ``/jsz`` the way KEDA does, with the manifest's own values.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from figranium_common import nats as topology
from figranium_common.models import RunRequest
from figranium_common.pull import PullStream
from figranium_common.queue import publish_run
from figranium_common.secretbox import SecretBox
from figranium_devstack.natsserver import LocalNats
from figranium_devstack.ports import free_port

RUNNER_MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "base" / "runner.yaml"
QUEUED = 7
TAKEN = 3


def trigger_metadata() -> dict[str, str]:
    """The metadata of the runner ScaledObject's nats-jetstream trigger."""
    documents = yaml.safe_load_all(RUNNER_MANIFEST.read_text())
    (scaled,) = [d for d in documents if d and d["kind"] == "ScaledObject"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "nats-jetstream"
    metadata: dict[str, str] = trigger["metadata"]
    return metadata


def monitoring_url(endpoint: str, account: str) -> str:
    """The URL the scaler requests (getNATSJetStreamMonitoringURL, plain HTTP)."""
    return f"http://{endpoint}/jsz?acc={account}&consumers=true&config=true"


def stream_detail(jsz: dict[str, Any], account: str, stream: str) -> dict[str, Any] | None:
    """The stream as the scaler finds it: the account by ``name`` in ``account_details``,
    then the stream by ``name`` in its ``stream_detail`` (None: "stream not found")."""
    for details in jsz.get("account_details") or []:
        if details["name"] == account:
            for found in details.get("stream_detail") or []:
                if found["name"] == stream:
                    return dict(found)
    return None


def keda_lag(stream: dict[str, Any], consumer: str) -> int:
    """The scaler's metric (getMaxMsgLag): the consumer's ``num_pending`` (not delivered
    yet) plus ``num_ack_pending`` (delivered, not acknowledged); without that consumer,
    the stream's ``last_seq``."""
    for found in stream.get("consumer_detail") or []:
        if found["name"] == consumer:
            return int(found["num_pending"]) + int(found["num_ack_pending"])
    return int(stream["state"]["last_seq"])


def has_consumer(stream: dict[str, Any], consumer: str) -> bool:
    return any(found["name"] == consumer for found in stream.get("consumer_detail") or [])


@pytest.fixture
def monitored_nats(tmp_path: Path) -> Iterator[LocalNats]:
    with LocalNats(tmp_path / "nats", free_port(), monitor_port=free_port()) as server:
        yield server


async def _connect(server: LocalNats, role: str) -> NATS:
    """A connection as ``role``'s own NATS user, as that service makes it."""
    auth = topology.NatsAuth(role, server.password_for(role))
    return await topology.connect(server.address, name=f"keda-test-{role}", auth=auth, role=role)


def test_devstack_monitoring_is_off_by_default_and_on_loopback_when_asked(tmp_path: Path) -> None:
    assert "http" not in LocalNats(tmp_path / "plain", free_port()).config().split("}\n")[-1]
    port = free_port()
    config = LocalNats(tmp_path / "watched", free_port(), monitor_port=port).config()
    assert f'\nhttp: "127.0.0.1:{port}"\n' in config


async def test_the_scaled_object_reads_the_runners_backlog(monitored_nats: LocalNats) -> None:
    meta = trigger_metadata()
    account, stream_name, consumer = meta["account"], meta["stream"], meta["consumer"]
    # The manifest's endpoint is the cluster's Service; here, this server's monitoring port.
    url = monitoring_url(f"127.0.0.1:{monitored_nats.monitor_port}", account)

    def lag() -> int:
        response = httpx.get(url, timeout=5)
        response.raise_for_status()
        stream = stream_detail(response.json(), account, stream_name)
        assert stream is not None, f"stream {stream_name} not found in account {account}"
        assert has_consumer(stream, consumer), f"consumer {consumer} not found"
        return keda_lag(stream, consumer)

    gateway = await _connect(monitored_nats, "gateway")
    runner = await _connect(monitored_nats, "runner")
    try:
        js = gateway.jetstream()
        await topology.declare_topology(js, topology.RunConsumerLimits(30, 3))
        assert lag() == 0
        transit_box = SecretBox(secrets.token_bytes(32))
        for number in range(QUEUED):
            request = RunRequest(execution_id=f"exec_keda_{number}", task={"actions": []})
            await publish_run(js, request, transit_box)
        assert lag() == QUEUED
        # A runner takes some: delivered but not yet acknowledged, they still count.
        async with PullStream(runner, stream_name, consumer) as pulled:
            taken: list[Msg] = []
            while len(taken) < TAKEN:
                taken += await pulled.take(TAKEN - len(taken), timeout=5)
            assert lag() == QUEUED
            # Confirmed acknowledgements: the server has counted them when these return.
            for message in taken:
                await message.ack_sync()
            assert lag() == QUEUED - TAKEN
    finally:
        await topology.close(runner)
        await topology.close(gateway)
